"""Checkpoint files that survive a crash mid-write and load without running code.

``SafeCheckpointIO`` is the CLI's default ``trainer.plugins``. Saving writes a temporary file next to the
target, fsyncs it and renames it over the old file (``os.replace`` is atomic), so a run killed while saving
leaves the previous checkpoint whole; a save that fails (a full disk) says so in one line and leaves it
whole too. Loading uses ``torch.load(weights_only=True)``, which rebuilds only tensors and plain containers,
so a crafted file cannot execute code. Unusable files raise a one-line :class:`CheckpointError` naming the
file; :func:`check_checkpoint_fits` also names the parameters a checkpoint made for another model lacks or
shapes differently.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from torch import nn

from spe_lightning.core.errors import InputError, RunFailure, summarize

PathLike = str | Path

LIGHTNING_KEYS = ("state_dict", "pytorch-lightning_version")
"""Entries Lightning needs to restore a checkpoint."""
SHOWN_KEYS = 3
"""How many missing / unexpected / mismatched parameter names an error message lists."""


class CheckpointError(InputError):
    """A checkpoint that cannot be used: not a checkpoint, truncated, unsafe, or made for another model."""


def is_local(path: PathLike) -> bool:
    return isinstance(get_filesystem(path), LocalFileSystem)


def load_checkpoint_file(
    path: PathLike, map_location: Any = "cpu", weights_only: bool = True, mmap: bool = False
) -> dict[str, Any]:
    """``torch.load`` a Lightning checkpoint, turning every failure into a one-line :class:`CheckpointError`.

    With ``weights_only`` (the default) a pickle that would import anything beyond tensors and plain
    containers is refused before any of it runs. ``mmap`` maps a local file instead of reading it: a check
    of keys and shapes then costs no read of the tensors.
    """
    fs = get_filesystem(path)
    if not fs.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about odd pickle protocols before failing on them
            if is_local(path):
                checkpoint = torch.load(path, map_location, weights_only=weights_only, mmap=mmap)
            else:
                with fs.open(path, "rb") as file:
                    checkpoint = torch.load(file, map_location, weights_only=weights_only)
    except Exception as err:  # the zip and pickle readers raise OSError, EOFError, KeyError, RuntimeError...
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
        if unsafe is not None:
            raise CheckpointError(
                f"checkpoint {path} refused: loading it would import {unsafe.group(1)}; only tensors and "
                "plain containers are loaded (torch.load weights_only=True), so a checkpoint cannot run code"
            ) from err
        detail = "" if isinstance(err, pickle.UnpicklingError) else f" ({summarize(err, with_type=True)})"
        raise CheckpointError(f"checkpoint {path} is truncated or not a PyTorch checkpoint{detail}") from err
    missing = [key for key in LIGHTNING_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} is not a Lightning checkpoint: no {', '.join(missing)} entry"
        )
    return checkpoint


def check_checkpoint_fits(
    checkpoint: dict[str, Any], model: nn.Module, path: PathLike, prefix: str = ""
) -> None:
    """Raise a one-line :class:`CheckpointError` if ``checkpoint``'s weights do not fit ``model`` exactly
    (those whose names start with ``prefix``: ``net.`` for the network alone)."""
    saved = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    problems = []
    missing = [key for key in expected if key not in saved]
    unexpected = [key for key in saved if key not in expected]
    mismatched = [
        f"{key} {list(saved[key].shape)} vs {list(value.shape)}"
        for key, value in expected.items()
        if key in saved and isinstance(saved[key], torch.Tensor) and saved[key].shape != value.shape
    ]
    kinds = {"missing": missing, "unexpected": unexpected, "shape checkpoint vs model": mismatched}
    for label, items in kinds.items():
        if items:
            more = f" (+{len(items) - SHOWN_KEYS} more)" if len(items) > SHOWN_KEYS else ""
            problems.append(f"{label}: {', '.join(items[:SHOWN_KEYS])}{more}")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} was made for a different model ({'; '.join(problems)}); "
            "use the model and data options it was trained with"
        )


class SafeCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic local saves and safe, explained loads.

    Loads use ``weights_only=True`` unless the caller passes ``weights_only=False`` explicitly
    (``Trainer.fit(..., weights_only=False)`` for a trusted file holding arbitrary Python objects).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: PathLike, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # remote stores: fsspec's own writes
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "xb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as err:  # torch reports a failed write as RuntimeError
            raise RunFailure(_save_failure(path, err)) from err
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def load_checkpoint(
        self, path: PathLike, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location, weights_only is not False)


def _save_failure(path: Path, err: BaseException) -> str:
    """One line for a checkpoint that could not be written: why, and what is still on disk."""
    chain, cause = [], err
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    os_errors = [e for e in chain if isinstance(e, OSError) and e.errno is not None]
    if any(e.errno == errno.ENOSPC for e in os_errors):
        free = shutil.disk_usage(path.parent).free
        reason = f"no space left on the device of {path.parent} ({free / 2**20:.1f} MiB free)"
    else:
        reason = os_errors[0].strerror if os_errors else summarize(err, with_type=True)
    kept = f"the previous {path.name} is intact" if path.is_file() else f"no earlier {path.name} existed"
    return f"could not write checkpoint {path}: {reason}; {kept} and nothing else was changed"


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); directories cannot be opened for fsync on Windows."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
