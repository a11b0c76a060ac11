"""The attention contract: pool, excite, recalibrate; ``x * gate`` with no residual; every attention with
every pool it accepts, in float32 and bfloat16, at any input size; one-line errors for bad names, values."""

from __future__ import annotations

import inspect

import pytest
import torch
from helpers.tensors import maps
from torch import nn

from spe_lightning.core.errors import InputError
from spe_lightning.layers import (
    ATTENTIONS,
    ChannelAttention,
    attention_names,
    attention_pools,
    channel_attention_class,
    create_attention,
    create_pool,
    default_pool,
    pool_label,
)

ATTENTION_NAMES = [a for a in attention_names() if a != "none"]
PAIRS = [(a, p) for a in ATTENTION_NAMES for p in attention_pools(a)]


def test_attention_returns_x_times_gate_with_no_residual():
    for name in ("se", "eca", "srm", "spem"):
        m = create_attention(name, 12).eval()
        x = torch.randn(2, 12, 4, 4)
        torch.testing.assert_close(m(x), x * m.gate(x))


@pytest.mark.parametrize(("name", "pool"), PAIRS)
def test_every_attention_with_every_pool_it_accepts(name, pool):
    """The one check that depends on the pair: forward and backward in float32 and under bfloat16 autocast
    (odd channel count, non-square map), gradients to every learned parameter; large finite inputs stay
    finite, and a NaN input shows in the output (the loss guard then stops the run) instead of being
    replaced by something that looks like a value."""
    m = create_attention(name, 7, pool=pool)
    for dtype in (torch.float32, torch.bfloat16):
        m.zero_grad()
        x = torch.randn(3, 7, 5, 6, dtype=dtype, requires_grad=True)  # as a bf16 conv/BN would hand over
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
            out = m(x)
        assert out.shape == x.shape and out.dtype == dtype
        out.float().sum().backward()
        assert torch.isfinite(x.grad).all()
        assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    m.eval()
    x = 1e3 * maps(1, 7, 4, 4)
    with torch.no_grad():
        assert torch.isfinite(m(x)).all()
        x[0, 2, 1, 1] = float("nan")
        assert not torch.isfinite(m(x)).all()


@pytest.mark.parametrize("name", ATTENTION_NAMES)
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
        (lambda: create_attention("sk", 8), "unknown attention 'sk'; known attentions: cbam, const_gate"),
        (lambda: create_pool("maxmin", lam=1.5), "lam=1.5 is outside the allowed range [0, 1]"),
        (lambda: create_attention("eca", 8, kernel_size=4), "eca kernel_size=4 is not allowed"),
    ],
)
def test_bad_names_and_values_raise_one_line_input_errors_naming_them(call, fragment):
    with pytest.raises(InputError) as info:
        call()
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_module_defaults_follow_their_papers():
    se = create_attention("se", 64)
    assert se.fc1.out_channels == 4 and type(se.pool).__name__ == "AvgPool"
    assert type(create_attention("cbam", 64).channel.pool).__name__ == "AvgMaxPool"
    srm = create_attention("srm", 32)
    assert type(srm.pool).__name__ == "MeanStdPool"
    torch.testing.assert_close(srm.eval().gate(torch.randn(2, 32, 4, 4)), torch.full((2, 32, 1, 1), 0.5))
    assert type(create_attention("spem", 8).pool).__name__ == "LearnedMixPool"


@pytest.mark.parametrize("name", ATTENTION_NAMES)
def test_every_module_shows_the_three_stages_and_writes_only_its_excitation(name):
    """Pooling and recalibration are the base class's; a module writes ``excite`` (SPEM also routes the
    first two stages to its fused GPU op). Its default pool is declared once, on the class."""
    cls = channel_attention_class(name)
    assert issubclass(cls, ChannelAttention)
    modules = [
        base for base in cls.__mro__ if base is not ChannelAttention and issubclass(base, ChannelAttention)
    ]
    overridden = {
        stage for base in modules for stage in ("pool_stage", "recalibrate", "forward") if stage in vars(base)
    }
    assert not overridden
    assert any("excite" in vars(base) for base in modules)
    module = create_attention(name, 16)
    attention = next(m for m in module.modules() if isinstance(m, ChannelAttention))
    x = maps(2, 16, 5, 5)
    with torch.no_grad():
        gate = attention.excite(attention.pool_stage(x))
        torch.testing.assert_close(attention.recalibrate(x, gate), attention(x))
    assert inspect.signature(cls).parameters["pool"].default is None
    assert default_pool(name) == cls.default_pool
    pools = attention_pools(name)
    assert default_pool(name) in pools or (cls.pooling == "none" and not pools)  # the control has no pool
    assert ATTENTIONS.get(name) is not None


def test_a_run_names_the_pool_by_its_one_name():
    assert pool_label("spem", None) == "learned"
    assert pool_label("se", "learned_mix") == "learned"
    assert pool_label("se", "fixed_mix@0.25") == "maxmin@0.25"
    assert pool_label("none", "avg") is None


@pytest.mark.parametrize("name", ATTENTION_NAMES)
def test_every_attention_takes_timms_device_and_dtype_keywords(name):
    cls = ATTENTIONS.get(name)
    built = cls(16, device="meta", dtype=torch.float64)
    assert {(t.device.type, t.dtype) for t in built.parameters()} <= {("meta", torch.float64)}
    assert {"device", "dtype"} <= set(inspect.signature(cls).parameters)
    # the factory passes them on too, and a module built without them is where it always was
    x = maps(2, 16, 5, 5).double()
    assert create_attention(name, 16, dtype=torch.float64)(x).dtype == torch.float64
    assert {t.dtype for t in cls(16).parameters()} <= {torch.float32}
