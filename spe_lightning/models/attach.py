"""Put attention on the last norm of every residual block, for any torchvision-block network.

Both backbones are built from torchvision's BasicBlock / Bottleneck, so one function
places attention where SE goes: on the output of the residual branch's last
BatchNorm, before the shortcut is added. The norm is wrapped, not subclassed, so
``SyncBatchNorm.convert_sync_batchnorm`` still finds (and converts) it.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from spe_lightning.layers import create_attention

LAST_NORM = {BasicBlock: "bn2", Bottleneck: "bn3"}
"""The norm that ends each kind of residual branch: where attention goes, and what zero-init zeroes."""


class NormAttention(nn.Module):
    """A block's last norm followed by attention: ``attn(norm(x))``."""

    def __init__(self, norm: nn.Module, attn: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.attn = attn

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(self.norm(x))


def attach_attention(
    net: nn.Module, attention: str, pool: str | None = None, attention_kwargs: dict[str, Any] | None = None
) -> list[str]:
    """Wrap the last norm of every residual block; return the wrapped norms' names."""
    wrapped = []
    for name, block in list(net.named_modules()):
        norm_name = LAST_NORM.get(type(block))
        if norm_name is None:
            continue
        norm = getattr(block, norm_name)
        attn = create_attention(attention, norm.num_features, pool=pool, **(attention_kwargs or {}))
        setattr(block, norm_name, NormAttention(norm, attn))
        wrapped.append(f"{name}.{norm_name}")
    return wrapped


def attention_modules(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """(block path, attention module) for every attention :func:`attach_attention` placed in ``net``."""
    return [
        (name.rpartition(".")[0], module.attn)
        for name, module in net.named_modules()
        if isinstance(module, NormAttention)
    ]
