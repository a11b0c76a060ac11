"""Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", arXiv 1709.01507)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.layers.pool import GlobalPool, create_pool, reduced_width


class SqueezeExcite(nn.Module):
    """SE with a pluggable squeeze: ``pool="maxmin"`` gives the paper's phenomenon experiment."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        pool: str | GlobalPool = "avg",
        pool_kwargs: dict[str, Any] | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden = reduced_width(channels, reduction)
        self.pool = create_pool(pool, channels, **(pool_kwargs or {}))
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def gate(self, x: Tensor) -> Tensor:
        z = self.pool(x)  # 1. pool
        return torch.sigmoid(self.fc2(self.act(self.fc1(z))))  # 2. excite

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x).to(x.dtype)  # 3. recalibrate
