"""What a command will read and where it will write, decided once, before anything is built.

``fit`` starts a fresh run in the next ``version_N``. ``fit --ckpt_path last`` continues the newest run of
that name that has a ``last.ckpt``, in its own folder, and TensorBoard drops what the interrupted writer
logged after the restored step; with none it starts a fresh run and says so, so a scheduler's requeue
command can always pass ``--ckpt_path last``. ``fit --ckpt_path FILE`` continues FILE's run in place when
FILE is that run's ``last.ckpt``, and otherwise starts a new run from FILE, leaving FILE's run as it is.

``validate``, ``test`` and ``predict`` need a checkpoint: ``last`` or ``best`` of the newest run with one,
or a file. Their logs and predictions go to ``<run>/eval/<subcommand>/version_K`` beside the checkpoint they
evaluate, so they never become "the newest run", and never over an earlier file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.utilities import rank_zero_only

from spe_lightning.core.errors import InputError
from spe_lightning.runs.checkpoints import CheckpointError, load_checkpoint_file
from spe_lightning.runs.layout import (
    CHECKPOINTS,
    EVAL,
    LAST,
    RUNS_DIR,
    VERSION_PREFIX,
    Run,
    newest_run,
    next_folder,
    run_of_checkpoint,
    version_number,
)
from spe_lightning.runs.lock import RunLock
from spe_lightning.runs.naming import file_loggers, model_run_name, resume_command

CHILD_ENV = "SPE_LIGHTNING_RUN"
"""Set by rank 0 for the processes Lightning's DDP launcher starts, so that they share its run."""
EVALUATIONS = ("validate", "test", "predict")
KEYWORDS = ("last", "best")
CHECKPOINT_CALLBACKS = ("checkpoint", "last_checkpoint")
"""The command line's checkpoint sections; their folder is the run's (a run's own config.yaml names it)."""


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
        """Point the file loggers, checkpoint callbacks and ``default_root_dir`` at the plan.

        The first TensorBoard or CSV logger writes in the run folder itself; each further one in a folder of
        its own inside it, named after its kind (``csv/``), so that no two write one ``hparams.yaml``. Other
        loggers (W&B, MLflow, ...) keep their own settings: only the run's own files follow the plan."""
        config.ckpt_path = None if self.ckpt_path is None else str(self.ckpt_path)
        config.trainer.default_root_dir = str(self.folder)
        used: set[str] = set()
        for index, logger in enumerate(file_loggers(config.trainer.logger)):
            init = logger.init_args
            if index == 0:
                init.save_dir, init.name = str(self.folder.parent), ""
                number = version_number(self.folder)  # an int N for version_N, as Lightning names it
                init.version = self.folder.name if number is None else number
            else:
                kind = logger.class_path.rpartition(".")[2].removesuffix("Logger").lower()
                sub_folder = kind if kind not in used else f"{kind}{index}"
                used.add(sub_folder)
                init.save_dir, init.name, init.version = str(self.folder), "", sub_folder
            if self.resumes_in_place and self.checkpoint is not None and "purge_step" in init:
                init.purge_step = self.start_step  # TensorBoard hides what the killed run logged after it
        for key in CHECKPOINT_CALLBACKS:
            given = config[key].get("dirpath")
            if given is not None and Path(given).absolute() != self.run.checkpoints.absolute():
                raise InputError(
                    f"{key}.dirpath={given!r} is not allowed: checkpoints live in the run folder, here "
                    f"{self.run.checkpoints}; move runs with trainer.logger.init_args.save_dir "
                    f"(the config.yaml of a run that was moved: add --{key}.dirpath=null)"
                )
            config[key].dirpath = str(self.run.checkpoints)

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
        return resume_command(args, self.run.last) if self.fitting else None


def plan_run(config: Namespace, subcommand: str) -> RunPlan:
    """Decide the folder and checkpoint of ``subcommand`` from its parsed ``config``; nothing is written."""
    inherited = os.environ.get(CHILD_ENV) if rank_zero_only.rank != 0 else None
    if inherited:  # a process started by rank 0's DDP launcher: rank 0 decided
        shared = json.loads(inherited)
        ckpt = Path(shared["ckpt_path"]) if shared["ckpt_path"] else None
        return RunPlan(subcommand, Path(shared["folder"]), Run(Path(shared["run"])), ckpt, None, False)
    root, version = _root_and_version(config.trainer, model_run_name(config.get("model") or Namespace()))
    ckpt = config.get("ckpt_path")
    if subcommand == "fit":
        return _plan_fit(root, version, ckpt)
    return _plan_evaluation(subcommand, root, version, ckpt)


def _root_and_version(trainer: Namespace, run_name: str) -> tuple[Path, str | None]:
    """Where the runs of this config live, and the version folder the config pins (if any): the first
    TensorBoard or CSV logger's ``save_dir``/``name``; without one (W&B or MLflow alone, or no logger),
    ``<default_root_dir or runs>/<run name>``."""
    loggers = file_loggers(trainer.logger)
    if not loggers:
        return Path(trainer.get("default_root_dir") or RUNS_DIR).absolute() / run_name, None
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
        if run is not None and run.checkpoint_files():
            return _resume(run, readable_last(run))
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
    if Run(folder).checkpoint_files():
        raise InputError(
            f"run {folder} already holds checkpoints ({CHECKPOINTS}/); continue it with "
            "--ckpt_path last, or choose another trainer.logger.init_args.version or name"
        )
    return RunPlan("fit", folder, Run(folder), None, None, not folder.exists())


def readable_last(run: Run) -> Path:
    """The run's ``last.ckpt``; a run that holds checkpoints but no readable ``last.ckpt`` is damaged, never
    taken for absent (``--ckpt_path last`` would otherwise start it over, or pick an older run)."""
    problem = None
    if not run.last.is_file():
        problem = f"no {LAST}"
    else:
        try:
            load_checkpoint_file(run.last, mmap=True)
        except CheckpointError as err:
            problem = f"a {LAST} that cannot be read ({err})"
    if problem is None:
        return run.last
    others = [path.name for path in run.checkpoint_files() if path.name != LAST]
    found = f"it holds {', '.join(others)}" if others else "it holds no other checkpoint"
    hint = (
        f"continue from one of them with --ckpt_path {run.checkpoints / others[-1]} "
        "(a new run starts from it)"
        if others
        else "start a new run"
    )
    raise CheckpointError(f"run {run.folder} is damaged: {problem}; {found}; {hint}")


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
        if run is None or not run.checkpoint_files():
            where = run.folder if run is not None else f"any run under {root}"
            raise CheckpointError(
                f"no checkpoint to {subcommand}: {where} has no {CHECKPOINTS}/{LAST}; "
                "train one with fit, or pass --ckpt_path <file>"
            )
        readable_last(run)
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
