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

from spe_lightning.core.validation import check_int
from spe_lightning.layers.attention import ChannelAttention
from spe_lightning.layers.pool import GlobalPool


class CoordinateAttention(ChannelAttention):
    """Gates along H and along W from directionally pooled descriptors; the gate is their product."""

    pooling = "directional"

    def __init__(
        self,
        channels: int,
        reduction: int = 32,
        min_hidden: int = 8,
        pool: str | GlobalPool | None = None,
        pool_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(channels, pool, pool_kwargs)
        check_int("coord reduction", reduction, hint=" (paper: 32)")
        hidden = max(min_hidden, channels // reduction)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.bn = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(hidden, channels, 1)
        self.conv_w = nn.Conv2d(hidden, channels, 1)

    def excite(self, pooled: tuple[Tensor, Tensor]) -> Tensor:
        """The B x C x H x W gate a_h * a_w from (pooled along W, pooled along H): one transform shared by
        both directions, then a 1x1 conv per direction."""
        z_h, z_w = pooled
        h = z_h.shape[2]
        y = self.act(self.bn(self.conv1(torch.cat((z_h, z_w.transpose(2, 3)), dim=2))))
        y_h, y_w = y.split((h, y.shape[2] - h), dim=2)
        return torch.sigmoid(self.conv_h(y_h)) * torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))
