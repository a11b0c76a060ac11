"""Where runs live and which folders are runs: the one rule every reader uses, and a run's status."""

from __future__ import annotations

import json
from pathlib import Path

from spe_lightning.runs.layout import (
    CHECKPOINTS,
    LAST,
    Run,
    find_runs,
    newest_run,
    next_folder,
    run_of_checkpoint,
    write_result,
)
from spe_lightning.runs.lock import RunLock


def make_run(folder: Path, *files: str) -> Path:
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    return folder


def test_find_runs_takes_versions_in_order_and_never_enters_a_run(tmp_path):
    root = tmp_path / "runs"
    make_run(root / "quickstart" / "version_10", "config.yaml")
    make_run(root / "quickstart" / "version_2", "config.yaml", "eval/validate/version_0/config.yaml")
    make_run(root / "quickstart" / "version_2" / "blocks" / "0", "events.out.tfevents.1.x")
    make_run(root / "grid" / "se-avg-seed0" / "version_0", "hparams.yaml")
    make_run(root / "grid" / "report")  # not a run, nothing below it
    make_run(root / "notes")
    found = [run.folder.relative_to(root).as_posix() for run in find_runs(root)]
    assert found == ["grid/se-avg-seed0/version_0", "quickstart/version_2", "quickstart/version_10"]
    assert find_runs(root / "quickstart" / "version_2") == [Run(root / "quickstart" / "version_2")]
    assert newest_run(root / "quickstart").folder.name == "version_10"
    assert next_folder(root / "quickstart").name == "version_11"
    assert next_folder(root / "fresh").name == "version_0"


def test_a_runs_status_is_read_from_one_place(tmp_path):
    run = Run(make_run(tmp_path / "version_0"))
    assert run.status() == "failed"  # stopped before its first checkpoint
    (run.checkpoints).mkdir()
    (run.checkpoints / LAST).write_bytes(b"")
    assert run.status() == "interrupted"
    lock = RunLock.acquire(run.folder)
    try:
        assert run.status() == "running"
    finally:
        lock.release()
    write_result(run.folder, {"val_acc1_best": 0.5})
    assert run.status() == "finished" and run.result() == {"val_acc1_best": 0.5}
    assert json.loads(run.result_file.read_text()) == run.result()
    assert run_of_checkpoint(run.checkpoints / "best.ckpt") == run
    assert run_of_checkpoint(tmp_path / "elsewhere.ckpt").folder == tmp_path.absolute()
    assert run.last == run.folder / CHECKPOINTS / LAST
