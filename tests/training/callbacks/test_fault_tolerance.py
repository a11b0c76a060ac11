"""Nothing lost: killed, preempted or diverging runs resume exactly or stop cleanly.

Runs are the quickstart config shrunk to a depth-8 ResNet on 8x8 digits, 6 batches per epoch. Killed runs
are real ``python -m spe_lightning`` subprocesses; the runs they are compared with run in-process.
"""

from __future__ import annotations

import re
import signal
import sys

import pytest
import torch
from helpers.processes import TIMEOUT, spawn, wait_for
from helpers.runs import (
    BATCHES_PER_EPOCH,
    assert_same_state,
    checkpoints,
    fit_args,
    read_rows,
    run,
    scalar_steps,
)
from helpers.syncs import SyncCounter
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from spe_lightning.runs.checkpoints import SafeCheckpointIO
from spe_lightning.runs.log_names import VAL_ACC1
from spe_lightning.training.callbacks.fault_tolerance import (
    FiniteLossGuard,
    LastCheckpoint,
    NonFiniteLossError,
    RandomState,
)
from spe_lightning.training.classifier import ImageClassifier

# lr 1.0 makes validation accuracy fall after epoch 1: epochs 2 and 3 do not improve the monitored metric
NO_IMPROVEMENT = ("--optimizer.init_args.lr=1.0", "--last_checkpoint.every_n_train_steps=0")
EPOCHS = 4


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


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, uninterrupted):
    reference, reference_rows = uninterrupted
    save_dir = tmp_path / "runs"
    step_ckpt = checkpoints(save_dir) / "last.ckpt"
    proc = spawn(fit_args(save_dir, tmp_path / "killed.jsonl", delay=0.4))
    wait_for(step_ckpt.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)

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


@pytest.mark.slow
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
    _, stderr = proc.communicate(timeout=TIMEOUT)

    assert proc.returncode == code, stderr
    last = checkpoints(save_dir) / "last.ckpt"
    assert f"stopped by {sig.name}; continue with: {sys.executable} -m spe_lightning fit" in stderr
    assert stderr.rstrip().endswith(f"--ckpt_path={last}")
    assert "Traceback" not in stderr
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == read_rows(record)[-1]["step"] < 2 * BATCHES_PER_EPOCH
    resumed = run(fit_args(save_dir, tmp_path / "resumed.jsonl", "--ckpt_path=last"))
    assert_same_state(resumed, reference)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("reference")
    cli = run(fit_args(root / "runs", root / "batches.jsonl", *NO_IMPROVEMENT, epochs=EPOCHS))
    return cli, checkpoints(root / "runs").parent


@pytest.mark.slow
def test_sigkill_after_an_epoch_that_did_not_improve_resumes_from_that_epoch_end(tmp_path, reference):
    ref, ref_folder = reference
    val = scalar_steps(ref_folder)
    accuracy = EventAccumulator(str(ref_folder))
    accuracy.Reload()
    acc = [event.value for event in accuracy.Scalars(VAL_ACC1)]
    assert acc[2] <= max(acc[:2]), f"precondition: epoch 2 must not improve val/acc1 ({acc})"

    save_dir = tmp_path / "runs"
    record = tmp_path / "killed.jsonl"
    last = checkpoints(save_dir) / "last.ckpt"
    proc = spawn(fit_args(save_dir, record, *NO_IMPROVEMENT, delay=0.3, epochs=EPOCHS))
    epoch_2_end = 3 * BATCHES_PER_EPOCH

    def in_epoch_3() -> bool:
        rows = read_rows(record) if record.exists() else []
        return bool(rows) and rows[-1]["step"] >= epoch_2_end + 2

    wait_for(in_epoch_3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)

    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == epoch_2_end  # the last epoch end, not the last improvement
    best = [path.name for path in checkpoints(save_dir).glob("best-*.ckpt")]
    assert len(best) == 1 and best[0].startswith("best-epoch=001-")
    resumed = run(
        fit_args(save_dir, tmp_path / "resumed.jsonl", *NO_IMPROVEMENT, "--ckpt_path=last", epochs=EPOCHS)
    )
    assert resumed.trainer.ckpt_path == str(last)
    assert_same_state(resumed, ref)
    steps = scalar_steps(checkpoints(save_dir).parent)
    # Lightning adds an `epoch` scalar (written `train/epoch`) to every log call, so it repeats a step where
    # train and val epoch metrics are both logged (in the uninterrupted run too); no other tag may
    duplicated = {tag: s for tag, s in steps.items() if len(s) != len(set(s)) and tag != "train/epoch"}
    assert not duplicated, f"duplicated steps after the resume: {duplicated}"
    assert steps == val  # nothing repeated and nothing lost: every tag has the uninterrupted run's steps


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


class FakeStrategy:
    """Stands for DDP: ``reduce_boolean_decision(any)`` says what the other ranks found."""

    def __init__(self, others_broken: bool) -> None:
        self.others_broken, self.calls = others_broken, 0

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.calls += 1
        return decision or self.others_broken


class FakeTrainer:
    def __init__(self, strategy: FakeStrategy) -> None:
        self.strategy, self.global_step, self.current_epoch, self.callbacks = strategy, 7, 0, []


@pytest.mark.parametrize("others_broken", [False, True])
def test_the_non_finite_check_before_a_save_is_one_stacked_check_and_one_collective_decision(others_broken):
    model = ImageClassifier(backbone_kwargs={"depth": 164, "block": "bottleneck"})  # 1,322 float tensors
    strategy = FakeStrategy(others_broken)
    counter = SyncCounter()
    with counter:
        try:
            FiniteLossGuard().on_save_checkpoint(FakeTrainer(strategy), model, {})
            raised = None
        except NonFiniteLossError as err:
            raised = str(err)
    assert len(counter.syncs) == 1 and strategy.calls == 1  # before: one sync per tensor, no collective
    if others_broken:  # finite here, broken on another rank: this rank stops too, instead of waiting
        assert raised is not None and "non-finite on another rank, found at step 7" in raised
    else:
        assert raised is None
