"""The loader benchmark: DataLoader workers against the device pipeline, tiny."""

from __future__ import annotations


def test_the_loader_benchmark_runs_tiny(capsys):
    from spe_lightning.benchmarks import loader as benchmark

    results = benchmark.compare_loaders(images=256, workers=[0], rounds=1, batch_size=64)
    assert set(results) >= {"DataLoader, 0 workers", "device pipeline, cpu"}
    assert "img/s" in capsys.readouterr().out
