"""What the CLI checks before a run writes anything, and how a failed run ends: one line, a clear exit code.

Bad values in the config fail while the parser and ``instantiate_classes`` run. Other problems (an output
folder that cannot be written, a checkpoint that is unreadable, unsafe or made for another model, missing
or corrupt data) surface inside ``trainer.fit``/``test``/``predict``, after the logger has opened its run
folder. :func:`checked_run` finds the first two kinds before the run starts and, when a run fails before
its first training step, puts its log folder back as it found it, so a failed start (or a failed resume
into an existing run) changes no results. :func:`one_line_errors` prints ``error: <message>`` on stderr
instead of a traceback.

Exit codes: 2 bad input (a message naming the value and what is allowed), 1 a training failure such as a
non-finite loss, 143 (128 + SIGTERM) stopped by SIGTERM after saving a checkpoint.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from spe_lightning.callbacks.fault_tolerance import NonFiniteLossError
from spe_lightning.callbacks.prediction_writer import CSVPredictionWriter
from spe_lightning.checkpoint_io import check_checkpoint_fits, load_checkpoint_file

INPUT_ERRORS = (ValueError, OSError)
"""Errors that mean a bad value or file (CheckpointError is a ValueError; missing and unwritable paths are
OSErrors): exit 2 with the message alone."""
EXIT_INPUT, EXIT_FAILED, EXIT_SIGTERM = 2, 1, 143


def _output_dirs(trainer: Trainer, subcommand: str) -> list[Path]:
    """Folders the run will write: logs, checkpoints (fit) and the prediction CSV (predict)."""
    dirs = [Path(trainer.default_root_dir)]
    for logger in trainer.loggers:
        folder = getattr(logger, "log_dir", None) or logger.save_dir
        if folder is not None:
            dirs.append(Path(folder))
    for callback in trainer.callbacks:
        if subcommand == "fit" and isinstance(callback, ModelCheckpoint) and callback.dirpath:
            dirs.append(Path(callback.dirpath))
        if subcommand == "predict" and isinstance(callback, CSVPredictionWriter) and callback.output_path:
            dirs.append(Path(callback.output_path).parent)
    return dirs


def check_writable(trainer: Trainer, subcommand: str) -> None:
    """Raise a one-line ``PermissionError`` naming the first output folder that cannot be written."""
    for folder in _output_dirs(trainer, subcommand):
        existing = folder.absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            reason = f"{existing} is a file"
        elif not os.access(existing, os.W_OK | os.X_OK):
            reason = f"{existing} is not writable"
        else:
            continue
        raise PermissionError(
            f"output folder {folder} cannot be written ({reason}); choose a writable "
            "--trainer.logger.init_args.save_dir / --trainer.default_root_dir / --checkpoint.dirpath"
        )


def resolve_ckpt_path(trainer: Trainer, ckpt_path: str | None) -> str | None:
    """The file ``ckpt_path`` names: ``last`` is the newest ``last*.ckpt`` of the checkpoint callbacks.

    ``best``, ``hpc`` and registry names are left to Lightning (None: nothing to check up front).
    """
    if ckpt_path is None or ckpt_path in ("best", "hpc") or str(ckpt_path).startswith("registry:"):
        return None
    if ckpt_path != "last":
        return str(ckpt_path)
    candidates = {
        path
        for callback in trainer.checkpoint_callbacks
        if isinstance(callback, ModelCheckpoint)
        for path in callback._find_last_checkpoints(trainer)  # Lightning's own lookup for "last"
    }
    return max(candidates, key=os.path.getmtime) if candidates else None


def check_checkpoint_file(config: Namespace) -> None:
    """Right after parsing: a ``ckpt_path`` file must be a safe, readable Lightning checkpoint.

    LightningCLI reads the hyperparameters of a ``ckpt_path`` file before building the model (its
    ``torch.load`` errors are raw tracebacks); this reads it first, with one-line errors.
    """
    subcommand = config.get("subcommand")
    path = config[subcommand].get("ckpt_path") if subcommand else None
    if path and Path(path).is_file():
        load_checkpoint_file(path)


def check_run(trainer: Trainer, model: LightningModule, subcommand: str, config: Namespace) -> int:
    """Before ``subcommand`` runs: outputs writable; the checkpoint readable, safe and fitting ``model``.

    Returns the global step the run starts from (the checkpoint's, else 0).
    """
    check_writable(trainer, subcommand)
    path = resolve_ckpt_path(trainer, config.get("ckpt_path"))
    if path is None:
        return 0
    checkpoint = load_checkpoint_file(path, weights_only=config.get("weights_only") is not False)
    check_checkpoint_fits(checkpoint, model, path)
    return int(checkpoint.get("global_step", 0))


@contextmanager
def _rollback_log_dir(trainer: Trainer, trained: Callable[[], bool]) -> Iterator[None]:
    """If the run fails and ``trained()`` is False, remove what it added to its log folder and restore
    the small files it rewrote (config and hyperparameter YAML); a folder it created goes entirely."""
    logger = trainer.logger
    folder = Path(logger.log_dir) if logger is not None and getattr(logger, "log_dir", None) else None
    existed = folder is not None and folder.is_dir()
    before = {p: p.read_bytes() if p.is_file() and p.stat().st_size < 2**20 else None for p in _tree(folder)}
    try:
        yield
    except BaseException:
        if folder is not None and trainer.is_global_zero and not trained():
            if not existed:
                shutil.rmtree(folder, ignore_errors=True)
            for path in sorted(_tree(folder) - before.keys(), reverse=True):  # files before their folders
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink()
            for path, content in before.items():
                if content is not None and path.is_file() and path.read_bytes() != content:
                    path.write_bytes(content)
        raise


def _tree(folder: Path | None) -> set[Path]:
    return set(folder.rglob("*")) if folder is not None and folder.is_dir() else set()


@contextmanager
def checked_run(
    trainer: Trainer, model: LightningModule, subcommand: str, config: Namespace
) -> Iterator[None]:
    """:func:`check_run`, then the run; if it fails before training a step, its log folder is restored."""
    start = check_run(trainer, model, subcommand, config)
    with _rollback_log_dir(trainer, lambda: subcommand == "fit" and trainer.global_step > start):
        yield


@contextmanager
def one_line_errors(debug: bool = False) -> Iterator[None]:
    """End a failed run with ``error: <one line>`` and an exit code, not a traceback (``debug``: re-raise)."""
    try:
        yield
    except SIGTERMException:
        print("stopped by SIGTERM; run the same command with --ckpt_path last to continue", file=sys.stderr)
        sys.exit(EXIT_SIGTERM)
    except Exception as err:
        if debug:
            raise
        if isinstance(err, INPUT_ERRORS):
            message, code = " ".join(str(err).split()), EXIT_INPUT
        elif isinstance(err, NonFiniteLossError):
            message, code = str(err), EXIT_FAILED
        else:  # unexpected: its first line and how to see the rest
            first = next((line for line in str(err).splitlines() if line.strip()), "").strip()
            message = f"{type(err).__name__}: {first} (JSONARGPARSE_DEBUG=true shows the traceback)"
            code = EXIT_FAILED
        print(f"error: {message or type(err).__name__}", file=sys.stderr)
        sys.exit(code)
