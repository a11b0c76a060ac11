"""GCT against its paper's equations, starting as the identity."""

from __future__ import annotations

import torch
from helpers.tensors import check, maps
from torch import Tensor

from spe_lightning.layers import create_attention


def test_gct_follows_the_papers_equations_and_starts_as_the_identity():
    m = create_attention("gct", 6)
    x = maps(2, 6, 5, 5)
    torch.testing.assert_close(m(x), x)  # gamma = beta = 0: every gate is 1
    with torch.no_grad():
        m.gamma.normal_()
        m.beta.normal_()
        m.pool.alpha.uniform_(0.5, 1.5)

    def formula(x: Tensor) -> Tensor:
        s = (x.pow(2).sum((2, 3), keepdim=True) + 1e-5).pow(0.5) * m.pool.alpha
        n = m.gamma / (s.pow(2).mean(1, keepdim=True) + 1e-5).pow(0.5)
        return x * (1 + torch.tanh(s * n + m.beta))

    check(m, formula, x, params=("gamma", "beta"))
