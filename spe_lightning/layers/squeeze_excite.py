"""Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", arXiv 1709.01507)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.layers.attention import ChannelAttention
from spe_lightning.layers.pool import GlobalPool, reduced_width


class SqueezeExcite(ChannelAttention):
    """SE with a pluggable squeeze: ``pool="maxmin"`` gives the paper's phenomenon experiment.

    Excitation: ``sigmoid(fc2(relu(fc1(z))))`` with a hidden width of ``channels // reduction``.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        pool: str | GlobalPool | None = None,
        pool_kwargs: dict[str, Any] | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__(channels, pool, pool_kwargs)
        hidden = reduced_width(channels, reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def excite(self, pooled: Tensor) -> Tensor:
        return torch.sigmoid(self.fc2(self.act(self.fc1(pooled))))
