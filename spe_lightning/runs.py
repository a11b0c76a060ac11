"""The run layer: where a run lives, what ``last`` and ``best`` mean, and who may write a run.

A run is a folder ``<save_dir>/<name>/version_N`` (the logger's ``save_dir`` and ``name``; without a logger
``<default_root_dir>/lightning_logs``). It holds the TensorBoard events, ``config.yaml``, ``hparams.yaml``
and ``checkpoints/``: ``last.ckpt`` (the newest state, written at every epoch end, every N steps and when a
signal stops the run) and the best-k files of the ``checkpoint`` callback.

``fit`` starts a fresh run in the next ``version_N``. ``fit --ckpt_path last`` continues the newest run of
that name that has a ``last.ckpt``, in its own folder, and TensorBoard drops what the interrupted writer
logged after the restored step; with none it starts a fresh run and says so, so a scheduler's requeue
command can always pass ``--ckpt_path last``. ``fit --ckpt_path FILE`` continues FILE's run in place when
FILE is that run's ``last.ckpt``, and otherwise starts a new run from FILE, leaving FILE's run as it is.

``validate``, ``test`` and ``predict`` need a checkpoint: ``last`` or ``best`` of the newest run with one,
or a file. Their logs and predictions go to ``<run>/eval/<subcommand>/version_K`` beside the checkpoint they
evaluate, so they never become "the newest run", and never over an earlier file.

A run being trained is locked (``<run>/.lock``, an ``flock`` held by the training process, which the kernel
releases when that process dies): a second process on the same run fails at once, naming the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.utilities import rank_zero_only

from spe_lightning.checkpoint_io import CheckpointError, load_checkpoint_file
from spe_lightning.errors import InputError
from spe_lightning.layers import default_pool
from spe_lightning.models import backbone_label

VERSION_PREFIX = "version_"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
"""The newest state of a run (written by :class:`~spe_lightning.callbacks.LastCheckpoint`)."""
EVAL = "eval"
LOCK = ".lock"
RESULT = "result.json"
"""Written when a fit finishes (:func:`write_result`): a run without it is unfinished."""
CHILD_ENV = "SPE_LIGHTNING_RUN"
"""Set by rank 0 for the processes Lightning's DDP launcher starts, so that they share its run."""
EVALUATIONS = ("validate", "test", "predict")
KEYWORDS = ("last", "best")


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

    @property
    def result_file(self) -> Path:
        return self.folder / RESULT

    def result(self) -> dict[str, Any] | None:
        """What the fit reported when it finished (:func:`write_result`); None while it has not."""
        return json.loads(self.result_file.read_text()) if self.result_file.is_file() else None

    def status(self) -> str:
        """``running`` (a process holds its lock), ``finished``, ``interrupted`` (a checkpoint to resume
        from) or ``failed`` (stopped before its first checkpoint)."""
        if RunLock.held(self.folder):
            return "running"
        if self.result_file.is_file():
            return "finished"
        return "interrupted" if self.has_checkpoint() else "failed"

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


def _number(folder: Path) -> int | None:
    """N of a ``version_N`` folder name, else None."""
    digits = folder.name[len(VERSION_PREFIX) :]
    return int(digits) if folder.name.startswith(VERSION_PREFIX) and digits.isdigit() else None


def versions(root: Path) -> list[Run]:
    """The runs ``root/version_N``, by N."""
    found = [folder for folder in root.glob(f"{VERSION_PREFIX}*") if _number(folder) is not None]
    return [Run(folder) for folder in sorted(found, key=_number)]


def newest_run(root: Path, with_checkpoint: bool = False) -> Run | None:
    """The highest ``version_N`` under ``root`` (with a ``last.ckpt`` if asked); evaluations never count."""
    runs = [run for run in versions(root) if run.has_checkpoint() or not with_checkpoint]
    return runs[-1] if runs else None


def run_label(folder: Path) -> str:
    """A run as TensorBoard lists it: ``quickstart/version_0`` (the folder and its parent)."""
    return f"{folder.parent.name}/{folder.name}" if folder.parent.name else folder.name


def next_folder(root: Path) -> Path:
    runs = versions(root)
    return root / f"{VERSION_PREFIX}{_number(runs[-1].folder) + 1 if runs else 0}"


def _versioned_loggers(logger: Any) -> list[Namespace]:
    """The configured loggers that take ``save_dir``/``name``/``version`` (TensorBoard, CSV)."""
    entries = logger if isinstance(logger, list) else [logger]
    return [
        entry
        for entry in entries
        if isinstance(entry, Namespace)
        and {"save_dir", "name", "version"} <= set(vars(entry.get("init_args") or Namespace()))
    ]


UNNAMED = (None, "lightning_logs")
"""Logger names that name no run: ours (null) and Lightning's default; the model names the run instead."""


def model_run_name(model: Any) -> str:
    """``<backbone>-<attention>-<pool>`` of a model config: ``cifar_resnet164-spem-learned``,
    ``resnet50-se-avg``, ``cifar_resnet20-none`` (the attention's own pool when the config names none), so
    runs compare side by side in TensorBoard."""
    kwargs = model.get("backbone_kwargs") or {}
    attention = str(model.get("attention") or "none").lower()
    pool = model.get("pool") or default_pool(attention)
    parts = [backbone_label(model.get("backbone"), kwargs.get("depth")), attention, *([pool] if pool else [])]
    return "-".join(str(part) for part in parts)


def name_unnamed_runs(config: Namespace) -> None:
    """Give every configured logger that names no run the model's name (:func:`model_run_name`)."""
    for entry in _versioned_loggers(config.get("trainer", Namespace()).get("logger")):
        if entry.init_args.name in UNNAMED:
            entry.init_args.name = model_run_name(config.get("model") or Namespace())


@dataclass
class RunPlan:
    """What a command will read and where it will write, decided once, before anything is built."""

    subcommand: str
    folder: Path
    """Where this command writes: the fit run, or ``<run>/eval/<subcommand>/version_K``."""
    run: Run
    """The run trained (fit) or evaluated."""
    ckpt_path: Path | None
    checkpoint: dict[str, Any] | None
    """The checkpoint, memory-mapped: read once for every check made before the run."""
    new_folder: bool
    notice: str | None = None

    @property
    def start_step(self) -> int:
        """The global step the run starts from (0 for a fresh one)."""
        return int(self.checkpoint.get("global_step", 0)) if self.checkpoint is not None else 0

    @property
    def fitting(self) -> bool:
        return self.subcommand == "fit"

    @property
    def resumes_in_place(self) -> bool:
        return self.fitting and self.ckpt_path is not None and not self.new_folder

    def apply(self, config: Namespace) -> None:
        """Point the configured loggers, checkpoint callbacks and ``default_root_dir`` at the plan."""
        config.ckpt_path = None if self.ckpt_path is None else str(self.ckpt_path)
        config.trainer.default_root_dir = str(self.folder)
        for logger in _versioned_loggers(config.trainer.logger):
            init = logger.init_args
            init.save_dir, init.name = str(self.folder.parent), ""
            number = _number(self.folder)  # an int N for version_N, as Lightning names (and shows) it
            init.version = self.folder.name if number is None else number
            if self.resumes_in_place and self.checkpoint is not None and "purge_step" in init:
                init.purge_step = self.start_step  # TensorBoard hides what the killed run logged after it
        config.checkpoint.dirpath = config.last_checkpoint.dirpath = str(self.run.checkpoints)

    def claim(self) -> RunLock | None:
        """Create the folder (rank 0) and, for fit, lock the run; the last step before the run starts."""
        if rank_zero_only.rank != 0:
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=not self.new_folder)
        except FileExistsError:
            raise InputError(
                f"run folder {self.folder} was created by another process meanwhile; run the command again"
            ) from None
        lock = RunLock.acquire(self.folder) if self.fitting else None
        if lock is not None:
            self.run.result_file.unlink(missing_ok=True)  # training again: unfinished until it ends
        os.environ[CHILD_ENV] = json.dumps(
            {
                "folder": str(self.folder),
                "run": str(self.run.folder),
                "ckpt_path": self.ckpt_path and str(self.ckpt_path),
            }
        )
        return lock

    def resume_command(self, args: list[str]) -> str | None:
        """The command that continues this fit run in place (printed when a signal stops it)."""
        if not self.fitting:
            return None
        kept, skip = [], False
        for arg in args:
            if skip:
                skip = False
            elif arg == "--ckpt_path":
                skip = True
            elif not arg.startswith("--ckpt_path="):
                kept.append(arg)
        return shlex.join([sys.executable, "-m", "spe_lightning", *kept, f"--ckpt_path={self.run.last}"])


def plan_run(config: Namespace, subcommand: str) -> RunPlan:
    """Decide the folder and checkpoint of ``subcommand`` from its parsed ``config``; nothing is written."""
    inherited = os.environ.get(CHILD_ENV) if rank_zero_only.rank != 0 else None
    if inherited:  # a process started by rank 0's DDP launcher: rank 0 decided
        shared = json.loads(inherited)
        ckpt = Path(shared["ckpt_path"]) if shared["ckpt_path"] else None
        return RunPlan(subcommand, Path(shared["folder"]), Run(Path(shared["run"])), ckpt, None, False)
    root, version = _root_and_version(config.trainer)
    ckpt = config.get("ckpt_path")
    if subcommand == "fit":
        return _plan_fit(root, version, ckpt)
    return _plan_evaluation(subcommand, root, version, ckpt)


def _root_and_version(trainer: Namespace) -> tuple[Path, str | None]:
    """Where the runs of this config live, and the version folder the config pins (if any)."""
    loggers = _versioned_loggers(trainer.logger)
    if not loggers:
        return Path(trainer.get("default_root_dir") or os.getcwd()).absolute() / "lightning_logs", None
    init = loggers[0].init_args
    version = init.version
    pinned = (
        None if version is None else f"{VERSION_PREFIX}{version}" if isinstance(version, int) else version
    )
    return (Path(init.save_dir) / (init.name or "")).absolute(), pinned


def _plan_fit(root: Path, pinned: str | None, ckpt: str | None) -> RunPlan:
    if ckpt == "best":
        raise InputError(
            "fit --ckpt_path best would rewind a run and write over its newer checkpoints; continue with "
            "--ckpt_path last, or give a checkpoint file to start a new run from it"
        )
    if ckpt == "last":
        run = Run(root / pinned) if pinned else newest_run(root, with_checkpoint=True)
        if run is not None and run.has_checkpoint():
            return _resume(run, run.last)
        folder = root / pinned if pinned else next_folder(root)
        notice = f"no run under {root} has {CHECKPOINTS}/{LAST} yet: starting a fresh run"
        return RunPlan("fit", folder, Run(folder), None, None, not folder.exists(), f"{notice} in {folder}")
    if ckpt is not None:
        path = Path(ckpt)
        run = run_of_checkpoint(path)
        if path.absolute() == run.last.absolute():
            return _resume(run, path)
        folder = root / pinned if pinned else next_folder(root)
        checkpoint = load_checkpoint_file(path, mmap=True)
        notice = f"starting run {folder} from {path} (the run {run.folder} is left as it is)"
        return RunPlan("fit", folder, Run(folder), path, checkpoint, True, notice)
    folder = root / pinned if pinned else next_folder(root)
    if Run(folder).has_checkpoint():
        raise InputError(
            f"run {folder} already holds {CHECKPOINTS}/{LAST}; continue it with "
            "--ckpt_path last, or choose another trainer.logger.init_args.version or name"
        )
    return RunPlan("fit", folder, Run(folder), None, None, not folder.exists())


def _resume(run: Run, path: Path) -> RunPlan:
    checkpoint = load_checkpoint_file(path, mmap=True)
    step, epoch = checkpoint.get("global_step", 0), checkpoint.get("epoch", 0)
    notice = f"resuming run {run.folder} from {path.name} (epoch {epoch}, step {step})"
    return RunPlan("fit", run.folder, run, path, checkpoint, False, notice)


def _plan_evaluation(subcommand: str, root: Path, pinned: str | None, ckpt: str | None) -> RunPlan:
    if ckpt is None:
        raise InputError(
            f"{subcommand} needs a checkpoint: --ckpt_path last or best (of the newest run under {root}), "
            "or a checkpoint file"
        )
    if ckpt in KEYWORDS:
        run = Run(root / pinned) if pinned else newest_run(root, with_checkpoint=True)
        if run is None or not run.has_checkpoint():
            where = run.folder if run is not None else f"any run under {root}"
            raise CheckpointError(
                f"no checkpoint to {subcommand}: {where} has no {CHECKPOINTS}/{LAST}; "
                "train one with fit, or pass --ckpt_path <file>"
            )
        path = run.last if ckpt == "last" else run.best()
        if path is None:
            raise CheckpointError(
                f"no best checkpoint in {run.checkpoints} (last.ckpt names none that exists); "
                "use last or a file"
            )
    else:
        path = Path(ckpt)
        run = run_of_checkpoint(path)
    checkpoint = load_checkpoint_file(path, mmap=True)
    folder = next_folder(run.folder / EVAL / subcommand)
    return RunPlan(
        subcommand, folder, run, path, checkpoint, True, f"{subcommand}: {path} -> logs in {folder}"
    )


def write_result(folder: Path, result: dict[str, Any]) -> None:
    """Mark a run finished, with its summary (the report's and the grid's sign that it is done)."""
    tmp = folder / f".{RESULT}.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, folder / RESULT)


class RunLock:
    """An exclusive ``flock`` on ``<run>/.lock``: held while a process trains the run, gone when it dies."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder, self.fd = folder, fd

    @classmethod
    def acquire(cls, folder: Path) -> RunLock:
        path = folder / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InputError(
                f"run {folder} is in use by {holder}; wait for it to finish or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        return cls(folder, fd)

    @staticmethod
    def held(folder: Path) -> bool:
        """Whether a live process holds the lock of ``folder`` (tested without taking it for long)."""
        path = folder / LOCK
        if not path.is_file():
            return False
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock this test took
        return False

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1
