"""DDP on CPU (gloo) through the CLI in a subprocess, as a user starts it, and SyncBatchNorm conversion."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers.models import TINY
from helpers.processes import run_module
from lightning.pytorch.plugins import TorchSyncBatchNorm
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from spe_lightning.data import DigitsDataModule
from spe_lightning.models.attach import NormAttention
from spe_lightning.training.classifier import ImageClassifier

IMAGE_SIZE = 8
EVAL_BATCH = 57  # digits' 229 val images split 115 / 114 over 2 ranks: 3 and 2 batches, padding would add 1
TRAIN_BATCHES = 3


def fit_ddp(root: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m spe_lightning fit`` on 2 CPU processes with a tiny model."""
    command = [
        "fit",
        "--config=configs/quickstart.yaml",
        "--config=configs/ddp_cpu.yaml",
        "--trainer.max_epochs=1",
        f"--trainer.limit_train_batches={TRAIN_BATCHES}",
        "--trainer.log_every_n_steps=1",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.save_dir={root / 'runs'}",
        f"--model.backbone_kwargs={TINY}",
        f"--data.init_args.image_size={IMAGE_SIZE}",
        f"--data.init_args.eval_batch_size={EVAL_BATCH}",
        *extra,
    ]
    result = run_module(*command)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@dataclass
class DDPRuns:
    """A 2-process fit and its resume, as their processes ended."""

    root: Path
    first: subprocess.CompletedProcess
    first_step: int
    resumed: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> DDPRuns:
    """One epoch on 2 processes, then the same run resumed with ``--ckpt_path last`` for a second epoch.

    The resumed run switches channels_last on: the checkpoint loads either way, and DDP must not warn
    that gradient strides differ from its buckets'.
    """
    root = tmp_path_factory.mktemp("ddp")
    first = fit_ddp(root)
    first_step = torch.load(run_dir(root) / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    resumed = fit_ddp(root, "--ckpt_path=last", "--trainer.max_epochs=2", "--model.channels_last=true")
    return DDPRuns(root, first, first_step, resumed)


def run_dir(root: Path) -> Path:
    return root / "runs" / "quickstart" / "version_0"


def scalars(event_file: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(event_file))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


@pytest.mark.slow
def test_ddp_writes_one_run_directory_from_rank_zero(ddp_runs: DDPRuns) -> None:
    root, run = ddp_runs.root, run_dir(ddp_runs.root)
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # resume reused it
    assert list(root.rglob("config.yaml")) == [run / "config.yaml"]
    checkpoints = list(root.rglob("*.ckpt"))
    assert {p.parent for p in checkpoints} == {run / "checkpoints"}
    assert len(checkpoints) == 2  # last + best
    for result in (ddp_runs.first, ddp_runs.resumed):
        assert result.stdout.count("best val/acc1 = ") == 1  # printed by rank zero only


@pytest.mark.slow
def test_ddp_val_top1_counts_every_sample_exactly_once(ddp_runs: DDPRuns) -> None:
    run = run_dir(ddp_runs.root)
    (best,) = (run / "checkpoints").glob("best-*.ckpt")
    checkpoint = torch.load(best, weights_only=False)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint")]
    reported = state["best_model_score"].item()
    logged = dict(v for f in run.glob("events.*") for v in scalars(f, "val/acc1"))
    assert logged[checkpoint["global_step"] - 1] == pytest.approx(reported)  # logged at the epoch's last step

    model = ImageClassifier.load_from_checkpoint(best).eval()
    data = DigitsDataModule(image_size=IMAGE_SIZE, in_chans=1, eval_batch_size=EVAL_BATCH)
    data.setup("validate")
    assert len(data.val_set) == 229 and len(data.val_set) % (2 * EVAL_BATCH)
    correct = 0
    with torch.no_grad():
        for x, y in data.val_dataloader():
            correct += (model(x).argmax(1) == y).sum().item()
    assert reported == pytest.approx(correct / 229, abs=1e-6)


@pytest.mark.slow
def test_ddp_resume_continues_at_the_saved_epoch_and_step(ddp_runs: DDPRuns) -> None:
    run = run_dir(ddp_runs.root)
    assert ddp_runs.first_step == TRAIN_BATCHES
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (1, 2 * TRAIN_BATCHES)
    first_file, resumed_file = sorted(run.glob("events.*"), key=lambda f: f.stat().st_mtime)
    assert [s for s, _ in scalars(first_file, "train/loss_step")] == list(range(TRAIN_BATCHES))
    # The resumed run trains epoch 1 only, from step 3 on, instead of starting over.
    assert [s for s, _ in scalars(resumed_file, "train/loss_step")] == list(range(3, 2 * TRAIN_BATCHES))
    assert {v for _, v in scalars(resumed_file, "train/epoch")} == {1.0}
    assert "Grad strides do not match bucket view strides" not in ddp_runs.resumed.stderr


def test_sync_batchnorm_converts_the_norms_inside_attention_wrappers() -> None:
    """``trainer.sync_batchnorm: true`` applies this plugin; attention must survive the conversion."""
    model = ImageClassifier(in_chans=1, backbone_kwargs=TINY)
    x = torch.randn(4, 1, IMAGE_SIZE, IMAGE_SIZE)
    expected = model(x)
    n_norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    model = TorchSyncBatchNorm().apply(model)
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) == n_norms
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    wrappers = [m for m in model.modules() if isinstance(m, NormAttention)]
    assert wrappers and all(isinstance(w.norm, nn.SyncBatchNorm) for w in wrappers)
    calls = []
    for wrapper in wrappers:
        wrapper.attn.register_forward_hook(lambda module, args, out: calls.append(module))
    torch.testing.assert_close(model(x), expected)  # no process group: plain batch statistics
    assert len(calls) == len(wrappers)
