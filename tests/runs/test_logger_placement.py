"""Whatever loggers a user brings, the run's own files stay in its run folder and nothing else is written
over: TensorBoard and CSV loggers are placed in the run folder, W&B and MLflow keep their own settings,
``logger: false`` trains without logging. Through the real CLI, each case run twice."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from helpers.cli import run_cli, tiny_args
from helpers.runs import scalar_steps

from spe_lightning.runs.log_names import LAM_VIEW, TENSORBOARD_FLAGS

pytestmark = pytest.mark.slow  # two fits per case, some through third-party loggers

MODEL_RUN = "cifar_resnet8-spem-learned"
"""The run name when no TensorBoard or CSV logger names it (the quickstart config names its own)."""


def optional(package: str) -> None:
    pytest.importorskip(package, reason=f"{package} is not installed: pip install 'spe-lightning[loggers]'")


def wandb_args(tmp_path: Path) -> list[str]:
    optional("wandb")
    return [
        "--trainer.logger=WandbLogger",
        "--trainer.logger.init_args.offline=true",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'wandb_store'}",
    ]


def mlflow_args(tmp_path: Path) -> list[str]:
    optional("mlflow")
    return [
        "--trainer.logger=MLFlowLogger",
        f"--trainer.logger.init_args.tracking_uri=file:{tmp_path / 'mlruns'}",
    ]


CASES = {
    # case: (the logger arguments, the run root under runs/, the logger's own store, what holds val/acc1)
    "csv alone": (lambda tmp: ["--trainer.logger=CSVLogger"], "quickstart", None, "metrics.csv"),
    "tensorboard and csv": (
        lambda tmp: [
            "--trainer.logger=[{class_path: spe_lightning.loggers.TensorBoardLogger, init_args: "
            "{save_dir: runs, name: quickstart}}, {class_path: CSVLogger, init_args: {save_dir: elsewhere}}]"
        ],
        "quickstart",
        None,
        "events and csv/metrics.csv",
    ),
    "wandb offline": (wandb_args, MODEL_RUN, "wandb_store", "wandb"),
    "mlflow file store": (mlflow_args, MODEL_RUN, "mlruns", "mlflow"),
    "no logger": (lambda tmp: ["--trainer.logger=false"], MODEL_RUN, None, None),
}


def files_under(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("case", CASES)
def test_checkpoints_config_and_metrics_go_where_the_run_is_and_no_run_is_written_over(
    case, tmp_path, monkeypatch, caplog
):
    logger_args, root_name, store, metrics = CASES[case]
    monkeypatch.chdir(tmp_path)  # runs/ and any relative logger folder land here
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this to use a folder
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = tiny_args(tmp_path / "runs", *logger_args(tmp_path))
    run_cli("fit", *args)
    if store == "wandb_store":  # two CLI runs are two processes; here W&B would reuse its unfinished run
        sys.modules["wandb"].finish()
    first = files_under(tmp_path)
    cli, _ = run_cli("fit", *args)
    root = tmp_path / "runs" / root_name
    for version in ("version_0", "version_1"):
        run = root / version
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
        assert (run / "result.json").is_file()
    # the second run wrote over nothing of the first, and nothing outside its run folder and the store
    now = files_under(tmp_path)  # the logger's own store is the logger's to keep (W&B rewrites its debug.log)
    ours = {path: mtime for path, mtime in first.items() if not (store and tmp_path / store in path.parents)}
    changed = [path for path, mtime in ours.items() if now.get(path) != mtime]
    assert not changed, changed
    allowed = [root / "version_1"] + ([tmp_path / store] if store else [])
    outside = [
        p for p in files_under(tmp_path) if p not in first and not any(a in p.parents for a in allowed)
    ]
    assert not outside, outside
    run = root / "version_1"
    # fit says how to watch lam where TensorBoard logs, once per run
    hints = [r.getMessage() for r in caplog.records if r.getMessage().startswith("watch lam: tensorboard")]
    expected = f"--logdir {root} {TENSORBOARD_FLAGS}, then open http://localhost:6006/{LAM_VIEW}"
    assert hints == ([hints[0]] * 2 if "tensorboard" in case else []) and (not hints or expected in hints[0])
    if metrics == "metrics.csv":
        assert "val/acc1" in (run / "metrics.csv").read_text().splitlines()[0]
    elif metrics == "events and csv/metrics.csv":
        assert "val/acc1" in scalar_steps(run) and "val/acc1" in (run / "csv" / "metrics.csv").read_text()
        assert not (tmp_path / "elsewhere").exists()
    elif metrics == "wandb":
        assert len(list((tmp_path / store / "wandb").glob("offline-run-*"))) == 2  # one per run, its own
    elif metrics == "mlflow":
        assert len(list((tmp_path / store).glob("*/*/metrics/val/acc1"))) == 2
        attention = list((tmp_path / store).glob("*/*/params/config/model.attention"))  # the whole config
        assert len(attention) == 2 and {path.read_text() for path in attention} == {"spem"}
    else:
        assert not cli.trainer.loggers
        said = [
            r.getMessage() for r in caplog.records if "no logger (trainer.logger: false)" in r.getMessage()
        ]
        assert len(said) == 2 and str(root / "version_1") in said[1]  # once per run
        assert not list(tmp_path.rglob("events.*")) and not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize("case", ["csv alone", "tensorboard and csv"])
def test_a_resumed_run_keeps_the_csv_rows_of_its_first_part(case, tmp_path, monkeypatch, recwarn):
    """Lightning's CSV writer deletes ``metrics.csv`` from a folder that is not empty: not in a run."""
    logger_args, root_name, _, metrics = CASES[case]
    monkeypatch.chdir(tmp_path)
    run_cli("fit", *tiny_args(tmp_path / "runs", *logger_args(tmp_path)))
    run_cli("fit", *tiny_args(tmp_path / "runs", *logger_args(tmp_path), "--ckpt_path=last", max_epochs=2))
    run = tmp_path / "runs" / root_name / "version_0"
    with (run / metrics.rpartition(" ")[2]).open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows if row["val/acc1"]] == ["0", "1"]  # both parts, in order
    assert not [w for w in recwarn if "will be deleted" in str(w.message)]
