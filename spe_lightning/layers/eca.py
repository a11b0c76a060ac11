"""Efficient Channel Attention (Wang et al., "ECA-Net", arXiv 1910.03151)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.core.errors import InputError
from spe_lightning.layers.attention import ChannelAttention
from spe_lightning.layers.pool import GlobalPool


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """The paper's adaptive kernel: the odd number nearest |(log2(C) + beta) / gamma|.

    ECA's reference code hard-codes 3; computing it is what the paper describes.
    """
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


class EfficientChannelAttention(ChannelAttention):
    """A 1-D convolution across channels replaces SE's bottleneck MLP: ``sigmoid(conv1d(z))``."""

    def __init__(
        self,
        channels: int,
        kernel_size: int | None = None,
        gamma: float = 2.0,
        beta: float = 1.0,
        pool: str | GlobalPool | None = None,
        pool_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(channels, pool, pool_kwargs)
        k = kernel_size if kernel_size is not None else eca_kernel_size(channels, gamma, beta)
        if not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise InputError(f"eca kernel_size={k!r} is not allowed; it must be a positive odd integer")
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def excite(self, pooled: Tensor) -> Tensor:
        # across neighbouring channels: B x 1 x C
        return torch.sigmoid(self.conv(pooled.view(pooled.shape[0], 1, -1)).view_as(pooled))
