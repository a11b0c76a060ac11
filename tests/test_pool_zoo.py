"""The pools of the literature and the attentions built on them, each against its paper's formula written
out here, independently of the library (values and gradients), with the limits and edge cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from spe_lightning.layers import (
    LearnedMixPool,
    attention_names,
    attention_pools,
    create_attention,
    create_pool,
    pool_names,
)
from spe_lightning.models import create_backbone, pooling_regularization, valued_pools
from spe_lightning.summary import model_stats


def check(pool_or_module, formula, x: Tensor, params: tuple[str, ...] = ()) -> None:
    """Output and gradients (input and the named parameters) of the module against ``formula(x)``."""
    x = x.clone().requires_grad_(True)
    out = pool_or_module(x)
    expected = formula(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(out)
    tensors = [x] + [getattr(pool_or_module, name) for name in params]
    got = torch.autograd.grad(out, tensors, upstream)
    want = torch.autograd.grad(expected, tensors, upstream)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def maps(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


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


def test_softpool_is_the_softmax_weighted_sum():
    def formula(x: Tensor) -> Tensor:
        e = torch.exp(x)
        return (e * x).sum((2, 3), keepdim=True) / e.sum((2, 3), keepdim=True)

    check(create_pool("softpool"), formula, maps(2, 6, 3, 7))
    big = 80.0 * maps(1, 2, 4, 4)  # exp(80 x) overflows float32 unless shifted
    assert torch.isfinite(create_pool("softpool")(big)).all()


def dct_reference(x: Tensor, frequencies: list[tuple[int, int]]) -> Tensor:
    """FcaNet's pooling written out: channel group i, DCT-II basis (u_i, v_i), orthonormal scale."""
    b, c, h, w = x.shape

    def basis(freq: int, pos: int, size: int) -> float:
        value = math.cos(math.pi * freq * (pos + 0.5) / size) / math.sqrt(size)
        return value * math.sqrt(2) if freq else value

    per_group = c // len(frequencies)
    out = torch.zeros(b, c, 1, 1)
    for ch in range(c):
        u, v = frequencies[ch // per_group]
        weights = torch.tensor([[basis(u, i, h) * basis(v, j, w) for j in range(w)] for i in range(h)])
        out[:, ch, 0, 0] = (x[:, ch] * weights).sum((1, 2))
    return out


def test_dct_pools_each_channel_group_at_its_frequency():
    top4 = [(0, 0), (0, 1), (6, 0), (0, 5)]  # the paper's four best frequencies
    pool = create_pool("dct", channels=8, frequencies="top4")
    check(pool, lambda x: dct_reference(x, top4), maps(2, 8, 7, 7))
    # a 14 x 14 map: the filter is 14 x 14 with the 7 x 7 frequencies doubled, as the authors scale them
    check(pool, lambda x: dct_reference(x, [(2 * u, 2 * v) for u, v in top4]), maps(2, 8, 14, 14))
    # a 32 x 32 map is average-pooled to the 28 x 28 filter first
    check(pool, lambda x: dct_reference(F.adaptive_avg_pool2d(x, 28), [(4 * u, 4 * v) for u, v in top4]),
          maps(1, 8, 32, 32))  # fmt: skip


def test_dct_lowest_frequency_alone_is_average_pooling():
    x = maps(2, 6, 14, 14)
    mean = x.mean((2, 3), keepdim=True)
    torch.testing.assert_close(create_pool("dct", channels=6, frequencies="top1", scale="mean")(x), mean)
    torch.testing.assert_close(create_pool("dct", channels=6, frequencies="low1")(x), 14 * mean)


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


def test_l2_is_gcts_scaled_norm():
    pool = create_pool("l2", channels=4)
    with torch.no_grad():
        pool.alpha.copy_(torch.tensor([1.0, 0.5, 2.0, -1.0]).view(1, 4, 1, 1))
    check(pool, lambda x: pool.alpha * (x.square().sum((2, 3), keepdim=True) + 1e-5).sqrt(), maps(2, 4, 3, 3),
          params=("alpha",))  # fmt: skip


def test_learned_mix_over_any_pools_uses_spems_squared_weights():
    pool = create_pool("learned", pools=["avg", "max", "min"], init=[1.0, 2.0, 3.0])
    x = maps(2, 5, 4, 4)

    def formula(x: Tensor) -> Tensor:
        w = pool.p.square() / pool.p.square().sum()
        stats = (x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True), x.amin((2, 3), keepdim=True))
        return sum(wi * s for wi, s in zip(w, stats, strict=True))

    check(pool, formula, x, params=("p",))
    net = create_backbone("cifar_resnet", 3, depth=8, block="basic", attention="se", pool="learned",
                          attention_kwargs={"pool_kwargs": {"pools": ["avg", "gem"]}})  # fmt: skip
    ps = [m.p for m in net.modules() if isinstance(m, LearnedMixPool)]
    torch.testing.assert_close(pooling_regularization(net), sum(p.square().sum() for p in ps))


def test_the_papers_learned_mix_keeps_its_checkpoints_loadable():
    old = {"p": torch.tensor([0.3, 0.7])}  # a LearnedMixPool state dict before pools could be listed
    pool = create_pool("learned")
    pool.load_state_dict(old)
    assert pool.pools is None and pool.pool_names == ("max", "min")
    torch.testing.assert_close(pool.lam, torch.tensor(0.09 / 0.58))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: create_pool("gem@0"), "gem pool p=0.0 is not allowed; the exponent must be"),
        (lambda: create_pool("lse@-1"), "lse pool r=-1.0 is not allowed; the sharpness must"),
        (lambda: create_pool("dct", channels=8, frequencies="top3"), "frequencies='top3' is not allowed"),
        (lambda: create_pool("dct"), "dct pool needs channels"),
        (lambda: create_pool("mixed@1.5"), "mixed pool a=1.5 is outside the allowed range [0, 1]"),
        (lambda: create_pool("learned", pools=["max", "avgmax"]), "learned pool: avgmax pool more than one"),
        (lambda: create_pool("learned", pools=["max"]), "give two or more pools and one init value"),
        (lambda: create_attention("coord", 8, pool="dct"), "cannot use pool 'dct'; pools that"),
        (lambda: create_attention("coord", 8, pool="mixed", pool_kwargs={"per_channel": True}),
         "coord attention cannot use pool 'mixed'"),
    ],
)  # fmt: skip
def test_bad_pool_arguments_name_the_value(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_directional_pools_pool_one_axis_at_a_time():
    x = maps(2, 3, 4, 6)
    for dim in (2, 3):
        torch.testing.assert_close(create_pool("avg").along(x, dim), x.mean(dim, keepdim=True))
        torch.testing.assert_close(create_pool("max").along(x, dim), x.amax(dim, keepdim=True))
        torch.testing.assert_close(create_pool("min").along(x, dim), x.amin(dim, keepdim=True))
        mix = 0.3 * x.amax(dim, keepdim=True) + 0.7 * x.amin(dim, keepdim=True)
        torch.testing.assert_close(create_pool("maxmin@0.3").along(x, dim), mix)
        gem = (x.clamp(min=1e-6) ** 3).mean(dim, keepdim=True) ** (1 / 3)
        torch.testing.assert_close(create_pool("gem").along(x, dim), gem, rtol=1e-5, atol=1e-6)
    assert attention_pools("coord") == [p for p in pool_names() if p not in ("dct", "gated", "l2")]
    assert attention_pools("se") == pool_names()


def test_fca_is_se_with_dct_squeeze_and_no_biases():
    m = create_attention("fca", 32)
    assert m.fc1.bias is None and m.fc2.bias is None and type(m.pool).__name__ == "DCTPool"

    def formula(x: Tensor) -> Tensor:
        z = dct_reference(
            F.adaptive_avg_pool2d(x, 7),
            [
                (0, 0),
                (0, 1),
                (6, 0),
                (0, 5),
                (0, 2),
                (1, 0),
                (1, 2),
                (4, 0),
                (5, 0),
                (1, 6),
                (3, 0),
                (0, 4),
                (0, 6),
                (0, 3),
                (3, 5),
                (2, 2),
            ],
        )
        hidden = F.relu(F.conv2d(z, m.fc1.weight))
        return x * torch.sigmoid(F.conv2d(hidden, m.fc2.weight))

    check(m, formula, maps(2, 32, 8, 8))


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


def test_coordinate_attention_follows_the_papers_equations():
    m = create_attention("coord", 16).train()
    x = maps(2, 16, 5, 7)

    def formula(x: Tensor) -> Tensor:
        z_h, z_w = x.mean(3, keepdim=True), x.mean(2, keepdim=True).permute(0, 1, 3, 2)
        y = torch.cat((z_h, z_w), 2)
        y = F.conv2d(y, m.conv1.weight, m.conv1.bias)
        y = F.batch_norm(y, None, None, m.bn.weight, m.bn.bias, training=True, eps=m.bn.eps)
        y = y * F.relu6(y + 3) / 6
        y_h, y_w = y[:, :, :5], y[:, :, 5:].permute(0, 1, 3, 2)
        a_h = torch.sigmoid(F.conv2d(y_h, m.conv_h.weight, m.conv_h.bias))
        a_w = torch.sigmoid(F.conv2d(y_w, m.conv_w.weight, m.conv_w.bias))
        return x * a_w * a_h

    check(m, formula, x)
    assert m.conv1.out_channels == 8  # max(8, 16 // 32)
    assert create_attention("coord", 512).conv1.out_channels == 16


def _blocks(depth: int = 164) -> list[int]:
    """Output channels of ResNet-164's 54 bottleneck blocks: 18 per stage of 64, 128 and 256."""
    n = (depth - 2) // 9
    return [64] * n + [128] * n + [256] * n


@pytest.mark.parametrize(
    ("attention", "extra"),
    [
        ("fca", lambda c: 2 * c * (c // 16)),  # two bias-free fc layers
        ("gct", lambda c: 3 * c),  # alpha, gamma, beta
        # conv1 (+bias), BatchNorm (2), conv_h and conv_w (+bias), hidden = max(8, c // 32)
        ("coord", lambda c: (c + 1) * max(8, c // 32) + 2 * max(8, c // 32) + 2 * (max(8, c // 32) + 1) * c),
    ],
)
def test_resnet164_parameter_counts_as_the_summary_prints_them(attention, extra):
    plain = model_stats("cifar_resnet", 10, "none", depth=164, block="bottleneck").params
    stats = model_stats("cifar_resnet", 10, attention, depth=164, block="bottleneck")
    assert stats.params - plain == sum(extra(c) for c in _blocks())
    assert stats.params == {"fca": 1_897_690, "gct": 1_728_346, "coord": 1_915_114}[attention]


PAIRS = [(a, p) for a in attention_names() if a != "none" for p in attention_pools(a)]


@pytest.mark.parametrize("pool", pool_names())
def test_constant_maps_and_a_one_by_one_map_give_finite_documented_values(pool):
    for shape, value in (((2, 8, 5, 5), 0.7), ((2, 8, 5, 5), -0.7), ((2, 8, 1, 1), 1.3)):
        x = torch.full(shape, value)
        out = create_pool(pool, channels=8)(x)
        assert torch.isfinite(out).all(), (pool, shape, value)
        expected = {
            "gem": max(value, 1e-6),  # the clamp: negative responses count as eps
            "l2": math.sqrt(shape[2] * shape[3] * value**2 + 1e-5),
            "avgmax": 2 * value,  # CBAM's two statistics summed
            "style": value + math.sqrt(1e-5),
            "meanstd": value + math.sqrt(1e-5),
        }.get(pool, value)
        expected = torch.full((2, 8, 1, 1), expected)
        if pool == "dct":  # channel 0 takes the DC component (7 x the mean at the orthonormal scale), the
            expected[:, 1:] = 0  # others higher frequencies, which a constant map does not have
            expected[:, 0] = 7 * value
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("attention", "pool"), PAIRS)
def test_large_finite_inputs_stay_finite_and_non_finite_ones_propagate(attention, pool):
    """Finite in, finite out, never a silent NaN; a NaN or inf input shows up in the output (the loss
    guard then stops the run) instead of being replaced by something that looks like a value."""
    m = create_attention(attention, 8, pool=pool).eval()
    x = 1e3 * maps(1, 8, 4, 4)
    with torch.no_grad():
        assert torch.isfinite(m(x)).all()
        x[0, 2, 1, 1] = float("nan")
        assert not torch.isfinite(m(x)).all()


def test_learned_pool_values_are_found_for_logging():
    net = create_backbone("cifar_resnet", 3, depth=8, block="basic", attention="se", pool="gem")
    found = valued_pools(net)
    assert [name for name, _ in found] == ["layer1.0", "layer2.0", "layer3.0"]
    assert list(found[0][1].logged_values()) == ["gem_p"]
    lse = create_backbone("cifar_resnet", 3, depth=8, block="basic", attention="eca", pool="lse")
    assert {k for _, p in valued_pools(lse) for k in p.logged_values()} == {"lse_r"}
    assert list(create_pool("mixed").logged_values()) == ["mixed_a"]
