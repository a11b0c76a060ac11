"""The training hot path never waits for the device: no host sync in steps that log nothing, counted as
``aten._local_scalar_dense`` dispatches (``.item()``, ``bool(tensor)``, ``int(tensor)``) through the real
CLI and all its callbacks. On CPU nothing waits, but the same calls are what a GPU step would block on."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils._python_dispatch import TorchDispatchMode  # TorchDispatchMode's documented home
from torchmetrics.classification import MulticlassAccuracy

from spe_lightning.classifier import ImageClassifier
from spe_lightning.cli import cli_main
from spe_lightning.metrics import TopKAccuracy
from spe_lightning.models import pooling_regularization

REPO = Path(__file__).resolve().parents[1]
COUNTED_STEPS = 20


class SyncCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.startswith("_local_scalar_dense"):
            self.syncs.append(str(func))
        return func(*args, **(kwargs or {}))


class CountStepSyncs(Callback):
    """Counts syncs from the start of training step 1 to the start of step 1 + COUNTED_STEPS: everything
    the loop, the module and every callback do in between (augmentation runs in a DataLoader worker, as
    on a GPU run: its CPU-side ``.item()`` calls are not the device's)."""

    def __init__(self) -> None:
        self.counter = SyncCounter()
        self.active = False
        self.steps = 0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx) -> None:
        if trainer.global_step == 1:
            self.counter.__enter__()
            self.active = True
        elif trainer.global_step == 1 + COUNTED_STEPS and self.active:
            self.counter.__exit__(None, None, None)
            self.active = False
            self.steps = COUNTED_STEPS

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.active:
            self.counter.__exit__(None, None, None)
            self.active = False


def test_no_host_sync_in_training_steps_that_log_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    counter = {"class_path": "test_host_syncs.CountStepSyncs"}
    cli = cli_main(
        ["fit", "--config", str(REPO / "configs" / "quickstart.yaml"),
         "--model.backbone_kwargs={depth: 8, block: basic}", "--data.init_args.image_size=8",
         "--data.init_args.batch_size=8", "--data.init_args.num_workers=1",  # augmentation: a worker's
         f"--trainer.max_steps={COUNTED_STEPS + 2}",
         "--trainer.log_every_n_steps=1000", "--trainer.num_sanity_val_steps=0",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         f"--trainer.callbacks+={json.dumps(counter)}"]
    )  # fmt: skip
    (count,) = [cb for cb in cli.trainer.callbacks if isinstance(cb, CountStepSyncs)]
    assert count.steps == COUNTED_STEPS
    assert count.counter.syncs == []


def test_sync_free_accuracy_equals_torchmetrics_multiclass_accuracy():
    torch.manual_seed(0)
    for num_classes, k in ((10, 1), (10, 5), (3, 5)):
        ours = TopKAccuracy(k)
        theirs = MulticlassAccuracy(num_classes, top_k=min(k, num_classes), average="micro")
        for _ in range(3):
            logits, target = torch.randn(17, num_classes), torch.randint(0, num_classes, (17,))
            ours.update(logits, target)
            theirs.update(logits, target)
        torch.testing.assert_close(ours.compute(), theirs.compute())
    with SyncCounter() as counter:
        TopKAccuracy(5).update(torch.randn(8, 10), torch.randint(0, 10, (8,)))
    assert counter.syncs == []


def test_the_regulariser_does_not_walk_the_model_in_a_step(monkeypatch):
    model = ImageClassifier(backbone_kwargs={"depth": 164, "block": "bottleneck"})
    model.configure_model()
    assert len(model.pool_params) == 54
    walks = []
    original = torch.nn.Module.modules
    monkeypatch.setattr(torch.nn.Module, "modules", lambda self: walks.append(self) or original(self))
    losses = model.losses(torch.randn(2, 10), torch.tensor([1, 2]))
    assert walks == []
    monkeypatch.undo()
    torch.testing.assert_close(losses["loss_pool"], pooling_regularization(model.net))
