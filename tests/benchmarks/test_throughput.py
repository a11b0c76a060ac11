"""The throughput benchmark: ratios against fp32 eager, precisions a CPU cannot run skipped and said so."""

from __future__ import annotations

import pytest


def test_throughput_benchmark_reports_ratios_against_fp32_eager(capsys: pytest.CaptureFixture) -> None:
    from spe_lightning.benchmarks.throughput import main

    ratios = main(
        precisions=["32", "16-mixed", "bf16-mixed"],
        channels_last=[False, True],
        compile=[False],
        depth=8,
        block="basic",
        batch_size=4,
        image_size=8,
        steps=1,
        warmup=1,
        rounds=1,
        device="cpu",
    )
    assert list(ratios) == ["32", "32 +channels_last", "bf16-mixed", "bf16-mixed +channels_last"]
    assert ratios["32"] == 1.0 and all(r > 0 for r in ratios.values())
    out = capsys.readouterr().out
    assert "skipped 16-mixed: Lightning runs 16-mixed as bf16-mixed on CPU" in out
    assert "vs fp32 eager" in out
