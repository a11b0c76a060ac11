"""Resume exactly after a crash or preemption; stop on a non-finite loss before it is saved.

* :class:`RandomState` puts the global RNG states in every checkpoint, so a resumed run draws the same
  augmentations as an uninterrupted one (Lightning restores weights, optimiser, schedulers and loop
  counters, but not the RNGs). Together with :class:`~spe_lightning.data.resumable.ResumableDataLoader`
  (the sample order) a CPU run resumed from any checkpoint ends with the same weights.
* :class:`StepCheckpoint` writes ``last-step.ckpt`` every N optimizer steps and when the job receives
  SIGTERM (how SLURM and most schedulers preempt); ``--ckpt_path last`` picks the newest of it and the
  epoch-end ``last.ckpt``.
* :class:`FiniteLossGuard` stops at the first NaN/inf training loss, before the update, naming the step,
  and refuses to checkpoint non-finite weights, so the newest checkpoint is always the last good state.
"""

from __future__ import annotations

import random
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor


class RandomState(Callback):
    """Save the global torch, CUDA, NumPy and Python RNG states with each checkpoint; restore them on resume.

    The states are restored while Lightning restores callbacks, before the training loop builds its
    iterator; nothing in between draws from the global RNGs (the sanity check runs under ``isolate_rng``
    and :class:`~spe_lightning.data.resumable.ResumableDataLoader` seeds its workers from its own
    generator), so the first resumed batch sees the RNG exactly as the uninterrupted run did.
    Under DDP rank 0's states are saved and restored on every rank: with ``seed_everything`` all ranks
    share one seed, and so one RNG stream, anyway.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        states: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            # plain lists, not an ndarray: weights_only loading accepts only tensors and plain containers
            "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        random.setstate(state_dict["python"])
        cuda = state_dict.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


class StepCheckpoint(ModelCheckpoint):
    """``last-step.ckpt`` every ``every_n_train_steps`` optimizer steps and on SIGTERM.

    Args:
        every_n_train_steps: steps between mid-epoch checkpoints; 0 saves only on SIGTERM. Each save
            replaces the previous one (atomically, with the CLI's ``SafeCheckpointIO``).
        save_on_sigterm: on SIGTERM Lightning stops after the current batch; save its state before exit.
        dirpath: folder; None uses the run's ``checkpoints`` folder, next to ``last.ckpt``.
    """

    CHECKPOINT_NAME_LAST = "last-step"

    def __init__(
        self, every_n_train_steps: int = 0, save_on_sigterm: bool = True, dirpath: str | None = None
    ) -> None:
        if every_n_train_steps < 0:
            raise ValueError(
                f"every_n_train_steps must be >= 0 (0 saves only on SIGTERM), got {every_n_train_steps}"
            )
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=every_n_train_steps,
            every_n_epochs=0,
            enable_version_counter=False,
        )
        self.save_on_sigterm = save_on_sigterm

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Nothing: the end-of-training state is the main checkpoint's ``last.ckpt``."""

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not (isinstance(exception, SIGTERMException) and self.save_on_sigterm):
            return
        if self._should_skip_saving_checkpoint(trainer):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        rank_zero_info(f"SIGTERM: saved {self.last_model_path} at step {trainer.global_step}")


class NonFiniteLossError(RuntimeError):
    """The training loss, or the weights about to be checkpointed, became NaN or infinite."""


class FiniteLossGuard(Callback):
    """Stop training at the first NaN or infinite loss, and never checkpoint non-finite weights.

    The loss is checked before backward, so the broken step never updates the weights. A loss can stay
    finite while the weights blow up (BatchNorm normalises huge activations; its running statistics
    overflow), so every checkpoint is checked before it is written too: the last checkpoint on disk
    always holds the last finite state.

    Args:
        enabled: False lets training go on through non-finite values (Lightning's default behaviour).

    Under DDP the ranks agree before stopping, so a NaN on one rank stops all of them together.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: Tensor) -> None:
        if not self.enabled:
            return
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(not finite, all=False):
            value = "non-finite on another rank" if finite else loss.item()
            self._stop(trainer, f"training loss is {value}", "stopped before the update")

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self.enabled:
            return
        # parameters and buffers (BatchNorm statistics); metric states such as a running max start at -inf
        tensors = chain(pl_module.named_parameters(), pl_module.named_buffers())
        broken = [name for name, value in tensors if value.is_floating_point() and not value.isfinite().all()]
        if broken:
            more = f" (+{len(broken) - 1} more)" if len(broken) > 1 else ""
            self._stop(trainer, f"weights are non-finite ({broken[0]}{more})", "stopped without saving them")

    @staticmethod
    def _stop(trainer: Trainer, problem: str, action: str) -> None:
        where = f"step {trainer.global_step} (epoch {trainer.current_epoch})"
        raise NonFiniteLossError(
            f"{problem} at {where}; {action}, last checkpoint kept: "
            f"{_newest_last_checkpoint(trainer) or 'none yet'}; lower the learning rate or set "
            "--loss_guard.enabled=false to continue anyway"
        )


def _newest_last_checkpoint(trainer: Trainer) -> str | None:
    paths = [
        Path(cb.last_model_path) for cb in trainer.checkpoint_callbacks if getattr(cb, "last_model_path", "")
    ]
    existing = [path for path in paths if path.is_file()]
    return str(max(existing, key=lambda path: path.stat().st_mtime)) if existing else None
