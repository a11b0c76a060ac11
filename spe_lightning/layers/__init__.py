"""Pooling strategies and attention modules, one file per family (timm-style); torch only, no Lightning.

Pools (:mod:`.pool` and one file per pool of the literature) are stage 1 of channel attention; the attention
modules (:mod:`.attention`'s :class:`ChannelAttention` and one file per module) add stages 2 and 3. Importing
this package registers every pool (each pool module files itself under its name in :data:`POOLS`).
"""

from spe_lightning.layers.pool import (  # isort: skip  (the registry first: the pool modules register in it)
    AvgMaxPool,
    AvgPool,
    FixedMixPool,
    GlobalPool,
    LearnedMixPool,
    MaxPool,
    MeanStdPool,
    MinPool,
    POOLS,
    combine_stats,
    create_pool,
    pool_names,
)
from spe_lightning.layers.dct import DCTPool
from spe_lightning.layers.gem import GeMPool
from spe_lightning.layers.l2 import L2Pool
from spe_lightning.layers.lse import LSEPool
from spe_lightning.layers.mixed import GatedPool, MixedPool
from spe_lightning.layers.softpool import SoftPool

from spe_lightning.layers.attention import ChannelAttention, recalibrate  # isort: skip
from spe_lightning.layers.cbam import CBAM, ChannelGate, SpatialGate
from spe_lightning.layers.coord import CoordinateAttention
from spe_lightning.layers.create_attn import (
    ATTENTIONS,
    attention_names,
    attention_pools,
    channel_attention_class,
    create_attention,
    default_pool,
    is_attention,
    pool_label,
)
from spe_lightning.layers.eca import EfficientChannelAttention, eca_kernel_size
from spe_lightning.layers.fca import FcaNet
from spe_lightning.layers.gct import GatedChannelTransformation
from spe_lightning.layers.max_min import global_max_min
from spe_lightning.layers.spem import SPEM, SPEMFigure
from spe_lightning.layers.squeeze_excite import SqueezeExcite
from spe_lightning.layers.srm import StyleRecalibration

__all__ = [
    "ATTENTIONS",
    "CBAM",
    "POOLS",
    "SPEM",
    "AvgMaxPool",
    "AvgPool",
    "ChannelAttention",
    "ChannelGate",
    "CoordinateAttention",
    "DCTPool",
    "EfficientChannelAttention",
    "FcaNet",
    "FixedMixPool",
    "GatedChannelTransformation",
    "GatedPool",
    "GeMPool",
    "GlobalPool",
    "L2Pool",
    "LSEPool",
    "LearnedMixPool",
    "MaxPool",
    "MeanStdPool",
    "MinPool",
    "MixedPool",
    "SPEMFigure",
    "SoftPool",
    "SpatialGate",
    "SqueezeExcite",
    "StyleRecalibration",
    "attention_names",
    "attention_pools",
    "channel_attention_class",
    "combine_stats",
    "create_attention",
    "create_pool",
    "default_pool",
    "eca_kernel_size",
    "global_max_min",
    "is_attention",
    "pool_label",
    "pool_names",
    "recalibrate",
]
