"""Where a run lives and what it holds: the one rule for which folders are runs, and a run's files.

A run is a folder ``<save_dir>/<name>/version_N`` (the first TensorBoard or CSV logger's ``save_dir`` and
``name``; without one, ``<default_root_dir or runs>/<model run name>``). It holds the TensorBoard events,
``config.yaml``, ``hparams.yaml``, ``result.json`` once its fit finished, and ``checkpoints/``: ``last.ckpt``
(the newest state, written at every epoch end, every N steps and when a signal stops the run) and the best-k
files of the ``checkpoint`` callback. Inside a run, ``eval/<subcommand>/version_K`` holds the logs of
evaluations of its checkpoints, and TensorBoard sub-runs (:mod:`~spe_lightning.runs.log_names`) hold one line
per block: neither is a run.

A grid is a folder ``<save_dir>/<grid name>`` holding ``grid.json`` (its points) and one run root per point.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from spe_lightning.runs.checkpoints import load_checkpoint_file
from spe_lightning.runs.lock import RunLock
from spe_lightning.runs.log_names import SUBRUN_FOLDERS

FILE_LOGGERS = (TensorBoardLogger, CSVLogger)
"""The loggers that write into a folder of their own: the run layer makes it the run folder."""
RUNS_DIR = "runs"
"""Where runs live when no TensorBoard or CSV logger says (W&B or MLflow alone, or ``logger: false``)."""
VERSION_PREFIX = "version_"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
"""The newest state of a run (written by :class:`~spe_lightning.training.callbacks.LastCheckpoint`)."""
EVAL = "eval"
CONFIG = "config.yaml"
"""The config a run was started with (LightningCLI's ``SaveConfigCallback``)."""
HPARAMS = "hparams.yaml"
"""The model's arguments (the logger's), enough to rebuild the network."""
RESULT = "result.json"
"""Written when a fit finishes (:func:`write_result`): a run without it is unfinished."""
EVENTS = "events.out.tfevents.*"
GRID_MANIFEST = "grid.json"
"""A grid folder's list of points (written by ``python -m spe_lightning grid``)."""
STATUSES = ("pending", "running", "finished", "interrupted", "damaged", "failed")
"""What :meth:`Run.status` (and a grid point that never started: ``pending``) can say."""


@dataclass(frozen=True)
class Run:
    """A run folder and its checkpoints."""

    folder: Path

    @property
    def checkpoints(self) -> Path:
        return self.folder / CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / LAST

    def has_checkpoint(self) -> bool:
        return self.last.is_file()

    def checkpoint_files(self) -> list[Path]:
        """Every checkpoint file the run holds (``last.ckpt`` and the best-k), by name."""
        return sorted(self.checkpoints.glob("*.ckpt")) if self.checkpoints.is_dir() else []

    @property
    def result_file(self) -> Path:
        return self.folder / RESULT

    @property
    def config_file(self) -> Path:
        return self.folder / CONFIG

    @property
    def hparams_file(self) -> Path:
        return self.folder / HPARAMS

    @property
    def label(self) -> str:
        """The run as TensorBoard lists it (:func:`run_label`)."""
        return run_label(self.folder)

    def result(self) -> dict[str, Any] | None:
        """What the fit reported when it finished (:func:`write_result`); None while it has not."""
        return json.loads(self.result_file.read_text()) if self.result_file.is_file() else None

    def status(self) -> str:
        """``running`` (a process holds its lock), ``finished``, ``interrupted`` (a checkpoint to resume
        from), ``damaged`` (checkpoints, but no ``last.ckpt`` to resume from) or ``failed`` (stopped before
        its first checkpoint)."""
        if RunLock.held(self.folder):
            return "running"
        if self.result_file.is_file():
            return "finished"
        if self.has_checkpoint():
            return "interrupted"
        return "damaged" if self.checkpoint_files() else "failed"

    def best(self) -> Path | None:
        """The best-k checkpoint that ``last.ckpt``'s ``ModelCheckpoint`` state names as best."""
        if not self.has_checkpoint():
            return None
        state = load_checkpoint_file(self.last, mmap=True).get("callbacks", {})
        named = [value.get("best_model_path") for value in state.values() if isinstance(value, dict)]
        for path in filter(None, named):
            best = self.checkpoints / Path(path).name  # the run folder may have moved since
            if best.is_file():
                return best
        return None


def run_of_checkpoint(path: Path) -> Run:
    """The run a checkpoint file belongs to: the folder holding its ``checkpoints/``, else its own folder."""
    parent = path.absolute().parent
    return Run(parent.parent if parent.name == CHECKPOINTS else parent)


def version_number(folder: Path) -> int | None:
    """N of a ``version_N`` folder name, else None."""
    digits = folder.name[len(VERSION_PREFIX) :]
    return int(digits) if folder.name.startswith(VERSION_PREFIX) and digits.isdigit() else None


def versions(root: Path) -> list[Run]:
    """The runs ``root/version_N``, by N."""
    found = [folder for folder in root.glob(f"{VERSION_PREFIX}*") if version_number(folder) is not None]
    return [Run(folder) for folder in sorted(found, key=version_number)]


def newest_run(root: Path, with_checkpoint: bool = False) -> Run | None:
    """The highest ``version_N`` under ``root`` (holding a checkpoint file if asked: its ``last.ckpt`` may be
    missing, a damaged run); evaluations never count."""
    runs = [run for run in versions(root) if run.checkpoint_files() or not with_checkpoint]
    return runs[-1] if runs else None


def run_label(folder: Path) -> str:
    """A run as TensorBoard lists it: ``quickstart/version_0`` (the folder and its parent)."""
    return f"{folder.parent.name}/{folder.name}" if folder.parent.name else folder.name


def next_folder(root: Path) -> Path:
    """The folder of the next run under ``root``: ``version_<highest N + 1>``."""
    runs = versions(root)
    return root / f"{VERSION_PREFIX}{version_number(runs[-1].folder) + 1 if runs else 0}"


def is_run(folder: Path) -> bool:
    """Whether ``folder`` is a run itself: it holds a run's config, events or checkpoints."""
    return (
        (folder / CONFIG).is_file()
        or (folder / HPARAMS).is_file()
        or (folder / CHECKPOINTS).is_dir()
        or any(folder.glob(EVENTS))
    )


def find_runs(root: Path) -> list[Run]:
    """Every training run at or below ``root``: ``root`` itself if it is one, else its ``version_N`` folders
    (by N) and the runs below its other folders (by name). Evaluations and sub-runs live inside a run, so
    they are never reached: a run's folder is not searched further."""
    root = Path(root)
    if is_run(root):
        return [Run(root)]
    runs = versions(root)
    listed = {run.folder for run in runs}
    skip = {EVAL, *SUBRUN_FOLDERS}
    for child in sorted(p for p in root.iterdir() if p.is_dir() and p not in listed and p.name not in skip):
        runs += find_runs(child)
    return runs


def write_result(folder: Path, result: dict[str, Any]) -> None:
    """Mark a run finished, with its summary (the report's and the grid's sign that it is done)."""
    tmp = folder / f".{RESULT}.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, folder / RESULT)


def run_folder(trainer: Trainer) -> Path:
    """Where a run's own files go (``config.yaml``, lam figures, predictions, checkpoints): the folder of its
    first TensorBoard or CSV logger, else ``default_root_dir`` (the run folder the CLI's run layer chose).
    Not ``trainer.log_dir``: with W&B or MLflow first, that is their store, shared by every run."""
    for logger in trainer.loggers:
        if isinstance(logger, FILE_LOGGERS):
            return Path(logger.log_dir)
    return Path(trainer.default_root_dir)


@rank_zero_only
def open_csv_loggers(trainer: Trainer) -> None:
    """Open each CSV logger's writer so that it appends to the ``metrics.csv`` an earlier part of its run
    wrote. Lightning's writer deletes that file from a folder that is not empty, warning that it will (a
    run folder always holds its config, a resumed run the metrics of its first part), and knows only the
    columns it logged itself: it is given the file's, so that new columns widen the file."""
    for logger in trainer.loggers:
        if not isinstance(logger, CSVLogger):
            continue
        metrics = Path(logger.log_dir) / ExperimentWriter.NAME_METRICS_FILE
        aside = metrics.with_name(f".{metrics.name}.kept")
        if metrics.exists():
            os.replace(metrics, aside)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Experiment logs directory .* exists and is not empty")
                writer = logger.experiment
        finally:
            if aside.exists():
                os.replace(aside, metrics)
        if metrics.exists():
            with metrics.open(newline="") as file:
                writer.metrics_keys = next(csv.reader(file), [])
