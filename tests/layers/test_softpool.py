"""SoftPool over the whole map against its formula, stable for large inputs."""

from __future__ import annotations

import torch
from helpers.tensors import check, maps
from torch import Tensor

from spe_lightning.layers import create_pool


def test_softpool_is_the_softmax_weighted_sum():
    def formula(x: Tensor) -> Tensor:
        e = torch.exp(x)
        return (e * x).sum((2, 3), keepdim=True) / e.sum((2, 3), keepdim=True)

    check(create_pool("softpool"), formula, maps(2, 6, 3, 7))
    big = 80.0 * maps(1, 2, 4, 4)  # exp(80 x) overflows float32 unless shifted
    assert torch.isfinite(create_pool("softpool")(big)).all()
