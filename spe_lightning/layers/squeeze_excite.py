"""Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", arXiv 1709.01507)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.core.validation import check_int
from spe_lightning.layers.attention import ChannelAttention
from spe_lightning.layers.pool import GlobalPool, reduced_width


class SqueezeExcite(ChannelAttention):
    """SE with a pluggable squeeze: ``pool="maxmin"`` gives the paper's phenomenon experiment.

    Excitation: ``sigmoid(fc2(act(fc1(z))))`` with a hidden width of ``channels // reduction`` and ReLU (the
    SE paper's). ``hidden`` and ``act_layer`` set another network's SE design (EfficientNet's: a quarter of
    the block's input channels, SiLU).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        pool: str | GlobalPool | None = None,
        pool_kwargs: dict[str, Any] | None = None,
        bias: bool = True,
        hidden: int | None = None,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(channels, pool, pool_kwargs)
        if hidden is None:
            hidden = reduced_width(channels, reduction)
        check_int("hidden", hidden)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.act = act_layer(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def excite(self, pooled: Tensor) -> Tensor:
        return torch.sigmoid(self.fc2(self.act(self.fc1(pooled))))
