"""Convolutional Block Attention Module (Woo et al., "CBAM", arXiv 1807.06521)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.layers.attention import ChannelAttention, recalibrate
from spe_lightning.layers.placement import TakesDeviceAndDtype
from spe_lightning.layers.pool import GlobalPool, combine_stats, reduced_width


class ChannelGate(ChannelAttention):
    """CBAM's channel branch: one shared MLP applied to each pooled statistic, then summed.

    With the default ``avgmax`` pool this is CBAM exactly; with a max/min mix the MLP
    sees max and min, weighted by the pool's lam.
    """

    default_pool = "avgmax"
    pooling = "statistics"

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        pool: str | GlobalPool | None = None,
        pool_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(channels, pool, pool_kwargs)
        hidden = reduced_width(channels, reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )

    def excite(self, pooled: Tensor) -> Tensor:
        y = self.mlp(pooled.flatten(0, 1)).unflatten(0, pooled.shape[:2])  # each statistic, one MLP
        return torch.sigmoid(combine_stats(y, self.pool.stat_weights()))


class SpatialGate(nn.Module):
    """CBAM's spatial branch: conv over the channel-wise mean and max maps (pooling across channels, which
    the paper fixes; the pluggable pool is the channel branch's)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def gate(self, x: Tensor) -> Tensor:
        maps = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), dim=1)
        return torch.sigmoid(self.bn(self.conv(maps)))

    def forward(self, x: Tensor) -> Tensor:
        return recalibrate(x, self.gate(x))


class CBAM(TakesDeviceAndDtype, nn.Module):
    """Channel gate, then spatial gate; the pool argument applies to the channel gate."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        spatial_kernel_size: int = 7,
        pool: str | GlobalPool | None = None,
        pool_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.channel = ChannelGate(channels, reduction, pool, pool_kwargs)
        self.spatial = SpatialGate(spatial_kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial(self.channel(x))
