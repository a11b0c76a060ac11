"""Gated Channel Transformation (Yang, Zhu, Jiang, Gao, Xiao, Zheng, "Gated Channel Transformation for
Visual Recognition", CVPR 2020, arXiv 1909.11519).

    s    = pool(x)                                    # 1. pool: l2 (alpha * ||x_c||_2) by default
    n    = gamma * s / sqrt(mean_c(s^2) + eps)        # 2. excite: channel normalisation, then
    gate = 1 + tanh(n + beta)                         #    the gate, in (0, 2)
    out  = x * gate                                   # 3. recalibrate

gamma and beta start at 0, so every gate starts at 1 and the block starts as the identity, as the paper
initialises it. As the authors train it, beta is not weight-decayed (:meth:`no_weight_decay`). With
another pool, its descriptor replaces the l2 embedding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.layers.attention import ChannelAttention
from spe_lightning.layers.pool import GlobalPool


class GatedChannelTransformation(ChannelAttention):
    """GCT: embedding, channel normalisation across channels, tanh gate around 1."""

    default_pool = "l2"

    def __init__(
        self,
        channels: int,
        eps: float = 1e-5,
        pool: str | GlobalPool | None = None,
        pool_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(channels, pool, pool_kwargs)
        self.eps = eps
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def no_weight_decay(self) -> set[str]:
        """The authors' training excludes the gate's bias beta from weight decay."""
        return {"beta"}

    def excite(self, pooled: Tensor) -> Tensor:
        s = pooled.float()
        norm = self.gamma * s / (s.square().mean(1, keepdim=True) + self.eps).sqrt()
        return 1.0 + torch.tanh(norm + self.beta)
