"""SPEM: self-adaptive pooling enhanced attention.

Zhong, Wen, Qin, "Mix-Pooling Strategy for Attention Mechanism" (arXiv 2208.10322;
"SPEM: Self-adaptive Pooling Enhanced Attention Module for Image Recognition", MMM 2023).
Computed as the authors' reference code does (models/spem.py), per statistic s in
(max, min) of the learned-mix pool::

    r_s  = w_rew * s + b_rew                       # shared reweight (a, b in the paper)
    mix  = lam * r_max + (1 - lam) * r_min
    gate = sigmoid(r_max + r_min) * sigmoid(w_exc * mix + b_exc)

At init (w = 0, b = -1) every gate is sigmoid(-2) * sigmoid(-1) = 0.0321.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.layers.attention import ChannelAttention
from spe_lightning.layers.max_min import standard_ops_only
from spe_lightning.layers.pool import GlobalPool, LearnedMixPool, combine_stats
from spe_lightning.layers.spem_fused import fused_gate_runs_on, fused_gate_trusted, fused_spem_gate


class SPEM(ChannelAttention):
    """SPEM as in the reference code: one sigmoid on each branch, then their product.

    Any pool may be plugged in: the reweight applies to each of its statistics, the sum
    branch adds them and the mix branch combines them with the pool's weights. ``fused_gate=False`` keeps
    the composite maths on a GPU too (see :mod:`~spe_lightning.layers.spem_fused`).
    """

    default_pool = "learned"
    pooling = "statistics"

    def __init__(
        self,
        channels: int,
        pool: str | GlobalPool | None = None,
        pool_kwargs: dict[str, Any] | None = None,
        fused_gate: bool = True,
    ) -> None:
        super().__init__(channels, pool, pool_kwargs)
        shape = (1, channels, 1, 1)
        self.reweight_weight = nn.Parameter(torch.zeros(shape))
        self.reweight_bias = nn.Parameter(torch.full(shape, -1.0))
        self.excite_weight = nn.Parameter(torch.zeros(shape))
        self.excite_bias = nn.Parameter(torch.full(shape, -1.0))
        # the fused op computes the reference gate over the paper's p0^2 / |p|^2 max/min mix
        pool = self.pool
        self.fusable = (
            fused_gate
            and type(self).combine_branches is SPEM.combine_branches
            and isinstance(pool, LearnedMixPool)
            and pool.pools is None
            and pool.parameterization == "square"
        )

    def combine_branches(self, summed: Tensor, mixed: Tensor) -> Tensor:
        return torch.sigmoid(summed) * torch.sigmoid(mixed)

    def gate(self, x: Tensor) -> Tensor:
        """Stages 1 and 2; on eager CUDA as one fused op (:mod:`~spe_lightning.layers.spem_fused`), once it
        has been checked there against the composite maths."""
        if self.fusable and fused_gate_runs_on(x) and not standard_ops_only():
            params = (self.reweight_weight, self.reweight_bias, self.excite_weight, self.excite_bias)
            if fused_gate_trusted(x, params, self.pool.p, super().gate):
                return fused_spem_gate(x, params, self.pool.p)
        return super().gate(x)

    def excite(self, pooled: Tensor) -> Tensor:
        """The reweight of each statistic, their sum and their mix, each through a sigmoid."""
        # addcmul(b, w, s) = w * s + b in one op (the gate runs once per block per step)
        reweighted = torch.addcmul(self.reweight_bias, self.reweight_weight, pooled)
        mixed = combine_stats(reweighted, self.pool.stat_weights())
        mixed = torch.addcmul(self.excite_bias, self.excite_weight, mixed)
        return self.combine_branches(reweighted.sum(0), mixed)


class SPEMFigure(SPEM):
    """SPEM as the paper's architecture figure draws it: one sigmoid after the product."""

    def combine_branches(self, summed: Tensor, mixed: Tensor) -> Tensor:
        return torch.sigmoid(summed * mixed)
