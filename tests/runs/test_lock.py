"""Who may write a run: one training process at a time; a lock left by a dead process blocks nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from helpers.cli import run_cli, tiny_args
from helpers.processes import TIMEOUT, spawn, wait_for
from helpers.runs import (
    checkpoints,
    fit_args,
    run,
)

from spe_lightning.__main__ import dispatch


@pytest.mark.slow
def test_a_second_process_on_a_running_run_fails_at_once_naming_the_holder(tmp_path, capsys):
    save_dir = tmp_path / "runs"
    run(fit_args(save_dir, tmp_path / "first.jsonl", epochs=1))
    record = tmp_path / "second.jsonl"
    proc = spawn(fit_args(save_dir, record, "--ckpt_path=last", delay=0.5, epochs=3))
    try:
        wait_for(record.exists, proc)
        start = time.monotonic()
        with pytest.raises(SystemExit) as exc:
            dispatch(fit_args(save_dir, tmp_path / "third.jsonl", "--ckpt_path=last", epochs=3))
        assert exc.value.code == 2 and time.monotonic() - start < 60
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        folder = checkpoints(save_dir).parent
        assert errors == [
            f"error: run {folder} is in use by process {proc.pid} on {os.uname().nodename}; "
            "wait for it to finish or stop it first"
        ]
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert not (tmp_path / "third.jsonl").exists()  # the second process trained nothing


@pytest.mark.slow
def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path):
    run_cli("fit", *tiny_args(tmp_path))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    lock = tmp_path / "quickstart" / "version_0" / ".lock"
    lock.write_text(f"process {dead.stdout.strip()} on {os.uname().nodename}\n")  # its flock died with it
    resumed, _ = run_cli("fit", *tiny_args(tmp_path, "--ckpt_path=last", max_epochs=2))
    assert resumed.trainer.global_step == 4
