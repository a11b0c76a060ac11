"""Efficient Channel Attention (Wang et al., "ECA-Net", arXiv 1910.03151)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.layers.pool import GlobalPool, create_pool


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """The paper's adaptive kernel: the odd number nearest |(log2(C) + beta) / gamma|.

    ECA's reference code hard-codes 3; computing it is what the paper describes.
    """
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


class EfficientChannelAttention(nn.Module):
    """A 1-D convolution across channels replaces SE's bottleneck MLP."""

    def __init__(
        self,
        channels: int,
        kernel_size: int | None = None,
        gamma: float = 2.0,
        beta: float = 1.0,
        pool: str | GlobalPool = "avg",
        pool_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        k = kernel_size if kernel_size is not None else eca_kernel_size(channels, gamma, beta)
        if k < 1 or k % 2 == 0:
            raise ValueError(f"eca kernel_size={k!r} is not allowed; use a positive odd integer")
        self.pool = create_pool(pool, channels, **(pool_kwargs or {}))
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def gate(self, x: Tensor) -> Tensor:
        z = self.pool(x)  # 1. pool: B x C x 1 x 1
        y = self.conv(z.view(z.shape[0], 1, -1)).view_as(z)  # 2. excite across neighbouring channels
        return torch.sigmoid(y)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x).to(x.dtype)  # 3. recalibrate
