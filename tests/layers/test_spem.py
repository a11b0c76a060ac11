"""SPEM as the reference code computes it: its gate at initialisation, the paper's formula, the zero
classification gradient on p at init, the figure's variant, its parameter count, and half precision."""

from __future__ import annotations

import pytest
import torch
from helpers.tensors import large_activations

from spe_lightning.layers import SPEM, create_attention

HALF_TYPES = [torch.float16, torch.bfloat16]


def test_spem_gate_at_init_is_sigmoid_minus2_times_sigmoid_minus1():
    spem = create_attention("spem", 16)
    x = torch.randn(2, 16, 5, 5)
    expected = torch.sigmoid(torch.tensor(-2.0)) * torch.sigmoid(torch.tensor(-1.0))
    assert expected.item() == pytest.approx(0.0321, abs=1e-4)
    torch.testing.assert_close(spem.gate(x), expected.expand(2, 16, 1, 1))
    torch.testing.assert_close(spem(x), x * expected)


def test_spem_matches_an_independent_recomputation_of_the_paper_formula():
    torch.manual_seed(0)
    c = 8
    spem = SPEM(c)
    with torch.no_grad():
        for p in spem.parameters():
            p.normal_()
    x = torch.randn(3, c, 6, 5)
    w_rew, b_rew = spem.reweight_weight, spem.reweight_bias
    w_exc, b_exc = spem.excite_weight, spem.excite_bias
    p = spem.pool.p
    f_max = x.flatten(2).max(-1).values.view(3, c, 1, 1)
    f_min = x.flatten(2).min(-1).values.view(3, c, 1, 1)
    a = w_rew * f_max + b_rew
    b = w_rew * f_min + b_rew
    lam = p[0] ** 2 / (p[0] ** 2 + p[1] ** 2)
    mix = w_exc * (lam * a + (1 - lam) * b) + b_exc
    expected = x * (torch.sigmoid(a + b) * torch.sigmoid(mix))
    torch.testing.assert_close(spem(x), expected)


def test_spem_classification_gradient_on_p_is_zero_at_init():
    spem = SPEM(8)
    x = torch.randn(4, 8, 5, 5)
    spem(x).square().sum().backward()
    assert torch.count_nonzero(spem.pool.p.grad) == 0
    assert spem.reweight_weight.grad.abs().sum() > 0


def test_spem_figure_variant_applies_one_sigmoid_to_the_product():
    gate = create_attention("spem_fig", 4).gate(torch.randn(1, 4, 3, 3))
    torch.testing.assert_close(gate, torch.sigmoid(torch.tensor(2.0)).expand(1, 4, 1, 1))


def test_spem_parameter_overhead_is_4c_plus_2():
    for c in (16, 64, 256):
        assert sum(p.numel() for p in create_attention("spem", c).parameters()) == 4 * c + 2


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_spem_keeps_lam_and_gate_in_float32_under_autocast(dtype: torch.dtype) -> None:
    spem = create_attention("spem", 4)
    with torch.no_grad():
        spem.reweight_weight.fill_(1.0)  # r_max + r_min ~ 1e5 would be inf in float16
        spem.excite_weight.fill_(1e-4)
    x = large_activations(dtype)
    with torch.autocast("cpu", dtype=dtype):
        lam, gate, out = spem.pool.lam, spem.gate(x), spem(x)
    assert lam.dtype == torch.float32 and spem.pool.p.dtype == torch.float32
    assert gate.dtype == torch.float32
    torch.testing.assert_close(gate, spem.gate(x.float()))  # the float32 gate, cast only at the product
    assert out.dtype == dtype and torch.isfinite(out).all()
