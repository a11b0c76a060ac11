"""Build an attention module from a name: the only way backbones create attention."""

from __future__ import annotations

from typing import Any

from torch import nn

from spe_lightning.core.registry import Registry, build
from spe_lightning.layers.attention import ChannelAttention
from spe_lightning.layers.cbam import CBAM, ChannelGate
from spe_lightning.layers.constant_gate import ConstantGate
from spe_lightning.layers.coord import CoordinateAttention
from spe_lightning.layers.eca import EfficientChannelAttention
from spe_lightning.layers.fca import FcaNet
from spe_lightning.layers.gct import GatedChannelTransformation
from spe_lightning.layers.pool import POOLS, GlobalPool, directional_pools, pool_names
from spe_lightning.layers.spem import SPEM, SPEMFigure
from spe_lightning.layers.squeeze_excite import SqueezeExcite
from spe_lightning.layers.srm import StyleRecalibration

ATTENTIONS: Registry[type[nn.Module]] = Registry("attention")
for _name, _cls in {
    "se": SqueezeExcite,
    "eca": EfficientChannelAttention,
    "cbam": CBAM,
    "srm": StyleRecalibration,
    "spem": SPEM,
    "spem_fig": SPEMFigure,
    "fca": FcaNet,
    "gct": GatedChannelTransformation,
    "coord": CoordinateAttention,
    "const_gate": ConstantGate,
}.items():
    ATTENTIONS.add(_name, _cls)

NO_ATTENTION = "none"


def attention_names() -> list[str]:
    return [NO_ATTENTION, *ATTENTIONS.names()]


def is_attention(name: str | None) -> bool:
    """False for the names that mean "plain network"."""
    return name is not None and str(name).lower() != NO_ATTENTION


def channel_attention_class(name: str) -> type[ChannelAttention]:
    """The :class:`ChannelAttention` that does attention ``name``'s pooling (CBAM's channel gate for CBAM)."""
    cls = ATTENTIONS.get(name)
    return ChannelGate if cls is CBAM else cls


def default_pool(name: str | None) -> str | None:
    """The pool an attention uses when none is given (``se`` -> ``avg``); None for no attention."""
    if not is_attention(name):
        return None
    return channel_attention_class(name).default_pool


def pool_label(attention: str | None, pool: str | None) -> str | None:
    """The pool as runs and tables name it: the attention's own when none is given, aliases resolved
    (``learned_mix`` -> ``learned``, ``fixed_mix@0.25`` -> ``maxmin@0.25``); None without attention."""
    if not is_attention(attention):
        return None
    if pool is None:
        return default_pool(attention)
    name, at, value = str(pool).partition("@")
    return f"{POOLS.canonical(name)}{at}{value}"


def attention_pools(name: str) -> list[str]:
    """The pools attention ``name`` accepts: every pool, or those with a directional form for ``coord``."""
    pooling = channel_attention_class(name).pooling
    if pooling == "none":
        return []
    directional = pooling == "directional"
    return directional_pools() if directional else pool_names()


def create_attention(
    name: str | None, channels: int, pool: str | GlobalPool | None = None, **kwargs: Any
) -> nn.Module:
    """Attention over ``channels``; ``pool=None`` keeps the module's own default pooling."""
    if not is_attention(name):
        return nn.Identity()
    cls = ATTENTIONS.get(name)
    if pool is not None:
        kwargs["pool"] = pool
    return build(cls, f"attention {name!r}", channels, **kwargs)
