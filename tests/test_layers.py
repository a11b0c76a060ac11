"""Pooling strategies and attention modules: values, gradients, contracts."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from spe_lightning.layers import (
    SPEM,
    attention_names,
    attention_pools,
    create_attention,
    create_pool,
    eca_kernel_size,
    global_max_min,
    pool_names,
)
from spe_lightning.layers.pool import LearnedMixPool

ATTENTIONS = [a for a in attention_names() if a != "none"]
POOLS = pool_names()


def test_pool_values_match_their_definitions():
    x = torch.randn(3, 5, 4, 6)
    mx, mn = x.amax((2, 3), keepdim=True), x.amin((2, 3), keepdim=True)
    torch.testing.assert_close(create_pool("avg")(x), x.mean((2, 3), keepdim=True))
    torch.testing.assert_close(create_pool("max")(x), mx)
    torch.testing.assert_close(create_pool("min")(x), mn)
    torch.testing.assert_close(create_pool("maxmin", lam=0.25)(x), 0.25 * mx + 0.75 * mn)
    torch.testing.assert_close(create_pool("avgmax")(x), x.mean((2, 3), keepdim=True) + mx)
    std = x.std((2, 3), correction=0, keepdim=True)
    stats = create_pool("meanstd").stats(x)
    assert stats.shape == (2, 3, 5, 1, 1)  # S x B x C x 1 x 1
    torch.testing.assert_close(stats[1], torch.sqrt(std**2 + 1e-5))


def test_learned_mix_parameterisation():
    pool = create_pool("learned")
    assert pool.lam.item() == pytest.approx(0.5)
    assert pool.regularization().item() == pytest.approx(0.5)
    with torch.no_grad():
        pool.p.copy_(torch.tensor([3.0, 1.0]))
    assert pool.lam.item() == pytest.approx(0.9)
    assert pool.regularization().item() == pytest.approx(10.0)
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(
        pool(x), 0.9 * x.amax((2, 3), keepdim=True) + 0.1 * x.amin((2, 3), keepdim=True)
    )


def test_lam_stays_float32_under_autocast():
    pool = create_pool("learned")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert pool.lam.dtype == torch.float32
        assert pool(torch.randn(2, 3, 4, 4)).shape == (2, 3, 1, 1)


@pytest.mark.parametrize("channels_last", [False, True])
def test_max_min_gradient_matches_autograd(channels_last):
    x = torch.randn(4, 6, 5, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(2, 4, 6, 1, 1)
    out = global_max_min(x1)
    torch.testing.assert_close(out, torch.stack((x.amax((2, 3), keepdim=True), x.amin((2, 3), keepdim=True))))
    out.backward(g)
    torch.stack((x2.amax((2, 3), keepdim=True), x2.amin((2, 3), keepdim=True))).backward(g)
    torch.testing.assert_close(x1.grad, x2.grad)


def test_max_min_ties_route_gradient_to_one_element():
    x = torch.zeros(1, 2, 3, 3, requires_grad=True)  # every element is both max and min
    global_max_min(x).backward(torch.tensor([1.0, 2.0, 10.0, 20.0]).view(2, 1, 2, 1, 1))
    flat = x.grad.flatten(2)
    assert torch.count_nonzero(flat, dim=2).tolist() == [[1, 1]]
    assert flat.sum(2).tolist() == [[11.0, 22.0]]  # max grad + min grad, per channel


def test_max_min_is_deterministic_under_deterministic_algorithms():
    torch.use_deterministic_algorithms(True)
    try:
        x = torch.randn(2, 3, 8, 8, requires_grad=True)
        global_max_min(x).sum().backward()
        first = x.grad.clone()
        x.grad = None
        global_max_min(x).sum().backward()
        assert torch.equal(first, x.grad)
    finally:
        torch.use_deterministic_algorithms(False)


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


@pytest.mark.parametrize(
    ("channels", "kernel"), [(16, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)]
)
def test_eca_kernel_size_is_computed_from_channels(channels, kernel):
    assert eca_kernel_size(channels) == kernel
    assert create_attention("eca", channels).conv.kernel_size == (kernel,)


def test_module_defaults_follow_their_papers():
    se = create_attention("se", 64)
    assert se.fc1.out_channels == 4 and type(se.pool).__name__ == "AvgPool"
    assert type(create_attention("cbam", 64).channel.pool).__name__ == "AvgMaxPool"
    srm = create_attention("srm", 32)
    assert type(srm.pool).__name__ == "MeanStdPool"
    torch.testing.assert_close(srm.eval().gate(torch.randn(2, 32, 4, 4)), torch.full((2, 32, 1, 1), 0.5))
    assert type(create_attention("spem", 8).pool).__name__ == "LearnedMixPool"


def test_attention_returns_x_times_gate_with_no_residual():
    for name in ("se", "eca", "srm", "spem"):
        m = create_attention(name, 12).eval()
        x = torch.randn(2, 12, 4, 4)
        torch.testing.assert_close(m(x), x * m.gate(x))


@pytest.mark.parametrize(("name", "pool"), [(a, p) for a in ATTENTIONS for p in attention_pools(a)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_attention_with_every_pool_it_accepts_forward_backward(name, pool, dtype):
    m = create_attention(name, 7, pool=pool)  # odd channel count
    x = torch.randn(3, 7, 5, 6, dtype=dtype, requires_grad=True)  # as a bf16 conv/BN would hand over
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
        out = m(x)
    assert out.shape == x.shape and out.dtype == dtype
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ATTENTIONS)
@pytest.mark.parametrize("hw", [(1, 1), (3, 9), (32, 32)])
def test_any_input_size_and_batch_one_in_eval(name, hw):
    m = create_attention(name, 5).eval()
    with torch.no_grad():
        out = m(torch.randn(1, 5, *hw))
    assert out.shape == (1, 5, *hw) and torch.isfinite(out).all()


def test_pool_instance_passes_through_and_custom_kwargs():
    pool = create_pool("maxmin", lam=0.75)
    assert create_attention("se", 8, pool=pool).pool is pool
    assert create_attention("se", 8, pool="maxmin", pool_kwargs={"lam": 0.1}).pool.lam == 0.1
    assert isinstance(create_attention("none", 8), nn.Identity)
    assert isinstance(create_attention(None, 8), nn.Identity)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: create_pool("median"), "unknown pool 'median'; known pools: avg, avgmax"),
        (lambda: create_attention("sk", 8), "unknown attention 'sk'; known attentions: cbam, coord, eca"),
        (lambda: create_pool("maxmin", lam=1.5), "lam=1.5 is outside the allowed range [0, 1]"),
        (lambda: create_attention("eca", 8, kernel_size=4), "eca kernel_size=4 is not allowed"),
    ],
)
def test_bad_names_and_values_raise_value_error_naming_them(call, fragment):
    with pytest.raises(ValueError, match=None) as info:
        call()
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_se_gate_on_fixed_mix_equals_gate_on_mixed_statistic():
    """The phenomenon experiment pools before exciting: SE(maxmin) == SE applied to the mixed vector."""
    torch.manual_seed(0)
    se = create_attention("se", 16, pool="maxmin", pool_kwargs={"lam": 0.3})
    x = torch.randn(2, 16, 4, 4)
    z = 0.3 * x.amax((2, 3), keepdim=True) + 0.7 * x.amin((2, 3), keepdim=True)
    torch.testing.assert_close(se.gate(x), torch.sigmoid(se.fc2(torch.relu(se.fc1(z)))))
    assert math.isclose(se.pool.stat_weights().sum().item(), 1.0)


@pytest.mark.parametrize("hw", [(32, 32), (24, 40)])
def test_gradient_goes_to_the_first_extreme_on_large_maps_with_ties(hw):
    x = torch.randn(2, 3, *hw)
    x[0, 0] = 1.0  # ties: the first occurrence wins, as with a flat argmax
    x[1, 2, 5:, :] = 7.0
    xg = x.clone().requires_grad_()
    g = torch.randn(2, 2, 3, 1, 1)
    global_max_min(xg).backward(g)
    flat = x.flatten(2)
    expected = torch.zeros_like(flat)
    expected.scatter_(2, flat.argmax(2, keepdim=True), g[0, ..., 0])
    expected.scatter_add_(2, flat.argmin(2, keepdim=True), g[1, ..., 0])
    torch.testing.assert_close(xg.grad, expected.view_as(x))


def test_pool_shorthand_sets_the_pools_argument_and_rejects_what_it_cannot_set():
    from spe_lightning.layers.pool import parse_pool

    assert parse_pool("maxmin@0.25") == ("maxmin", {"lam": 0.25})
    assert parse_pool("avg") == ("avg", {})
    assert torch.equal(create_pool("maxmin@0.25").stat_weights(), torch.tensor([0.25, 0.75]))
    for spec, message in [
        ("max@3", "'max' takes no @value (pools that do: fixed_mix@<lam>, gem@<p>, lse@<r>, maxmin@<lam>"),
        ("maxmin@x", "'x' is not a number (maxmin@<lam>)"),
        ("median@1", "unknown pool 'median'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            create_pool(spec)
    with pytest.raises(ValueError, match="sets lam twice"):
        create_pool("maxmin@0.25", lam=0.5)


@pytest.mark.parametrize("p", [(0.7, 0.3), (0.05, -0.2), (1.5, 2.5)])
def test_the_learned_mix_recovers_the_classification_gradient_on_lam(p):
    """dL/dlam from p.grad, with the regulariser's gradient in p.grad too: as autograd gives it on lam."""
    pool = LearnedMixPool()
    pool.p.data = torch.tensor(p)
    lam = pool.lam
    lam.retain_grad()
    loss = torch.sin(3 * lam) + 0.1 * pool.regularization()  # any function of lam, plus alpha |p|^2
    loss.backward()
    values = pool.diagnostics()
    assert values["lam_grad"].item() == pytest.approx(lam.grad.item(), rel=1e-5)
    assert values["p_norm"].item() == pytest.approx(torch.tensor(p).norm().item())


def test_the_lam_gradient_is_absent_before_a_backward_and_for_wider_mixes():
    assert set(LearnedMixPool().diagnostics()) == {"p_norm"}
    wide = LearnedMixPool(pools=("avg", "max", "min"))
    wide.regularization().backward()
    assert set(wide.diagnostics()) == {"p_norm"}
    at_one = LearnedMixPool(init=(1.0, 0.0))
    (at_one.lam * 2).backward()
    assert at_one.diagnostics()["lam_grad"].item() == 0.0  # lam exactly 1: no direction to move


def test_the_softmax_parameterization_mixes_by_differences_of_p():
    pool = LearnedMixPool(init=(1.0, 0.0), parameterization="softmax")
    assert pool.lam.item() == pytest.approx(1 / (1 + math.exp(-1.0)))
    lam = pool.lam
    lam.retain_grad()
    loss = torch.sin(3 * lam) + 0.1 * pool.regularization()
    loss.backward()
    # the regulariser's gradient is not orthogonal to dlam/dp here: alpha is needed to take it out
    assert pool.diagnostics(alpha=0.1)["lam_grad"].item() == pytest.approx(lam.grad.item(), rel=1e-5)
    assert pool.diagnostics()["lam_grad"].item() != pytest.approx(lam.grad.item(), rel=1e-3)
    with pytest.raises(
        ValueError, match="parameterization='cube' is not allowed; use one of: square, softmax"
    ):
        LearnedMixPool(parameterization="cube")
