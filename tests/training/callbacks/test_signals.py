"""Stopping together: a signal is recorded and acted on at a batch boundary by every rank; a rank that dies
ends the others with one line that names it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.models import TINY
from helpers.processes import REPO, TIMEOUT, child_env, wait_for

from spe_lightning.core.signals import StopRequest
from spe_lightning.training.callbacks.signals import ending


def test_the_first_signal_is_recorded_and_a_second_interrupts():
    with StopRequest.listening():
        StopRequest.interrupt_now = False  # inside a training loop
        os.kill(os.getpid(), signal.SIGTERM)
        assert StopRequest.received == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert StopRequest.exit_code() == 143  # the first signal decides the exit code
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_outside_a_training_loop_the_first_signal_interrupts():
    with StopRequest.listening(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    assert StopRequest.exit_code() == 130


def test_how_a_process_ended_is_read_before_it_is_reaped():
    failed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    clean = subprocess.Popen([sys.executable, "-c", "pass"])
    assert ending(killed.pid) is None  # running
    killed.kill()
    for proc, expected in ((failed, "exit status 3"), (killed, "killed by SIGKILL"), (clean, None)):
        deadline = time.monotonic() + TIMEOUT
        while ending(proc.pid) != expected and time.monotonic() < deadline:  # a zombie until waited for
            time.sleep(0.05)
        assert ending(proc.pid) == expected
        proc.wait()
    assert ending(failed.pid) == "ended"  # reaped: gone


def start_ddp(root: Path) -> subprocess.Popen:
    """A 2-process CPU fit that would run for hours, in its own process group (as a terminal or a scheduler
    starts it), once its first checkpoint is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "spe_lightning", "fit", "--config=configs/quickstart.yaml",
         "--config=configs/ddp_cpu.yaml", f"--model.backbone_kwargs={TINY}", "--data.init_args.image_size=8",
         "--trainer.max_epochs=100000", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false", f"--trainer.logger.init_args.save_dir={root}"],
        cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    wait_for(lambda: last_checkpoint(root).exists(), proc, timeout=TIMEOUT)
    return proc


def last_checkpoint(root: Path) -> Path:
    return root / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"


def ranks_alive(root: Path) -> str:
    """Processes of the fit that writes under ``root`` still running (pgrep's listing)."""
    pattern = f"save_dir={root}"
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_signal_to_every_rank_stops_them_at_one_step_and_saves_once(tmp_path, sig, code):
    proc = start_ddp(tmp_path)
    os.killpg(proc.pid, sig)  # a scheduler's preemption or Ctrl-C reaches every rank
    _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == code, stderr
    assert stderr.count(f"stopped by {sig.name}; continue with:") == 1 and "Traceback" not in stderr
    assert torch.load(last_checkpoint(tmp_path), weights_only=True)["global_step"] > 0
    assert ranks_alive(tmp_path) == ""


@pytest.mark.slow
def test_a_rank_that_dies_ends_the_others_with_one_line_naming_it(tmp_path):
    proc = start_ddp(tmp_path)
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid), "-f", "spe_lightning"], capture_output=True, text=True
    )
    rank1 = int(children.stdout.split()[0])
    os.kill(rank1, signal.SIGKILL)  # the out-of-memory killer, say
    _, stderr = proc.communicate(timeout=60)  # not the process group's 30-minute timeout
    assert proc.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: rank 1 (process {rank1}) killed by SIGKILL during training; rank 0 cannot go on without it "
        "and stops: continue the run with --ckpt_path last"
    ]
    assert ranks_alive(tmp_path) == ""
