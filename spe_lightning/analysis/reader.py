"""Reading runs back: what each run logged (its TensorBoard scalars and sub-runs), how it was configured
(``config.yaml``, ``hparams.yaml``), what it reported when it finished (``result.json``) and its status.

The one reader of runs: the report, the notebooks and the callbacks read through it, and which folders
are runs is :func:`spe_lightning.runs.layout.find_runs`'s rule. Event files are read as TensorBoard shows
them: one value per step, the last written, and a resumed run's writer (started with ``purge_step``) hides
what the interrupted writer logged from that step on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import SessionLog
from tensorboard.plugins.scalar.metadata import PLUGIN_NAME as SCALARS
from tensorboard.util import tensor_util

from spe_lightning.core.errors import MissingInput
from spe_lightning.runs.layout import EVENTS, Run, find_runs, newest_run
from spe_lightning.runs.log_names import BLOCK_RUNS, LAM, WATCH

Series = tuple[np.ndarray, np.ndarray]
"""(steps, values) of one scalar tag, in step order."""


def natural_key(name: str) -> list[Any]:
    """Sort key reading digit runs as numbers, so ``layer1.10`` follows ``layer1.9`` (depth order)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_scalars(folder: Path) -> tuple[dict[str, Series], float | None]:
    """Every scalar logged in ``folder`` (its own event files, not its sub-folders' ones) and the seconds its
    writers were active (per event file, last minus first event: a resumed run's pause does not count).

    Lightning's ``simple_value`` scalars and the monitor's scalar tensors alike; per tag one value per step,
    the last written, and a writer's ``purge_step`` start drops what earlier writers logged from there on.
    """
    values: dict[str, dict[int, float]] = {}
    scalar_tags: set[str] = set()
    active = 0.0
    for path in sorted(folder.glob(EVENTS)):  # the name starts with the creation time: oldest first
        times = []
        for event in EventFileLoader(str(path)).Load():
            times.append(event.wall_time)
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                for by_step in values.values():  # SummaryWriter(purge_step=N) starts at N
                    for step in [s for s in by_step if s >= event.step]:
                        del by_step[step]
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == SCALARS:
                    scalar_tags.add(value.tag)
                if value.HasField("simple_value"):
                    values.setdefault(value.tag, {})[event.step] = value.simple_value
                elif value.HasField("tensor") and value.tag in scalar_tags:
                    values.setdefault(value.tag, {})[event.step] = tensor_util.make_ndarray(
                        value.tensor
                    ).item()
        active += max(times) - min(times) if times else 0.0
    scalars = {
        tag: (np.array(sorted(by_step)), np.array([by_step[s] for s in sorted(by_step)]))
        for tag, by_step in values.items()
        if by_step
    }
    return scalars, active or None


def _yaml(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


@dataclass
class RunData:
    """One run as read back: its folder, settings, result, status and every scalar it logged."""

    run: Run
    scalars: dict[str, Series] = field(default_factory=dict)
    subruns: dict[str, dict[str, Series]] = field(default_factory=dict)
    """Scalars of each sub-run, by its folder relative to the run (``blocks/3``)."""
    config: dict[str, Any] = field(default_factory=dict)
    """The config the run started with; ``{"model": <hparams>}`` for a run made without the CLI."""
    hparams: dict[str, Any] = field(default_factory=dict)
    """The model's arguments (``hparams.yaml``)."""
    result: dict[str, Any] | None = None
    """What the fit reported when it finished; None while it has not."""
    status: str = "failed"
    wall_time_s: float | None = None

    @property
    def path(self) -> Path:
        return self.run.folder

    @property
    def label(self) -> str:
        """The run as TensorBoard lists it, ``cifar_resnet164-spem-learned/version_1``."""
        return self.run.label

    def block_series(self, key: str) -> dict[str, Series]:
        """``key``'s series (``lam``, ``p_norm``, ...) per block name (``layer1.0``), in depth order.

        Block ``i`` of stage ``S`` is the sub-run ``blocks/i``'s tag ``watch/<key>/S``.
        """
        prefix = f"{WATCH}/{key}/"
        blocks = {
            f"{tag[len(prefix) :]}.{subrun.rpartition('/')[2]}": series
            for subrun, scalars in self.subruns.items()
            if subrun.startswith(f"{BLOCK_RUNS}/")
            for tag, series in scalars.items()
            if tag.startswith(prefix)
        }
        return {block: blocks[block] for block in sorted(blocks, key=natural_key)}

    @property
    def lam(self) -> dict[str, Series]:
        """lam series per block name (``layer1.0``), in depth order; empty without learned pooling."""
        return self.block_series(LAM)

    def final_lams(self) -> tuple[list[str], np.ndarray]:
        """Block names and the last logged lam of each."""
        series = self.lam
        return list(series), np.array([values[-1] for _, values in series.values()])

    def scalar(self, *tags: str) -> Series:
        """The first of ``tags`` that was logged (e.g. ``train/loss_step`` or ``train/loss``)."""
        for tag in tags:
            if tag in self.scalars:
                return self.scalars[tag]
        raise KeyError(f"none of {list(tags)} was logged in {self.path}; logged: {sorted(self.scalars)}")


def read_run(folder: str | Path | Run) -> RunData:
    """Read a run folder: settings, result, status, and the scalars of the run and of its sub-runs."""
    run = folder if isinstance(folder, Run) else Run(Path(folder))
    if not run.folder.is_dir():
        raise MissingInput(f"run folder {run.folder} does not exist")
    scalars, wall_time = read_scalars(run.folder)
    subruns = {
        path.relative_to(run.folder).as_posix(): read_scalars(path)[0]
        for path in sorted((run.folder / BLOCK_RUNS).glob("*"), key=lambda p: natural_key(p.name))
        if path.is_dir()
    }
    hparams = _yaml(run.hparams_file)
    config = _yaml(run.config_file) or ({"model": hparams} if hparams else {})
    return RunData(run, scalars, subruns, config, hparams, run.result(), run.status(), wall_time)


def read_runs(root: str | Path) -> list[RunData]:
    """Every run at or below ``root`` (:func:`~spe_lightning.runs.layout.find_runs`), read."""
    root = Path(root)
    if not root.is_dir():
        raise MissingInput(f"run folder {root} does not exist")
    return [read_run(run) for run in find_runs(root)]


def latest_run(root: str | Path) -> Path:
    """The newest run under ``root``: ``runs/quickstart`` -> its highest ``version_N``, as ``fit --ckpt_path
    last`` counts (else the last run below ``root``)."""
    root = Path(root)
    newest = newest_run(root)
    if newest is not None:
        return newest.folder
    runs = find_runs(root) if root.is_dir() else []
    if not runs:
        raise MissingInput(f"no run under {root}; train one first")
    return runs[-1].folder
