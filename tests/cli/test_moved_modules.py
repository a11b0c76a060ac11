"""A run made by spe_lightning 0.1, before the package was laid out by role (tests/fixtures/run_v0_1): its
``config.yaml`` names classes by their old import paths, and the run still resumes, validates and reports."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.cli import REPO, run_cli

from spe_lightning.analysis.reader import read_run
from spe_lightning.cli.moved_modules import MOVED, map_moved_modules

FIXTURE = REPO / "tests" / "fixtures" / "run_v0_1"


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    """The 0.1 run copied to ``tmp_path/runs``, its recorded run root pointed there."""
    root = tmp_path / "runs"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("README.md"))
    for name in ("config.yaml", "result.json"):
        path = root / "quickstart" / "version_0" / name
        path.write_text(path.read_text().replace("@RUNS@", str(root)))
    return root / "quickstart" / "version_0"


def test_the_old_import_paths_find_the_moved_classes():
    map_moved_modules()
    import spe_lightning.checkpoint_io as old_checkpoint_io
    import spe_lightning.loggers as old_loggers

    from spe_lightning.runs.checkpoints import SafeCheckpointIO
    from spe_lightning.training.loggers import TensorBoardLogger

    assert old_loggers.TensorBoardLogger is TensorBoardLogger
    assert old_checkpoint_io.SafeCheckpointIO is SafeCheckpointIO
    assert set(MOVED) >= {"spe_lightning.loggers", "spe_lightning.checkpoint_io"}


def test_an_old_run_resumes_from_its_own_config_then_validates_and_reports(old_run):
    config = old_run / "config.yaml"
    assert "spe_lightning.loggers.TensorBoardLogger" in config.read_text()
    resumed, out = run_cli("fit", "--config", str(config), "--ckpt_path=last", "--trainer.max_epochs=2",
                           "--trainer.enable_progress_bar=false")  # fmt: skip
    assert resumed.trainer.ckpt_path == str(old_run / "checkpoints" / "last.ckpt")
    assert resumed.trainer.global_step == 4 and Path(resumed.trainer.log_dir) == old_run
    assert "best val/acc1 = " in out
    validated, _ = run_cli("validate", "--config", str(config), "--ckpt_path=last",
                           "--trainer.enable_progress_bar=false")  # fmt: skip
    assert 0.0 <= float(validated.trainer.callback_metrics["val/acc1"]) <= 1.0
    assert (old_run / "eval" / "validate" / "version_0").is_dir()
    _, out = run_cli("report", str(old_run.parent))
    row = next(line for line in out.splitlines() if line.startswith("| version_0 |"))
    assert row.startswith("| version_0 | Digits | cifar_resnet | 8 | spem | learned | 42 |")
    assert "| 78208 |" in row  # the parameters of the model its hparams.yaml rebuilds
    assert read_run(old_run).status == "finished" and len(read_run(old_run).lam) == 3
