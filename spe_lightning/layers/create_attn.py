"""Build an attention module from a name: the only way backbones create attention."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from spe_lightning.layers.cbam import CBAM
from spe_lightning.layers.coord import CoordinateAttention
from spe_lightning.layers.eca import EfficientChannelAttention
from spe_lightning.layers.fca import FcaNet
from spe_lightning.layers.gct import GatedChannelTransformation
from spe_lightning.layers.pool import GlobalPool, directional_pools, pool_names
from spe_lightning.layers.spem import SPEM, SPEMFigure
from spe_lightning.layers.squeeze_excite import SqueezeExcite
from spe_lightning.layers.srm import StyleRecalibration
from spe_lightning.registry import build, lookup

_ATTENTIONS: dict[str, type[nn.Module]] = {
    "se": SqueezeExcite,
    "eca": EfficientChannelAttention,
    "cbam": CBAM,
    "srm": StyleRecalibration,
    "spem": SPEM,
    "spem_fig": SPEMFigure,
    "fca": FcaNet,
    "gct": GatedChannelTransformation,
    "coord": CoordinateAttention,
}


def attention_names() -> list[str]:
    return ["none", *sorted(_ATTENTIONS)]


def is_attention(name: str | None) -> bool:
    """False for the names that mean "plain network"."""
    return name is not None and str(name).lower() != "none"


def default_pool(name: str | None) -> str | None:
    """The pool an attention uses when none is given (``se`` -> ``avg``); None for no attention."""
    if not is_attention(name):
        return None
    return inspect.signature(lookup(_ATTENTIONS, name, "attention")).parameters["pool"].default


def attention_pools(name: str) -> list[str]:
    """The pools attention ``name`` accepts: every pool, or those with a directional form for ``coord``."""
    directional = lookup(_ATTENTIONS, name, "attention") is CoordinateAttention
    return directional_pools() if directional else pool_names()


def create_attention(
    name: str | None, channels: int, pool: str | GlobalPool | None = None, **kwargs: Any
) -> nn.Module:
    """Attention over ``channels``; ``pool=None`` keeps the module's own default pooling."""
    if not is_attention(name):
        return nn.Identity()
    cls = lookup(_ATTENTIONS, name, "attention")
    if pool is not None:
        kwargs["pool"] = pool
    return build(cls, f"attention {name!r}", channels, **kwargs)
