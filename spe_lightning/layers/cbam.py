"""Convolutional Block Attention Module (Woo et al., "CBAM", arXiv 1807.06521)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.layers.pool import GlobalPool, combine_stats, create_pool, reduced_width


class ChannelGate(nn.Module):
    """CBAM's channel branch: one shared MLP applied to each pooled statistic, then summed.

    With the default ``avgmax`` pool this is CBAM exactly; with a max/min mix the MLP
    sees max and min, weighted by the pool's lam.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        pool: str | GlobalPool = "avgmax",
        pool_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        hidden = reduced_width(channels, reduction)
        self.pool = create_pool(pool, channels, **(pool_kwargs or {}))
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )

    def gate(self, x: Tensor) -> Tensor:
        stats = self.pool.stats(x)  # 1. pool: S x B x C x 1 x 1, one descriptor per statistic
        y = self.mlp(stats.flatten(0, 1)).unflatten(0, stats.shape[:2])  # 2. excite each with one MLP
        return torch.sigmoid(combine_stats(y, self.pool.stat_weights()))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x).to(x.dtype)


class SpatialGate(nn.Module):
    """CBAM's spatial branch: conv over the channel-wise mean and max maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def gate(self, x: Tensor) -> Tensor:
        maps = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), dim=1)
        return torch.sigmoid(self.bn(self.conv(maps)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x).to(x.dtype)


class CBAM(nn.Module):
    """Channel gate, then spatial gate; the pool argument applies to the channel gate."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        spatial_kernel_size: int = 7,
        pool: str | GlobalPool = "avgmax",
        pool_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.channel = ChannelGate(channels, reduction, pool, pool_kwargs)
        self.spatial = SpatialGate(spatial_kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial(self.channel(x))
