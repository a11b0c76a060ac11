"""Style-based Recalibration Module (Lee et al., "SRM", arXiv 1903.10829)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.layers.attention import ChannelAttention
from spe_lightning.layers.pool import GlobalPool, broadcast_weights


class StyleRecalibration(ChannelAttention):
    """Style pooling (mean, std), a channel-wise fc over the statistics, BatchNorm, sigmoid.

    The channel-wise fc starts at zero as in the reference code, so every gate starts at
    sigmoid(0) = 0.5. With a max/min mix pool the fc sees the statistics scaled by the
    pool's weights, so a learned lam still receives gradient.
    """

    default_pool = "meanstd"
    pooling = "statistics"

    def __init__(
        self,
        channels: int,
        pool: str | GlobalPool | None = None,
        pool_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(channels, pool, pool_kwargs)
        num_stats = self.pool.num_stats
        self.cfc = nn.Conv2d(channels, channels, (num_stats, 1), groups=channels, bias=False)
        nn.init.zeros_(self.cfc.weight)
        self.bn = nn.BatchNorm2d(channels)

    def excite(self, pooled: Tensor) -> Tensor:
        stats = pooled * broadcast_weights(self.pool.stat_weights())
        # the channel-wise fc is the reference code's conv over B x C x S x 1
        return torch.sigmoid(self.bn(self.cfc(stats.squeeze(4).permute(1, 2, 0, 3))))
