"""Squeeze-and-Excitation with a pluggable squeeze: SE on a fixed max/min mix pools before it excites."""

from __future__ import annotations

import math

import torch

from spe_lightning.layers import create_attention


def test_se_gate_on_fixed_mix_equals_gate_on_mixed_statistic():
    """The phenomenon experiment pools before exciting: SE(maxmin) == SE applied to the mixed vector."""
    torch.manual_seed(0)
    se = create_attention("se", 16, pool="maxmin", pool_kwargs={"lam": 0.3})
    x = torch.randn(2, 16, 4, 4)
    z = 0.3 * x.amax((2, 3), keepdim=True) + 0.7 * x.amin((2, 3), keepdim=True)
    torch.testing.assert_close(se.gate(x), torch.sigmoid(se.fc2(torch.relu(se.fc1(z)))))
    assert math.isclose(se.pool.stat_weights().sum().item(), 1.0)
