"""Nothing lost: killed, preempted or diverging runs resume exactly or stop cleanly; checkpoints load safely.

Runs are the quickstart config shrunk to a depth-8 ResNet on 8x8 digits, 6 batches per epoch. Killed runs
are real ``python -m spe_lightning`` subprocesses; the runs they are compared with run in-process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from spe_lightning.callbacks.cpu_threads import available_cores
from spe_lightning.callbacks.fault_tolerance import FiniteLossGuard, LastCheckpoint, RandomState
from spe_lightning.checkpoint_io import CheckpointError, SafeCheckpointIO
from spe_lightning.cli import cli_main
from spe_lightning.data.resumable import ResumableDataLoader

REPO = Path(__file__).parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
BATCHES_PER_EPOCH = 6


class BatchRecorder(Callback):
    """Test probe: one JSON line per trained batch with the sample indices and a hash of the augmented images.

    ``delay`` seconds of sleep per batch give a test time to kill the run mid-epoch.
    """

    def __init__(self, path: str, delay: float = 0.0) -> None:
        self.path = Path(path)
        self.delay = delay
        self._indices: list[int] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if stage == "fit" and not isinstance(datamodule.train_set, _Recorded):
            datamodule.train_set = _Recorded(datamodule.train_set, self._indices)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        row = {
            "step": trainer.global_step,
            "indices": list(self._indices),
            "images": hashlib.md5(batch[0].numpy().tobytes()).hexdigest(),
        }
        self._indices.clear()
        with self.path.open("a") as file:
            file.write(json.dumps(row) + "\n")
        time.sleep(self.delay)


class _Recorded(torch.utils.data.Dataset):
    def __init__(self, dataset: torch.utils.data.Dataset, seen: list[int]) -> None:
        self.dataset, self.seen = dataset, seen

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        self.seen.append(index)
        return self.dataset[index]


def read_rows(path: Path) -> list[dict]:
    """Recorded batches; a line cut short by SIGKILL is dropped."""
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def fit_args(save_dir: Path, record: Path, *extra: str, delay: float = 0.0, epochs: int = 2) -> list[str]:
    recorder = {
        "class_path": "test_fault_tolerance.BatchRecorder",
        "init_args": {"path": str(record), "delay": delay},
    }
    return [
        "fit",
        "--config",
        str(QUICKSTART),
        "--model.backbone_kwargs={depth: 8, block: basic}",
        "--data.init_args.image_size=8",
        "--trainer.accelerator=cpu",  # bit-exact comparisons: CPU kernels are deterministic
        f"--trainer.max_epochs={epochs}",
        f"--trainer.limit_train_batches={BATCHES_PER_EPOCH}",
        "--trainer.limit_val_batches=2",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        f"--trainer.callbacks+={json.dumps(recorder)}",
        "--last_checkpoint.every_n_train_steps=2",
        "--seed_everything=3",
        # bit-exact comparisons: one fixed thread count in every process, whatever the load or the test before
        f"--cpu_threads.threads={available_cores()}",
        *extra,
    ]


def run(args: list[str]):
    with contextlib.redirect_stdout(io.StringIO()):
        return cli_main(args)


def spawn(args: list[str]) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "spe_lightning", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(
                f"run ended (status {proc.returncode}) before the test could stop it: {proc.stderr.read()}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the run")
        time.sleep(0.02)


def checkpoints(save_dir: Path) -> Path:
    return save_dir / "quickstart" / "version_0" / "checkpoints"


def assert_same_state(resumed, reference) -> None:
    ours, theirs = resumed.model.state_dict(), reference.model.state_dict()
    assert ours.keys() == theirs.keys()
    different = [key for key in ours if not torch.equal(ours[key], theirs[key])]
    assert not different, f"weights differ: {different[:5]}"
    assert resumed.trainer.global_step == reference.trainer.global_step
    metrics = ("val/acc1", "val/acc1_best", "val/loss", "train/loss_epoch", "train/acc1")
    assert {k: float(resumed.trainer.callback_metrics[k]) for k in metrics} == {
        k: float(reference.trainer.callback_metrics[k]) for k in metrics
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory):
    """The reference: the same two epochs without interruption, and the batches it trained on."""
    root = tmp_path_factory.mktemp("uninterrupted")
    cli = run(fit_args(root / "runs", root / "batches.jsonl"))
    return cli, read_rows(root / "batches.jsonl")


def test_cli_trains_with_atomic_safe_checkpoints_rng_state_and_loss_guard(uninterrupted):
    cli, rows = uninterrupted
    assert isinstance(cli.trainer.strategy.checkpoint_io, SafeCheckpointIO)
    kinds = {type(callback) for callback in cli.trainer.callbacks}
    assert {RandomState, LastCheckpoint, FiniteLossGuard} <= kinds
    assert [row["step"] for row in rows] == list(range(1, 2 * BATCHES_PER_EPOCH + 1))


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, uninterrupted):
    reference, reference_rows = uninterrupted
    save_dir = tmp_path / "runs"
    step_ckpt = checkpoints(save_dir) / "last.ckpt"
    proc = spawn(fit_args(save_dir, tmp_path / "killed.jsonl", delay=0.4))
    wait_for(step_ckpt.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    saved_step = torch.load(step_ckpt, weights_only=True)["global_step"]
    assert saved_step % BATCHES_PER_EPOCH != 0, "the kill should land mid-epoch"
    resumed = run(fit_args(save_dir, tmp_path / "resumed.jsonl", "--ckpt_path=last"))
    assert resumed.trainer.ckpt_path == str(step_ckpt)

    # every batch after the checkpoint is seen once, in the same order, with the same augmentation
    before = [row for row in read_rows(tmp_path / "killed.jsonl") if row["step"] <= saved_step]
    assert before + read_rows(tmp_path / "resumed.jsonl") == reference_rows
    assert_same_state(resumed, reference)


def test_resume_from_epoch_end_checkpoint_matches_uninterrupted_run(tmp_path, uninterrupted):
    reference, _ = uninterrupted
    save_dir = tmp_path / "runs"
    run(fit_args(save_dir, tmp_path / "first.jsonl", "--last_checkpoint.every_n_train_steps=0", epochs=1))
    assert (
        torch.load(checkpoints(save_dir) / "last.ckpt", weights_only=True)["global_step"] == BATCHES_PER_EPOCH
    )
    resumed = run(fit_args(save_dir, tmp_path / "second.jsonl", "--ckpt_path=last"))
    assert resumed.trainer.ckpt_path == str(checkpoints(save_dir) / "last.ckpt")
    assert_same_state(resumed, reference)


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_saves_a_checkpoint_exits_128_plus_it_and_the_run_resumes(
    tmp_path, uninterrupted, sig, code
):
    reference, _ = uninterrupted
    save_dir = tmp_path / "runs"
    record = tmp_path / "preempted.jsonl"
    args = fit_args(save_dir, record, "--last_checkpoint.every_n_train_steps=0", delay=0.4)
    proc = spawn(args)
    wait_for(lambda: record.exists() and record.read_text().count("\n") >= 1, proc)
    proc.send_signal(sig)  # SIGTERM: a scheduler's preemption; SIGINT: Ctrl-C
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == code, stderr
    last = checkpoints(save_dir) / "last.ckpt"
    assert f"stopped by {sig.name}; continue with: {sys.executable} -m spe_lightning fit" in stderr
    assert stderr.rstrip().endswith(f"--ckpt_path={last}")
    assert "Traceback" not in stderr
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == read_rows(record)[-1]["step"] < 2 * BATCHES_PER_EPOCH
    resumed = run(fit_args(save_dir, tmp_path / "resumed.jsonl", "--ckpt_path=last"))
    assert_same_state(resumed, reference)


KILL_MID_WRITE = """
import sys, time, torch
from spe_lightning.checkpoint_io import SafeCheckpointIO

real_save = torch.save
def half_then_hang(obj, file):  # write half of the checkpoint, then wait to be killed
    buffer = __import__("io").BytesIO()
    real_save(obj, buffer)
    file.write(buffer.getvalue()[: buffer.tell() // 2])
    file.flush()
    print("writing", flush=True)
    time.sleep(60)

io = SafeCheckpointIO()
io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "pytorch-lightning_version": "2"}, sys.argv[1])
torch.save = half_then_hang
io.save_checkpoint({"state_dict": {"w": torch.ones(999, 999)}, "pytorch-lightning_version": "2"}, sys.argv[1])
"""


def test_kill_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_MID_WRITE, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "writing\n", proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    assert torch.equal(SafeCheckpointIO().load_checkpoint(path)["state_dict"]["w"], torch.zeros(3))
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.ckpt.")  # the abandoned half, hidden


NON_FINITE = {
    # alpha * pooling regulariser overflows float32: the very first loss is inf, the weights are fine
    "loss": (
        ["--model.pool_alpha=1e39"],
        "error: training loss became non-finite at step 0, found at step ",
    ),
    # lr 1e12: the loss stays finite (BatchNorm) while the running statistics overflow within a few steps
    "weights": (["--optimizer.init_args.lr=1e12"], "stopped without saving them, last checkpoint kept: "),
}


@pytest.mark.parametrize("case", NON_FINITE)
def test_non_finite_values_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, capsys, case):
    save_dir = tmp_path / "runs"
    extra, message = NON_FINITE[case]
    args = fit_args(save_dir, tmp_path / "b.jsonl", *extra, "--last_checkpoint.every_n_train_steps=1")
    with pytest.raises(SystemExit) as exc:
        run(args)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err
    step = int(re.search(r" at step (\d+)", errors[0]).group(1))  # the first bad step, or the check's
    kept = sorted(checkpoints(save_dir).glob("*.ckpt"))
    assert [path.name for path in kept] == (["last.ckpt"] if step else [])
    for path in kept:
        checkpoint = torch.load(path, weights_only=True)
        assert checkpoint["global_step"] < step
        assert all(
            value.isfinite().all()
            for key, value in checkpoint["state_dict"].items()
            if key.startswith("net.")
        )


def test_non_finite_guard_can_be_turned_off(tmp_path):
    args = ["--optimizer.init_args.lr=1e12", "--model.attention=none", "--loss_guard.enabled=false"]
    cli = run(fit_args(tmp_path / "runs", tmp_path / "b.jsonl", *args, epochs=1))
    assert cli.trainer.global_step == BATCHES_PER_EPOCH  # trained on through the overflow
    assert not all(buffer.isfinite().all() for buffer in cli.model.buffers() if buffer.is_floating_point())


def test_resumable_loader_continues_the_saved_epoch_and_starts_the_next_one_afresh():
    data = torch.utils.data.TensorDataset(torch.arange(10))

    def epoch(loader: ResumableDataLoader) -> list[list[int]]:
        return [batch[0].tolist() for batch in loader]

    loader = ResumableDataLoader(data, seed=5, batch_size=3)
    loader.sampler.set_epoch(2)
    full = epoch(loader)
    batches = iter(loader)
    seen = [next(batches)[0].tolist(), next(batches)[0].tolist()]
    state = loader.state_dict()
    assert state == {"seed": 5, "epoch": 2, "batches": 2}

    resumed = ResumableDataLoader(data, seed=0, batch_size=3)  # the seed comes from the checkpoint
    resumed.load_state_dict(state)
    assert seen + epoch(resumed) == full
    # a checkpoint taken after an epoch's last batch resumes into the next epoch, from its start
    later = ResumableDataLoader(data, seed=0, batch_size=3)
    later.load_state_dict(state)
    later.sampler.set_epoch(3)
    loader.sampler.set_epoch(3)
    assert epoch(later) == epoch(loader) != full
    assert sorted(index for batch in full for index in batch) == list(range(10))


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
