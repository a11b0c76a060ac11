"""Generalized-mean pooling (Radenović, Tolias, Chum, "Fine-tuning CNN Image Retrieval with No Human
Annotation", TPAMI 2018, arXiv 1711.02512): ``(mean(x.clamp(min=eps) ** p)) ** (1 / p)``.

p = 1 is average pooling and p -> infinity max pooling; the paper learns p from an init of 3. GeM is
defined on non-negative maps (it follows a ReLU in the paper); here it sits after BatchNorm, before the
residual ReLU, so negative responses are clamped to ``eps`` first, as the paper's code does: the pool then
describes the positive part of the map, and a channel with no positive response gives ``eps``. Computed
in the log domain with ``logsumexp``, so no power overflows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.core.errors import InputError
from spe_lightning.layers.pool import POOLS, GlobalPool


@POOLS.register("gem")
class GeMPool(GlobalPool):
    """GeM with one exponent per block, learned by default (``learn_p=False`` keeps it fixed)."""

    shorthand = "p"

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True) -> None:
        if not p > 0:
            raise InputError(f"gem pool p={p!r} is not allowed; the exponent must be positive (paper: 3)")
        if not eps > 0:
            raise InputError(f"gem pool eps={eps!r} is not allowed; it must be positive")
        super().__init__()
        self.eps = eps
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)

    def stats(self, x: Tensor) -> Tensor:
        p = self.p.float()  # float32 under autocast: x ** 3 of bf16 loses the mean's precision
        logs = x.float().clamp(min=self.eps).log().flatten(2)
        # (mean(x^p))^(1/p) = exp((logsumexp(p log x) - log N) / p): logsumexp shifts by the maximum, so no
        # power overflows, and it costs about half of x.pow(p) with a learned p (its backward takes logs)
        mean_log = (torch.logsumexp(p * logs, 2) - math.log(logs.shape[2])) / p
        return mean_log.exp().to(x.dtype)[None, ..., None, None]

    def logged_values(self) -> dict[str, Tensor]:
        return {"gem_p": self.p}

    def settings(self) -> dict[str, Any]:
        return {"eps": self.eps, "learn_p": self.p.requires_grad}
