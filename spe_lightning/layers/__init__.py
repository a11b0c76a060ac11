"""Pooling strategies and attention modules, one file per family (timm-style)."""

from spe_lightning.layers.cbam import CBAM, ChannelGate, SpatialGate
from spe_lightning.layers.create_attn import attention_names, create_attention, default_pool, is_attention
from spe_lightning.layers.eca import EfficientChannelAttention, eca_kernel_size
from spe_lightning.layers.max_min import global_max_min
from spe_lightning.layers.pool import (
    AvgMaxPool,
    AvgPool,
    FixedMixPool,
    GlobalPool,
    LearnedMixPool,
    MaxPool,
    MeanStdPool,
    MinPool,
    combine_stats,
    create_pool,
    pool_names,
)
from spe_lightning.layers.spem import SPEM, SPEMFigure
from spe_lightning.layers.squeeze_excite import SqueezeExcite
from spe_lightning.layers.srm import StyleRecalibration

__all__ = [
    "CBAM",
    "SPEM",
    "AvgMaxPool",
    "AvgPool",
    "ChannelGate",
    "EfficientChannelAttention",
    "FixedMixPool",
    "GlobalPool",
    "LearnedMixPool",
    "MaxPool",
    "MeanStdPool",
    "MinPool",
    "SPEMFigure",
    "SpatialGate",
    "SqueezeExcite",
    "StyleRecalibration",
    "attention_names",
    "combine_stats",
    "create_attention",
    "create_pool",
    "default_pool",
    "eca_kernel_size",
    "global_max_min",
    "is_attention",
    "pool_names",
]
