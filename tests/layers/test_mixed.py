"""Mixed and gated max/average pooling (Lee, Gallagher, Tu) against their formulas."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers.tensors import check, maps
from torch import Tensor

from spe_lightning.layers import create_pool


def test_mixed_and_gated_mix_max_and_average():
    x = maps(3, 4, 5, 5)
    mixed = create_pool("mixed@0.3")
    with torch.no_grad():
        mixed.a.fill_(0.3)

    def mix(x: Tensor, a: Tensor) -> Tensor:
        return a * x.amax((2, 3), keepdim=True) + (1 - a) * x.mean((2, 3), keepdim=True)

    check(mixed, lambda x: mix(x, mixed.a), x, params=("a",))
    per_channel = create_pool("mixed", per_channel=True, channels=4)
    with torch.no_grad():
        per_channel.a.copy_(torch.tensor([0.1, 0.25, 0.5, 0.9]))
    check(per_channel, lambda x: mix(x, per_channel.a.view(1, 4, 1, 1)), x, params=("a",))
    gated = create_pool("gated", grid=2)
    with torch.no_grad():
        gated.mask.copy_(torch.tensor([0.5, -1.0, 2.0, 0.1]))

    def gated_formula(x: Tensor) -> Tensor:
        g = torch.sigmoid((F.adaptive_avg_pool2d(x, 2).flatten(2) * gated.mask).sum(2))[..., None, None]
        return g * x.amax((2, 3), keepdim=True) + (1 - g) * x.mean((2, 3), keepdim=True)

    check(gated, gated_formula, x, params=("mask",))
