"""Checkpoint files that survive a crash mid-write and a full disk, and load without running code."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.cli import run_cli, tiny_args
from helpers.processes import TIMEOUT, wait_for

from spe_lightning.__main__ import dispatch
from spe_lightning.runs.checkpoints import CheckpointError, SafeCheckpointIO


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint_and_says_so(tmp_path, capsys, monkeypatch):
    run_cli("fit", *tiny_args(tmp_path))
    last = tmp_path / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    real_save = torch.save

    def disk_full(obj, file, *args, **kwargs):
        name = Path(getattr(file, "name", "")).name
        # SafeCheckpointIO's temporary file for last.ckpt (whether a best file is saved first depends on
        # whether the epoch improved val/acc1)
        if name.startswith(".last.ckpt.") and name.endswith(".tmp"):
            file.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(SystemExit) as exc:
        dispatch(["fit", *tiny_args(tmp_path, "--ckpt_path=last", max_epochs=2)])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith(f"error: could not write checkpoint {last}: no space left on the device of ")
    assert errors[0].endswith("the previous last.ckpt is intact and nothing else was changed")
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir() if p.name.startswith(".")) == []  # no temp file left


KILL_MID_WRITE = """
import sys, time, torch
from spe_lightning.runs.checkpoints import SafeCheckpointIO

real_save = torch.save
def half_then_hang(obj, file):  # write half of the checkpoint, then wait to be killed
    buffer = __import__("io").BytesIO()
    real_save(obj, buffer)
    file.write(buffer.getvalue()[: buffer.tell() // 2])
    file.flush()
    open(sys.argv[2], "w").close()  # tell the test: half written
    time.sleep(60)

io = SafeCheckpointIO()
io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "pytorch-lightning_version": "2"}, sys.argv[1])
torch.save = half_then_hang
io.save_checkpoint({"state_dict": {"w": torch.ones(999, 999)}, "pytorch-lightning_version": "2"}, sys.argv[1])
"""


@pytest.mark.slow
def test_kill_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    path, writing = tmp_path / "last.ckpt", tmp_path / "writing"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_MID_WRITE, str(path), str(writing)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(writing.exists, proc, timeout=TIMEOUT)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    assert torch.equal(SafeCheckpointIO().load_checkpoint(path)["state_dict"]["w"], torch.zeros(3))
    leftovers = [p.name for p in tmp_path.iterdir() if p not in (path, writing)]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.ckpt.")  # the abandoned half, hidden


def test_malicious_checkpoint_is_refused_without_running_its_payload(tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6", "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"refused: loading it would import posix\.system"):
        SafeCheckpointIO().load_checkpoint(path)
    assert not marker.exists()
