"""Epoch time of ``Trainer.fit`` against a plain PyTorch loop: same network, data, batches and loss.

    python -m spe_lightning.benchmarks.lightning_overhead --epochs 4 --rounds 3

Each round runs the plain loop and then Lightning for ``epochs`` epochs each (Lightning's
``max_epochs``), on the same DataLoader; the first epoch of every run is warm-up and dropped. The median epoch
time of each side is compared, in the same process, so machine drift hits both. Both
sides compute cross entropy + alpha * pooling regulariser with SGD; Lightning also
updates its torchmetrics accuracies and logs, as a user's run does (``--monitor`` adds
the PoolingMonitor callback to show its cost).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import lightning as L
import torch
from jsonargparse import CLI
from torch import nn

from spe_lightning.classifier import PAPER_SGD, ImageClassifier
from spe_lightning.data import DigitsDataModule
from spe_lightning.models import pooling_regularization


class EpochTimer(L.Callback):
    """Wall time of every training epoch."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.times.append(time.perf_counter() - self._start)


def _model(model_kwargs: dict[str, Any], seed: int) -> ImageClassifier:
    torch.manual_seed(seed)
    return ImageClassifier(**model_kwargs)


def plain_epochs(model: ImageClassifier, loader, epochs: int, alpha: float) -> list[float]:
    """The hand-written loop a user would otherwise write: forward, loss, backward, step."""
    net = model.net.train()
    opt = torch.optim.SGD(net.parameters(), **PAPER_SGD)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(x), y) + alpha * pooling_regularization(net)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def lightning_epochs(model: ImageClassifier, loader, epochs: int, callbacks: list[L.Callback]) -> list[float]:
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer, *callbacks],
    )
    model.configure_optimizers = lambda: torch.optim.SGD(model.parameters(), **PAPER_SGD)
    trainer.fit(model, train_dataloaders=loader)
    return timer.times


def main(
    epochs: int = 4,
    rounds: int = 3,
    depth: int = 20,
    block: str = "basic",
    attention: str = "spem",
    image_size: int = 16,
    batch_size: int = 64,
    monitor: bool = False,
    seed: int = 0,
) -> float:
    """Print median epoch times and the Lightning / plain ratio."""
    if epochs < 2:
        raise SystemExit(f"error: epochs={epochs} is not allowed; at least 2 (the first is warm-up)")
    data = DigitsDataModule(image_size=image_size, in_chans=1, batch_size=batch_size, seed=seed)
    data.setup("fit")
    loader = data.train_dataloader()
    model_kwargs = dict(
        attention=attention,
        num_classes=data.num_classes,
        in_chans=1,
        backbone_kwargs={"depth": depth, "block": block},
    )
    callbacks: list[L.Callback] = []
    if monitor:
        from spe_lightning.callbacks import PoolingMonitor

        callbacks.append(PoolingMonitor())
    plain, lit = [], []
    for r in range(rounds):
        plain += plain_epochs(_model(model_kwargs, seed + r), loader, epochs, 0.1)[1:]
        lit += lightning_epochs(_model(model_kwargs, seed + r), loader, epochs, callbacks)[1:]
    p, lt = statistics.median(plain), statistics.median(lit)
    print(
        f"cifar_resnet-{depth} {block} + {attention} on digits {image_size}px, batch {batch_size}, "
        f"{len(loader)} steps/epoch, {torch.get_num_threads()} threads; median of {len(plain)} timed "
        f"epochs each ({rounds} rounds x {epochs} epochs, the first of each dropped)"
    )
    print(f"plain PyTorch loop : {p:.3f} s/epoch")
    print(f"Lightning fit      : {lt:.3f} s/epoch{' (+ PoolingMonitor)' if monitor else ''}")
    print(f"ratio              : {lt / p:.3f}x ({(lt - p) * 1e3:+.0f} ms/epoch)")
    return lt / p


if __name__ == "__main__":
    CLI(main, as_positional=False)
