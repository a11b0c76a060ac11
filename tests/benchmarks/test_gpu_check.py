"""The GPU check, tiny on CPU and without jsonargparse's CLI (the GPU machines have none)."""

from __future__ import annotations


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
