"""Coordinate attention (Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design",
CVPR 2021, arXiv 2103.02907).

    z_h = pool along W (B x C x H x 1),  z_w = pool along H (B x C x 1 x W)     # 1. pool, per axis
    y   = hardswish(bn(conv1x1([z_h; z_w])))   C -> max(8, C // reduction)      # 2. excite: shared
    a_h = sigmoid(conv_h(y_h)),  a_w = sigmoid(conv_w(y_w))   back to C            #    transform, split
    out = x * a_h * a_w                                                          # 3. recalibrate

The paper pools with averages; any pool with a directional form (:meth:`GlobalPool.along`) works.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.layers.pool import GlobalPool, create_pool, directional_help


class CoordinateAttention(nn.Module):
    """Gates along H and along W from directionally pooled descriptors."""

    def __init__(
        self,
        channels: int,
        reduction: int = 32,
        min_hidden: int = 8,
        pool: str | GlobalPool = "avg",
        pool_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.pool = create_pool(pool, channels, **(pool_kwargs or {}))
        if not self.pool.directional:
            name = pool if isinstance(pool, str) else type(pool).__name__
            raise ValueError(f"coord attention cannot use pool {name!r}; {directional_help()}")
        if not isinstance(reduction, int) or reduction < 1:
            raise ValueError(
                f"coord reduction={reduction!r} is not allowed; use a positive integer (paper: 32)"
            )
        hidden = max(min_hidden, channels // reduction)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.bn = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(hidden, channels, 1)
        self.conv_w = nn.Conv2d(hidden, channels, 1)

    def gates(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(a_h: B x C x H x 1, a_w: B x C x 1 x W)."""
        h = x.shape[2]
        z_h, z_w = self.pool.along(x, 3), self.pool.along(x, 2)  # 1. pool along W, along H
        y = self.act(self.bn(self.conv1(torch.cat((z_h, z_w.transpose(2, 3)), dim=2))))  # 2. excite
        y_h, y_w = y.split((h, y.shape[2] - h), dim=2)
        return torch.sigmoid(self.conv_h(y_h)), torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))

    def gate(self, x: Tensor) -> Tensor:
        """The full B x C x H x W gate, a_h * a_w (what :meth:`forward` multiplies by)."""
        a_h, a_w = self.gates(x)
        return a_h * a_w

    def forward(self, x: Tensor) -> Tensor:
        a_h, a_w = self.gates(x)
        return x * a_h.to(x.dtype) * a_w.to(x.dtype)  # 3. recalibrate
