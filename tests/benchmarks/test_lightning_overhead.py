"""The Lightning-overhead benchmark runs end to end (its figures are for humans, not asserted)."""

from __future__ import annotations

from spe_lightning.benchmarks import lightning_overhead


def test_lightning_overhead_benchmark_runs(capsys):
    ratio = lightning_overhead.main(epochs=2, rounds=1, depth=8, image_size=8, batch_size=256)
    assert ratio > 0
    out = capsys.readouterr().out
    assert "Lightning fit" in out
    assert "1 rounds x 2 epochs" in out and "median of 1 timed epochs" in out
