"""GeM pooling (Radenović et al.) against its formula, its limits and its clamp."""

from __future__ import annotations

import torch
from helpers.tensors import check, maps

from spe_lightning.layers import create_pool


def test_gem_is_the_generalised_mean_of_the_clamped_map():
    pool = create_pool("gem")  # p = 3, learned
    eps = pool.eps
    check(pool, lambda x: (x.clamp(min=eps) ** pool.p).mean((2, 3), keepdim=True) ** (1 / pool.p),
          maps(2, 5, 4, 6), params=("p",))  # fmt: skip
    positive = maps(2, 5, 4, 6).abs() + 0.1
    torch.testing.assert_close(create_pool("gem@1")(positive), positive.mean((2, 3), keepdim=True))
    big_p = create_pool("gem", p=200.0)(positive)
    torch.testing.assert_close(big_p, positive.amax((2, 3), keepdim=True), rtol=0.02, atol=0)
    negative = -maps(1, 3, 4, 4).abs() - 1.0  # after BatchNorm, before the ReLU: no positive response
    torch.testing.assert_close(create_pool("gem")(negative), torch.full((1, 3, 1, 1), eps))
    assert create_pool("gem", learn_p=False).p.requires_grad is False
