"""L2 pooling with a learned per-channel scale: the global context embedding of GCT (Yang, Zhu, Jiang,
Gao, Xiao, Zheng, "Gated Channel Transformation for Visual Recognition", CVPR 2020, arXiv 1909.11519):
``alpha_c * sqrt(sum_hw x^2 + eps)``, alpha initialised to 1 and eps = 1e-5 as in the paper's code.

A sum, not a mean: the embedding grows with the map's size, which GCT's channel normalisation that
follows removes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.core.errors import InputError
from spe_lightning.layers.pool import POOLS, GlobalPool


@POOLS.register("l2")
class L2Pool(GlobalPool):
    """The L2 norm of each channel's map, times a learned alpha per channel."""

    directional = False  # alpha is per channel

    def __init__(self, channels: int | None = None, eps: float = 1e-5) -> None:
        if channels is None:
            raise InputError("l2 pool needs channels: build it through an attention (channels come from it)")
        super().__init__()
        self.eps = eps
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))

    def settings(self) -> dict[str, Any]:
        return {"channels": self.alpha.shape[1], "eps": self.eps}

    def stats(self, x: Tensor) -> Tensor:
        norm = (x.float().square().sum((2, 3), keepdim=True) + self.eps).sqrt()
        return (norm * self.alpha.float()).to(x.dtype)[None]
