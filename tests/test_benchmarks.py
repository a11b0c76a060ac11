"""The benchmark scripts run end to end (their figures are for humans, not asserted)."""

from __future__ import annotations

import torch

from spe_lightning.benchmarks import lightning_overhead, train_step
from spe_lightning.layers import LearnedMixPool


def test_train_step_benchmark_prints_ratios_against_the_first_attention(capsys):
    ratios = train_step.main(
        attentions=["none", "spem", "spem@autograd"],
        depth=8,
        block="basic",
        batch_size=4,
        image_size=8,
        rounds=1,
        warmup=0,
    )
    assert ratios["none"] == 1.0 and set(ratios) == {"none", "spem", "spem@autograd"}
    assert "vs none" in capsys.readouterr().out


def test_autograd_variant_computes_the_same_network():
    torch.manual_seed(0)
    fast = train_step.build("spem", 8, "basic")
    torch.manual_seed(0)
    naive = train_step.build("spem@autograd", 8, "basic")
    assert all(
        isinstance(p.stats, type(train_step._naive_max_min))
        for p in naive.modules()
        if isinstance(p, LearnedMixPool)
    )
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fast(x), naive(x))


def test_lightning_overhead_benchmark_runs(capsys):
    ratio = lightning_overhead.main(epochs=2, rounds=1, depth=8, image_size=8, batch_size=256)
    assert ratio > 0
    out = capsys.readouterr().out
    assert "Lightning fit" in out
    assert "1 rounds x 2 epochs" in out and "median of 1 timed epochs" in out


def test_gpu_check_runs_tiny_on_cpu_without_the_cli(capsys):
    """The GPU check with tiny settings: every figure it prints, and no host sync in an eager step."""
    from spe_lightning.benchmarks import gpu_check

    results = gpu_check.main(
        ["--device", "cpu", "--depth", "8", "--block", "basic", "--batch_size", "4", "--steps", "2",
         "--warmup", "1", "--no-compile", "--images", "256", "--attentions", "se", "spem"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "se     eager" in out and "spem   eager" in out and "device pipeline, cpu" in out
    for attention in ("se", "spem"):
        row = results[attention]
        assert row["eager_img_s"] > 0 and row["kernels"] > 100 and row["syncs"] == 0
