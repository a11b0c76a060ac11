"""The training-step benchmark: ratios against the first attention, and its autograd variant."""

from __future__ import annotations

import torch

from spe_lightning.benchmarks import train_step
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
