"""Tiny classifiers and trainers for tests that train in process."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader

from spe_lightning.training.classifier import ImageClassifier

TINY = {"depth": 8, "block": "basic"}
"""The smallest CIFAR ResNet: one basic block per stage."""


def tiny_classifier(**kwargs) -> ImageClassifier:
    """A depth-8 classifier, seeded: 3 classes of RGB images unless ``kwargs`` say otherwise."""
    torch.manual_seed(0)
    return ImageClassifier(**{"num_classes": 3, "backbone_kwargs": TINY, **kwargs})


def tiny_trainer(tmp_path, max_epochs: int = 3) -> Trainer:
    return Trainer(
        max_epochs=max_epochs,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )


def predict(model: ImageClassifier, x: torch.Tensor, save_to: Path | None = None) -> torch.Tensor:
    """Probabilities from ``Trainer.predict`` (it calls ``configure_model``); optionally a checkpoint."""
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    probs = torch.cat(trainer.predict(model, DataLoader(x, batch_size=8)))
    if save_to is not None:
        trainer.save_checkpoint(save_to)
    return probs


class LinearClassifier(LightningModule):
    """The smallest classifier that lets a Trainer drive the datamodule hooks."""

    def __init__(self, inputs: int, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(inputs, num_classes))

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        self.log("val_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        self.log("test_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())

    def predict_step(self, batch: tuple, batch_idx: int) -> tuple[torch.Tensor, tuple[str, ...]]:
        return self.net(batch[0]).argmax(1), batch[1]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)
