"""Epoch time of ``Trainer.fit`` against a plain PyTorch loop: same network, data, batches and loss.

    python -m spe_lightning.benchmarks.lightning_overhead --epochs 4 --rounds 3
    python -m spe_lightning.benchmarks.lightning_overhead --depth 164 --block bottleneck --image_size 8 \\
        --batch_size 32 --steps 20 --epochs 3 --monitor true

Each round runs the plain loop and then Lightning for ``epochs`` epochs each (Lightning's
``max_epochs``), on the same DataLoader (``steps`` batches per epoch if given); the first epoch of every run
is warm-up and dropped. The median epoch time of each side is compared, in the same process, so machine
drift hits both. Both sides compute cross entropy + alpha * pooling regulariser with SGD; Lightning also
updates its torchmetrics accuracies and logs, as a user's run does.

``--monitor true`` also times Lightning with the PoolingMonitor callback against Lightning without it,
both writing TensorBoard logs and validating on one batch per epoch (the monitor's gate summaries need
it), so its whole per-epoch work (values, gates, histograms, figure) is inside the timed epoch; the two
alternate which runs first, as this machine's speed drifts within a round.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader

from spe_lightning.core.validation import check_int
from spe_lightning.data import DigitsDataModule
from spe_lightning.models import pooling_regularization
from spe_lightning.training.callbacks import PoolingMonitor
from spe_lightning.training.classifier import ImageClassifier
from spe_lightning.training.recipe import paper_sgd


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


def plain_epochs(
    model: ImageClassifier, loader: DataLoader, epochs: int, steps: int | None, alpha: float
) -> list[float]:
    """The hand-written loop a user would otherwise write: forward, loss, backward, step."""
    net = model.net.train()
    opt = paper_sgd(net)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, y in itertools.islice(loader, steps):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(x), y) + alpha * pooling_regularization(net)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def lightning_epochs(
    model: ImageClassifier,
    loader: DataLoader,
    epochs: int,
    callbacks: list[L.Callback],
    steps: int | None = None,
    logs: Path | None = None,
    val_loader: DataLoader | None = None,
) -> list[float]:
    """Epoch times of ``Trainer.fit``; the timer is the last callback, so it times the others' epoch ends."""
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        limit_train_batches=steps,
        log_every_n_steps=10,
        logger=TensorBoardLogger(logs, name="", version=len(list(logs.iterdir()))) if logs else False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1 if val_loader is not None else 0,
        num_sanity_val_steps=0,
        callbacks=[*callbacks, timer],
    )
    model.configure_optimizers = lambda: paper_sgd(model)
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=val_loader)
    return timer.times


def main(
    epochs: int = 4,
    rounds: int = 3,
    depth: int = 20,
    block: str = "basic",
    attention: str = "spem",
    image_size: int = 16,
    batch_size: int = 64,
    steps: int | None = None,
    monitor: bool = False,
    seed: int = 0,
) -> float:
    """Print median epoch times and the Lightning / plain ratio (and monitor on / off with ``monitor``)."""
    check_int("epochs", epochs, minimum=2, hint=" (the first is warm-up)")
    check_int("rounds", rounds)
    check_int("steps", steps, allow_none=True)
    data = DigitsDataModule(image_size=image_size, in_chans=1, batch_size=batch_size, seed=seed)
    data.setup("fit")
    loader = data.train_dataloader()
    model_kwargs = dict(
        attention=attention,
        num_classes=data.num_classes,
        in_chans=1,
        backbone_kwargs={"depth": depth, "block": block},
    )
    plain, lit, logged, watched = [], [], [], []
    with tempfile.TemporaryDirectory() as logs:
        for r in range(rounds):
            plain += plain_epochs(_model(model_kwargs, seed + r), loader, epochs, steps, 0.1)[1:]
            lit += lightning_epochs(_model(model_kwargs, seed + r), loader, epochs, [], steps)[1:]
            if monitor:  # off then on in even rounds, on then off in odd ones: no side always runs last
                val = data.val_dataloader()
                sides = [(logged, []), (watched, [PoolingMonitor()])]
                for times, callbacks in sides if r % 2 == 0 else sides[::-1]:
                    model = _model(model_kwargs, seed + r)
                    times += lightning_epochs(model, loader, epochs, callbacks, steps, Path(logs), val)[1:]
    per_epoch = min(steps or len(loader), len(loader))
    p, lt = statistics.median(plain), statistics.median(lit)
    print(
        f"cifar_resnet-{depth} {block} + {attention} on digits {image_size}px, batch {batch_size}, "
        f"{per_epoch} steps/epoch, {torch.get_num_threads()} threads; median of {len(plain)} timed "
        f"epochs each ({rounds} rounds x {epochs} epochs, the first of each dropped)"
    )
    print(f"plain PyTorch loop : {p:.3f} s/epoch")
    print(f"Lightning fit      : {lt:.3f} s/epoch")
    print(f"ratio              : {lt / p:.3f}x ({(lt - p) * 1e3:+.0f} ms/epoch)")
    if not monitor:
        return lt / p
    off, on = statistics.median(logged), statistics.median(watched)
    print(f"Lightning + TensorBoard, 1 val batch : {off:.3f} s/epoch")
    print(f"  + PoolingMonitor                   : {on:.3f} s/epoch")
    print(f"monitor on / off   : {on / off:.3f}x ({(on - off) * 1e3:+.0f} ms/epoch)")
    return on / off


if __name__ == "__main__":
    from spe_lightning.cli.parser import script_main

    script_main(main)
