"""Measured training speed, the cost beside accuracy: images per second over a fit's steady-state steps.

Lightning's ``ThroughputMonitor`` synchronises the device after every batch; a sync per step costs a
fast GPU part of the speed it measures. This callback syncs twice per epoch instead: when the timed part of
the epoch starts and when it ends. The first ``warmup`` batches of every epoch (loader workers starting,
cuDNN's benchmark, torch.compile's first graphs) are not timed, and neither is validation. The rate counts
the images of every rank: what the run as a whole trains per second, on the devices it names.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from spe_lightning.runs.log_names import TRAIN_IMG_PER_S


def device_name(device: torch.device) -> str:
    """``NVIDIA H200``, or the CPU's name for CPU training."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}: {platform.processor() or platform.machine()}"


class TrainingThroughput(Callback):
    """Images per second of training, all ranks together, over each epoch's batches after ``warmup`` (or
    after its first half, in an epoch of fewer than twice as many).

    ``rate`` is the whole fit's rate (images over seconds of every timed stretch); ``devices`` names what
    produced it (``2 x NVIDIA H200``). Each epoch's rate is logged as ``train/img_per_s``.
    """

    def __init__(self, warmup: int = 5) -> None:
        self.warmup = warmup
        self.images = 0
        self.seconds = 0.0
        self.devices: str | None = None
        self._epoch_images = 0
        self._epoch_seconds = 0.0
        self._started: float | None = None
        self._paused = False

    @property
    def rate(self) -> float | None:
        return self.images / self.seconds if self.seconds > 0 else None

    def _now(self, trainer: Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        return time.perf_counter()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.devices = f"{trainer.world_size} x {device_name(trainer.strategy.root_device)}"

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._started, self._paused, self._epoch_images, self._epoch_seconds = None, False, 0, 0.0

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        skip = min(self.warmup, trainer.num_training_batches // 2)  # a short epoch keeps its second half
        if batch_idx == skip or (self._paused and batch_idx > skip):
            self._started, self._paused = self._now(trainer), False
        if batch_idx >= skip:
            self._epoch_images += len(batch[0]) * trainer.world_size

    def _pause(self, trainer: Trainer) -> None:
        if self._started is not None:
            self._epoch_seconds += self._now(trainer) - self._started
            self._started = None

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Validation inside an epoch (every epoch's end, or ``val_check_interval``) is not training."""
        self._paused = self._started is not None  # the clock restarts at the next training batch
        self._pause(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._pause(trainer)
        if not self._epoch_images or self._epoch_seconds <= 0:
            return
        self.images += self._epoch_images
        self.seconds += self._epoch_seconds
        pl_module.log(TRAIN_IMG_PER_S, self._epoch_images / self._epoch_seconds, on_step=False, on_epoch=True)

    def state_dict(self) -> dict[str, Any]:
        return {"images": self.images, "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.images, self.seconds = state_dict["images"], state_dict["seconds"]
