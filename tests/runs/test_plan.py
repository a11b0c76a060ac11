"""What a command reads and where it writes: fit, fit --ckpt_path last / FILE, and evaluations beside the
checkpoint they evaluate, never a new run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from helpers.cli import run_cli, tiny_args

from spe_lightning.runs.checkpoints import CheckpointError
from spe_lightning.runs.layout import Run
from spe_lightning.runs.plan import readable_last


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    save_dir = tmp_path_factory.mktemp("runs")
    cli, _ = run_cli("fit", *tiny_args(save_dir, max_epochs=2))
    return cli, save_dir, save_dir / "quickstart" / "version_0"


def test_evaluations_go_beside_the_checkpoint_and_fit_last_still_continues_the_fit_run(fitted):
    fit, save_dir, folder = fitted
    fitted_acc1 = float(fit.trainer.callback_metrics["val/acc1"])
    validated, _ = run_cli("validate", *tiny_args(save_dir), "--ckpt_path=last")
    assert float(validated.trainer.callback_metrics["val/acc1"]) == fitted_acc1  # the fitted model's
    run_cli("test", *tiny_args(save_dir), "--ckpt_path=best")
    _, out = run_cli("predict", *tiny_args(save_dir), "--ckpt_path=last")
    assert f"to {folder / 'eval' / 'predict' / 'version_0' / 'predictions.csv'}" in out
    assert sorted(p.name for p in (folder / "eval").iterdir()) == ["predict", "test", "validate"]
    assert [p.name for p in (save_dir / "quickstart").iterdir()] == ["version_0"]  # no new run

    resumed, _ = run_cli("fit", *tiny_args(save_dir, "--ckpt_path=last", max_epochs=3))
    assert resumed.trainer.ckpt_path == str(folder / "checkpoints" / "last.ckpt")
    assert resumed.trainer.global_step == 3 * 2 and Path(resumed.trainer.log_dir) == folder
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 2  # the config the run started with is kept ...
    assert yaml.safe_load((folder / "config.step4.yaml").read_text())["trainer"]["max_epochs"] == 3  # ... too


def test_fit_last_takes_the_newest_run_with_a_checkpoint(tmp_path):
    run_cli("fit", *tiny_args(tmp_path))
    (tmp_path / "quickstart" / "version_1").mkdir()  # a run that died before its first checkpoint
    resumed, _ = run_cli("fit", *tiny_args(tmp_path, "--ckpt_path=last", max_epochs=2))
    assert Path(resumed.trainer.log_dir) == tmp_path / "quickstart" / "version_0"
    assert resumed.trainer.global_step == 4


def test_fit_last_without_a_checkpoint_starts_a_fresh_run_and_says_so(tmp_path, caplog):
    cli, _ = run_cli("fit", *tiny_args(tmp_path, "--ckpt_path=last"))
    folder = tmp_path / "quickstart" / "version_0"
    assert cli.trainer.ckpt_path is None and Path(cli.trainer.log_dir) == folder
    notices = [r.getMessage() for r in caplog.records if "no run under" in r.getMessage()]
    root = tmp_path / "quickstart"
    assert notices == [f"no run under {root} has checkpoints/last.ckpt yet: starting a fresh run in {folder}"]


def test_fit_from_a_best_file_starts_a_new_run_and_leaves_its_run_alone(fitted, tmp_path):
    _, _, folder = fitted
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    best = next((folder / "checkpoints").glob("best-*.ckpt"))
    forked, _ = run_cli("fit", *tiny_args(tmp_path, f"--ckpt_path={best}", max_epochs=6))
    assert Path(forked.trainer.log_dir) == tmp_path / "quickstart" / "version_0"
    assert (tmp_path / "quickstart" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p in before} == before


@pytest.mark.parametrize("damage", ["lost", "truncated"])
def test_a_run_with_checkpoints_but_no_readable_last_is_damaged_not_absent(fitted, tmp_path, damage):
    _, _, folder = fitted
    run = Run(shutil.copytree(folder, tmp_path / "version_0"))
    best = next(run.checkpoints.glob("best-*.ckpt")).name
    if damage == "lost":
        run.last.unlink()
    else:
        run.last.write_bytes(run.last.read_bytes()[:100])  # a copy cut short
    with pytest.raises(CheckpointError) as err:
        readable_last(run)
    problem = "no last.ckpt" if damage == "lost" else "a last.ckpt that cannot be read"
    assert str(err.value).startswith(f"run {run.folder} is damaged: {problem}")
    hint = f"it holds {best}; continue from one of them with --ckpt_path {run.checkpoints / best}"
    assert hint in str(err.value)
