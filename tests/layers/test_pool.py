"""Pooling strategies (stage 1): their values against the definitions, the learned max/min mix and its
diagnostics, one name per pool, the ``name@value`` shorthand, errors, and half precision."""

from __future__ import annotations

import inspect
import math
import re

import pytest
import torch
from helpers.tensors import check, large_activations, maps
from torch import Tensor

from spe_lightning.core.errors import InputError
from spe_lightning.layers import LearnedMixPool, attention_pools, create_attention, create_pool, pool_names
from spe_lightning.layers.pool import POOLS, parse_pool
from spe_lightning.models import create_backbone, pooling_regularization

HALF_TYPES = [torch.float16, torch.bfloat16]


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


def test_pool_shorthand_sets_the_pools_argument_and_rejects_what_it_cannot_set():
    assert parse_pool("maxmin@0.25") == ("maxmin", {"lam": 0.25})
    assert parse_pool("avg") == ("avg", {})
    assert torch.equal(create_pool("maxmin@0.25").stat_weights(), torch.tensor([0.25, 0.75]))
    for spec, message in [
        ("max@3", "'max' takes no @value (pools that do: gem@<p>, lse@<r>, maxmin@<lam>, mixed@<a>)"),
        ("maxmin@x", "'x' is not a number (maxmin@<lam>)"),
        ("median@1", "unknown pool 'median'"),
    ]:
        with pytest.raises(InputError, match=re.escape(message)):
            create_pool(spec)
    with pytest.raises(InputError, match="sets lam twice"):
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
         "CoordinateAttention cannot use pool 'mixed'"),
    ],
)  # fmt: skip
def test_bad_pool_arguments_name_the_value(call, message):
    with pytest.raises(InputError) as err:
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
            "meanstd": value + math.sqrt(1e-5),
        }.get(pool, value)
        expected = torch.full((2, 8, 1, 1), expected)
        if pool == "dct":  # channel 0 takes the DC component (7 x the mean at the orthonormal scale), the
            expected[:, 1:] = 0  # others higher frequencies, which a constant map does not have
            expected[:, 0] = 7 * value
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", HALF_TYPES)
@pytest.mark.parametrize("pool", ["avg", "max", "min", "maxmin", "learned", "avgmax", "meanstd"])
def test_pooled_statistics_do_not_overflow_under_autocast(pool: str, dtype: torch.dtype) -> None:
    module = create_pool(pool)
    x = large_activations(dtype)
    with torch.autocast("cpu", dtype=dtype):
        stats = module.stats(x)
    assert torch.isfinite(stats).all()
    rtol = 0.0 if pool in ("max", "min", "maxmin", "learned") else 1e-2  # extremes are exact
    torch.testing.assert_close(stats.float(), module.stats(x.float()), rtol=rtol, atol=0.0)


def test_each_pool_has_one_name_and_old_names_resolve_to_it():
    """``fixed_mix``, ``learned_mix`` and ``style`` are aliases: they build the pool, which is listed and
    named once."""
    assert POOLS.aliases() == {"fixed_mix": "maxmin", "learned_mix": "learned", "style": "meanstd"}
    assert not set(POOLS.aliases()) & set(pool_names())
    for alias, name in POOLS.aliases().items():
        assert type(create_pool(alias)) is type(create_pool(name))
        assert POOLS.canonical(alias.upper()) == name
    with pytest.raises(InputError, match="unknown pool 'median'; known pools: avg, avgmax, dct"):
        POOLS.canonical("median")


OTHER_SETTINGS = {
    "dct": {"frequencies": "low16", "size": 14, "scale": "mean"},
    "learned": {"init": (1.0, 0.5), "pools": ("avg", "max"), "parameterization": "softmax"},
}
"""Arguments that are not numbers, with a value other than the default."""


def changed(default: object) -> list[object]:
    """Values other than ``default`` for a numeric or boolean constructor argument, to try in turn."""
    if isinstance(default, bool):
        return [not default]
    if isinstance(default, int):
        return [default + 1]
    if isinstance(default, float):
        return [value for value in (0.25, 2.0, default / 2) if value != default]
    return []


@pytest.mark.parametrize("name", pool_names())
def test_a_pools_repr_shows_every_setting_that_makes_it_differ(name):
    """Two pools built differently never print the same: every numeric or boolean argument shows."""
    cls = POOLS.get(name)
    default = repr(create_pool(name, channels=8))
    tried = 0
    for arg in inspect.signature(cls.__init__).parameters.values():
        if arg.name == "channels" or arg.default is inspect.Parameter.empty:
            continue
        for value in changed(arg.default):
            try:
                other = create_pool(name, channels=8, **{arg.name: value})
            except InputError:
                continue
            assert repr(other) != default, f"{name}: {arg.name}={value!r} does not show in {default}"
            tried += 1
            break
    for arg, value in OTHER_SETTINGS.get(name, {}).items():
        assert repr(create_pool(name, channels=8, **{arg: value})) != default, f"{name}: {arg} does not show"
        tried += 1
    assert tried or {"self", "weights"} >= set(inspect.signature(cls.__init__).parameters)
    assert repr(create_pool("maxmin@0.25")) == "FixedMixPool(lam=0.25)"


def test_a_learned_pools_repr_shows_its_value_now_and_a_meta_one_still_prints():
    pool = create_pool("learned")
    with torch.no_grad():
        pool.p.copy_(torch.tensor([1.0, 0.0]))
    assert repr(pool).endswith("lam=1)")
    assert "lam" not in repr(create_pool("learned").to("meta"))
