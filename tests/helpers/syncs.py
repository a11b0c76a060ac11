"""Counting host syncs: ``bool(tensor)`` and ``tensor.item()`` dispatch ``aten._local_scalar_dense``."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils._python_dispatch import TorchDispatchMode  # TorchDispatchMode's documented home

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
