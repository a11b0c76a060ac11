"""Resume exactly after a crash or preemption; stop on a non-finite loss before it is saved.

* :class:`RandomState` puts the global RNG states in every checkpoint, so a resumed run draws the same
  augmentations as an uninterrupted one (Lightning restores weights, optimiser, schedulers and loop
  counters, but not the RNGs). Together with :class:`~spe_lightning.data.resumable.ResumableDataLoader`
  (the sample order) a CPU run resumed from any checkpoint ends with the same weights.
* :class:`LastCheckpoint` writes ``last.ckpt`` at every epoch end, every N optimizer steps and when SIGTERM
  (how SLURM and most schedulers preempt) or SIGINT stops the run; ``--ckpt_path last`` resumes it.
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
from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor

from spe_lightning.core.errors import RunFailure
from spe_lightning.core.validation import check_int
from spe_lightning.runs.layout import CHECKPOINTS, LAST, run_folder


class RandomState(Callback):
    """Save the global torch, CUDA, NumPy and Python RNG states with each checkpoint; restore them on resume.

    The states are restored while Lightning restores callbacks, before the training loop builds its
    iterator; nothing in between draws from the global RNGs (the sanity check runs under ``isolate_rng``
    and :class:`~spe_lightning.data.resumable.ResumableDataLoader` seeds every sample and its workers
    from its own seed), so the first resumed batch sees the RNG exactly as the uninterrupted run did.
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


class LastCheckpoint(Checkpoint):
    """``last.ckpt``: the newest state of the run, whatever the monitored metric does.

    Written at every epoch end (after validation and the best-k callback, so it holds their state), every
    ``every_n_train_steps`` optimizer steps, and when SIGTERM or SIGINT stops the run at a batch boundary.
    Each save replaces the previous one atomically (the CLI's ``SafeCheckpointIO``). Best-k files are the
    ``ModelCheckpoint``'s business; this file is what ``--ckpt_path last`` resumes.

    Args:
        every_n_train_steps: steps between mid-epoch saves; 0 saves only at epoch ends and on signals.
        save_on_signal: save when SIGTERM or SIGINT stops the run.
        dirpath: the run's checkpoint folder; the CLI's run layer sets it. None: ``<run folder>/checkpoints``.
    """

    FILENAME = LAST

    def __init__(
        self, every_n_train_steps: int = 0, save_on_signal: bool = True, dirpath: str | None = None
    ) -> None:
        check_int(
            "last_checkpoint.every_n_train_steps",
            every_n_train_steps,
            minimum=0,
            hint=" (0 saves at epoch ends only)",
        )
        self.every_n_train_steps = every_n_train_steps
        self.save_on_signal = save_on_signal
        self.dirpath = dirpath
        self.path: Path | None = None
        """Where the newest save went (set in ``setup``)."""
        self._saved_step = -1

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        folder = Path(self.dirpath) if self.dirpath else run_folder(trainer) / CHECKPOINTS
        self.path = folder / self.FILENAME

    def save(self, trainer: Trainer, again: bool = False) -> None:
        """Save now (every rank calls it; rank 0 writes); once per optimizer step unless ``again``."""
        if (
            self.path is None
            or trainer.sanity_checking
            or (trainer.global_step == self._saved_step and not again)
        ):
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # the whole state: resume loses nothing
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # where ModelCheckpoint saves too, and after it (Lightning runs checkpoint callbacks last, in order):
        # the epoch's validation and best-model bookkeeping are in, even at a step saved a moment ago
        self.save(trainer, again=True)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if (
            isinstance(exception, SIGTERMException)
            and self.save_on_signal
            and trainer.state.fn == TrainerFn.FITTING
        ):
            self.save(trainer)
            rank_zero_info(f"saved {self.path} at step {trainer.global_step}")


LOSS_CHECK = "the training loss"
"""The name of the loss flag among the checks before a save."""


class NonFiniteLossError(RunFailure):
    """The training loss, or the weights about to be checkpointed, became NaN or infinite."""


class FiniteLossGuard(Callback):
    """Stop training after a NaN or infinite loss, and never checkpoint what came after it.

    Each step's check stays on the device (no host sync on the training hot path): a flag and the first
    bad step accumulate there, and the run decides every ``check_every_n_steps`` optimizer steps (default:
    the trainer's ``log_every_n_steps``, when Lightning syncs to log anyway), at every epoch end, and
    before every checkpoint is written. The steps between a bad loss and that decision update the weights
    but are never saved: the error names the first bad step, and the last checkpoint on disk holds the
    state before it. A loss can stay finite while the weights blow up (BatchNorm normalises huge
    activations; its running statistics overflow), so every checkpoint's weights are checked too.

    Args:
        enabled: False lets training go on through non-finite values (Lightning's default behaviour).
        check_every_n_steps: optimizer steps between two decisions; None uses ``log_every_n_steps``.

    Under DDP the ranks agree at each decision, so a NaN on one rank stops all of them together.
    """

    def __init__(self, enabled: bool = True, check_every_n_steps: int | None = None) -> None:
        check_int("loss_guard.check_every_n_steps", check_every_n_steps, allow_none=True)
        self.enabled = enabled
        self.check_every_n_steps = check_every_n_steps
        self._every = 1
        self._bad: Tensor | None = None  # on the device: any non-finite loss since the last decision
        self._first: Tensor | None = None  # on the device: the global step of the first one, or -1

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._every = self.check_every_n_steps or trainer.log_every_n_steps
        self._bad = self._first = None

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: Tensor) -> None:
        if not self.enabled:
            return
        bad = ~torch.isfinite(loss.detach()).all()
        first = torch.where(bad, trainer.global_step, -1)
        if self._bad is None:
            self._bad, self._first = bad, first
        else:
            self._first = torch.where(self._bad, self._first, first)
            self._bad = self._bad | bad

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if trainer.global_step % self._every == 0:
            self.decide(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.decide(trainer)

    def decide(self, trainer: Trainer) -> None:
        """Read the device flag (one host sync) and stop every rank if any saw a non-finite loss."""
        if not self.enabled:
            return
        local = self._bad is not None and bool(self._bad)
        if trainer.strategy.reduce_boolean_decision(local, all=False):
            self._stop_for_loss(trainer, local)

    def _stop_for_loss(self, trainer: Trainer, local: bool) -> None:
        where = f"at step {int(self._first)}" if local else "on another rank"
        self._stop(trainer, f"training loss became non-finite {where}", "stopped, nothing later saved")

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self.enabled:
            return
        # parameters and buffers (BatchNorm statistics); metric states such as a running max start at -inf;
        # and the losses since the last decision. One stacked check (one host sync) and one reduction, so
        # under DDP every rank takes the same decision.
        checks = [
            (name, value.isfinite().all())
            for name, value in chain(pl_module.named_parameters(), pl_module.named_buffers())
            if value.is_floating_point()
        ]
        if self._bad is not None:
            checks.append((LOSS_CHECK, ~self._bad))
        finite = torch.stack([check for _, check in checks]) if checks else None
        broken = (
            [] if finite is None or bool(finite.all()) else [checks[int(i)][0] for i in (~finite).nonzero()]
        )
        if not trainer.strategy.reduce_boolean_decision(bool(broken), all=False):
            return
        if not broken:
            self._stop(
                trainer, "weights or training loss are non-finite on another rank", "stopped without saving"
            )
        if LOSS_CHECK in broken:  # the loss first: it names the step that went wrong
            self._stop_for_loss(trainer, True)
        more = f" (+{len(broken) - 1} more)" if len(broken) > 1 else ""
        self._stop(trainer, f"weights are non-finite ({broken[0]}{more})", "stopped without saving them")

    @staticmethod
    def _stop(trainer: Trainer, problem: str, action: str) -> None:
        where = f"step {trainer.global_step} of epoch {trainer.current_epoch}"
        raise NonFiniteLossError(
            f"{problem}, found at {where}; {action}, last checkpoint kept: "
            f"{_newest_last_checkpoint(trainer) or 'none yet'}; lower the learning rate or set "
            "--loss_guard.enabled=false to continue anyway"
        )


def _newest_last_checkpoint(trainer: Trainer) -> str | None:
    paths = [cb.path for cb in trainer.callbacks if isinstance(cb, LastCheckpoint) and cb.path is not None]
    return next((str(path) for path in paths if path.is_file()), None)
