"""GCT's L2 embedding against its formula."""

from __future__ import annotations

import torch
from helpers.tensors import check, maps

from spe_lightning.layers import create_pool


def test_l2_is_gcts_scaled_norm():
    pool = create_pool("l2", channels=4)
    with torch.no_grad():
        pool.alpha.copy_(torch.tensor([1.0, 0.5, 2.0, -1.0]).view(1, 4, 1, 1))
    check(pool, lambda x: pool.alpha * (x.square().sum((2, 3), keepdim=True) + 1e-5).sqrt(), maps(2, 4, 3, 3),
          params=("alpha",))  # fmt: skip
