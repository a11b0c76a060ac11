"""Log-sum-exp pooling against the naive formula: stable, and average or max pooling in its limits."""

from __future__ import annotations

import math

import torch
from helpers.tensors import check, maps
from torch import Tensor

from spe_lightning.layers import create_pool


def test_lse_is_stable_and_reaches_avg_and_max_in_its_limits():
    x64 = maps(2, 4, 5, 5).double()

    def naive(x: Tensor, r: float) -> Tensor:
        return torch.log(torch.exp(r * x.double()).mean((2, 3), keepdim=True)).float() / r

    for r in (0.5, 5.0, 20.0):
        check(create_pool("lse", r=r), lambda x, r=r: naive(x, r), x64.float())
    x = x64.float()
    # the documented float32 error, about 1e-7 * log(H * W) / r, and the distance to the mean
    tiny = create_pool("lse@1e-3")(x)
    torch.testing.assert_close(tiny, naive(x64, 1e-3), rtol=0, atol=1e-7 * math.log(25) / 1e-3 * 3)
    torch.testing.assert_close(tiny, x.mean((2, 3), keepdim=True), rtol=0, atol=2e-3)
    huge = create_pool("lse@1e6")(x)
    assert torch.isfinite(huge).all()  # exp(1e6 * x) overflows a naive formula
    torch.testing.assert_close(huge, x.amax((2, 3), keepdim=True), rtol=0, atol=math.log(25) / 1e6 + 1e-6)
    learned = create_pool("lse", learn_r=True)
    check(learned, lambda x: naive(x, learned.r), x, params=("r",))
