"""``python -m spe_lightning grid --config configs/grids/<name>.yaml``: attention x pooling x seed grids.

A grid file names base config files and axes of overrides::

    base: [../cifar10_resnet164_se.yaml]         # relative to the grid file
    set: {trainer.max_epochs: 164}               # overrides every point shares (optional)
    axes:
      model.attention: [se, eca, cbam, srm]
      model.pool: [avg, max, min, maxmin@0.25]  # name@value: a pool with its argument (maxmin@<lam>)
      seed_everything: [0, 1, 2]

Each point of the product is a normal ``fit`` of those configs plus its values, in its own run root
``<save_dir>/<grid name>/<point name>`` (``se-maxmin@0.25-seed0``), with ``--ckpt_path last``, so running
the grid again skips finished points (:meth:`~spe_lightning.runs.layout.Run.status`) and resumes interrupted
ones. ``grid.json`` in the grid folder lists the points and their exact commands.

Launchers: ``local`` runs the points one after another, or ``parallel`` at a time with one GPU each
(``gpus``); ``slurm`` writes an sbatch job-array script, one task per pending point, requeued on
preemption (SIGTERM saves ``last.ckpt``, exit 143, ``scontrol requeue``), at most ``array_limit`` at once,
and submits it where ``sbatch`` exists; elsewhere it prints it. The cluster's scheduler does the
scheduling. Before any point runs, each dataset the points read is downloaded (or found) once.

Where each point's output goes: ``<grid folder>/<point name>.log`` (local), ``<grid folder>/slurm-<job
id>_<task>.out`` (slurm, appended to when a task is requeued); the run itself in ``<point name>/version_N``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Any, Literal

import yaml
from jsonargparse import ActionConfigFile
from lightning.pytorch.cli import instantiate_class

from spe_lightning.cli.lightning_cli import parse_config
from spe_lightning.cli.parser import ToolArgumentParser
from spe_lightning.core.errors import InputError, RunFailure
from spe_lightning.core.validation import check_int
from spe_lightning.runs.layout import GRID_MANIFEST, newest_run
from spe_lightning.runs.naming import dataset_label, fit_command

SCRIPT = "grid.sbatch"
UNLABELLED = ("data", "model.attention", "model.pool", "model.backbone")
"""Axes whose values name a point alone (``se``, not ``attention-se``)."""
LABELS = {"seed_everything": "seed"}


@dataclass(frozen=True)
class Point:
    """One fit of the grid: its name, its run root and its command."""

    index: int
    name: str
    values: dict[str, Any]
    root: Path
    command: list[str]

    def status(self) -> str:
        """``pending`` (never started) or the status of its newest run (finished, running, ...)."""
        run = newest_run(self.root)
        return "pending" if run is None else run.status()


def _flag(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    return f"--{key}={text.removesuffix(chr(10) + '...')}"


def _label(key: str, value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    if key == "data":  # a datamodule class path: its dataset (CIFAR100)
        text = dataset_label(text)
    part = text if key in UNLABELLED else f"{LABELS.get(key, key.rsplit('.', 1)[-1])}{text}"
    return re.sub(r"[^A-Za-z0-9.@_+-]+", "_", part)


def _combinations(
    axes: dict[str, list[Any]], controls: dict[str, dict[str, Any]]
) -> list[tuple[dict[str, Any], str]]:
    """(values, point name) of the axes' product, then of each control: its overrides with the product of
    the axes it leaves free, its name where the axes it sets would be named."""
    found = []
    for control, fixed in [(None, {}), *controls.items()]:
        free = {key: values for key, values in axes.items() if key not in fixed}
        for combo in itertools.product(*free.values()):
            values = {**dict(zip(free, combo, strict=True)), **fixed}
            parts, named = [], control is None
            for key in axes:
                if key in free:
                    parts.append(_label(key, values[key]))
                elif not named:
                    parts.append(_label("model.attention", control))  # its name, as an unlabelled value
                    named = True
            if not named:
                parts.append(_label("model.attention", control))
            found.append((values, "-".join(parts) or "point"))
    return found


def expand(
    grid_file: Path,
    base: Sequence[str],
    axes: dict[str, list[Any]],
    overrides: dict[str, Any],
    name: str | None,
    save_dir: str,
    controls: dict[str, dict[str, Any]] | None = None,
) -> tuple[str, list[Point]]:
    """The grid's name and points, checked: non-empty axes, distinct run folders. Each control adds its
    overrides crossed with the axes it does not set (its seeds, its datasets), named by its own name."""
    if not base:
        raise InputError(f"grid {grid_file} names no base config: give base: [<config file>, ...]")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise InputError(
                f"grid {grid_file}: axis {key} is {values!r}; an axis is a non-empty list of values"
            )
    configs = [str((grid_file.parent / config).resolve()) for config in base]
    for config in configs:
        if not Path(config).is_file():
            raise InputError(f"grid {grid_file}: base config {config} does not exist")
    grid_name = name or grid_file.stem
    folder = Path(save_dir).absolute() / grid_name
    points, seen = [], {}
    for index, (values, point_name) in enumerate(_combinations(axes, controls or {})):
        if point_name in seen:
            raise InputError(
                f"grid {grid_file}: points {seen[point_name]} and {values} would share the run folder "
                f"{folder / point_name}; make their values distinct"
            )
        seen[point_name] = values
        args = [arg for config in configs for arg in ("--config", config)]
        args += [_flag(key, value) for key, value in {**overrides, **values}.items()]
        args += [
            f"--trainer.logger.init_args.save_dir={folder}",
            f"--trainer.logger.init_args.name={point_name}",
        ]
        command = fit_command("fit", *args, "--ckpt_path=last")
        points.append(Point(index, point_name, values, folder / point_name, command))
    return grid_name, points


def check_points(points: list[Point]) -> None:
    """Parse, without building anything, each point that brings an axis value no earlier point had: every
    key and value of the grid is checked by the fit parser, in as few parses as the axes are long."""
    seen: set[tuple[str, str]] = set()
    for point in points:
        values = {(key, json.dumps(value, sort_keys=True)) for key, value in point.values.items()}
        if not values <= seen or point.index == 0:
            seen |= values
            try:
                parse_config(point.command[point.command.index("fit") :])
            except InputError as err:
                raise InputError(f"grid point {point.name}: {err}") from None


def prepare_data(points: list[Point]) -> None:
    """Download each dataset the points read, or check that it is in place, once, before any point starts:
    the points (array tasks on compute nodes that often have no network, or parallel local fits) then find
    it there, instead of all downloading it into one folder at once. One parse per distinct data setting."""
    seen: set[str] = set()
    for point in points:
        data = {key: value for key, value in point.values.items() if key.split(".")[0] == "data"}
        key = json.dumps(data, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        config = parse_config(point.command[point.command.index("fit") :]).data
        datamodule = instantiate_class((), config.as_dict())
        where = getattr(datamodule, "data_dir", None)
        print(f"[grid] preparing {config.class_path.rpartition('.')[2]}" + (f" in {where}" if where else ""))
        try:
            datamodule.prepare_data()
            datamodule.setup("fit")  # the files are there and read
        except InputError as err:
            raise InputError(f"grid point {point.name}: {err}") from None


def check_baseline(baseline: dict[str, Any] | None, axes: dict[str, list[Any]]) -> None:
    """A baseline names values of the grid's axes (not its seed), each one the axis has."""
    for key, value in (baseline or {}).items():
        if key not in axes or key == "seed_everything":
            allowed = ", ".join(k for k in axes if k != "seed_everything")
            raise InputError(
                f"baseline key {key!r} is not an axis of the grid; the axes it may name: {allowed}"
            )
        if value not in axes[key]:
            raise InputError(f"baseline {key}={value!r} matches no point: the axis has {axes[key]}")


def write_manifest(
    folder: Path, grid_file: Path, points: list[Point], baseline: dict[str, Any] | None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "grid": str(grid_file.resolve()),
        "baseline": baseline,
        "points": [
            {
                "index": p.index,
                "name": p.name,
                "values": p.values,
                "root": str(p.root),
                "command": shlex.join(p.command),
            }
            for p in points
        ],
    }
    path = folder / GRID_MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def run_local(points: list[Point], parallel: int, gpus: list[int] | None) -> dict[str, int]:
    """Run the points' fits as subprocesses, ``parallel`` at a time, each on one of ``gpus`` (if given).

    SIGTERM or SIGINT to the grid is passed on to the running fits (each saves ``last.ckpt`` and stops)
    and no further point starts: running the grid again resumes them.
    """
    devices: Queue[int | None] = Queue()
    for slot in range(parallel):
        devices.put(gpus[slot % len(gpus)] if gpus else None)
    running: dict[int, subprocess.Popen] = {}
    stopping: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        stopping.append(signum)
        for proc in list(running.values()):
            proc.send_signal(signum)

    def fit(point: Point) -> int:
        device = devices.get()
        try:
            if stopping:
                return 128 + stopping[0]
            env = dict(os.environ)
            if device is not None:
                env["CUDA_VISIBLE_DEVICES"] = str(device)
            print(f"[grid] {point.index}: {point.name} ({point.status()}) -> {point.root}", flush=True)
            with (point.root.parent / f"{point.name}.log").open("a") as log:
                proc = subprocess.Popen(point.command, env=env, stdout=log, stderr=subprocess.STDOUT)
                running[point.index] = proc
                code = proc.wait()
                running.pop(point.index)
            print(f"[grid] {point.index}: {point.name} exited {code}", flush=True)
            return code
        finally:
            devices.put(device)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with ThreadPoolExecutor(parallel) as pool:
            codes = dict(zip((p.name for p in points), pool.map(fit, points), strict=True))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopping:
        raise StopGrid(stopping[0])
    return codes


class StopGrid(Exception):
    """The grid was stopped by a signal; its running points saved their state."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; run the same grid command to continue")
        self.signum = signum


def check_sbatch(sbatch: dict[str, Any], array_limit: int | None) -> None:
    """The grid writes ``--array`` itself (one task per pending point): a second one is refused."""
    if array_limit is not None:
        check_int("array_limit", array_limit, hint=" (tasks of the array running at once)")
    if "array" in sbatch:
        raise InputError(
            f"sbatch option array={sbatch['array']!r} is not allowed: the grid writes --array itself, one "
            "task per pending point; use --array_limit N to run at most N of them at once"
        )


def slurm_script(
    grid_name: str, folder: Path, points: list[Point], sbatch: dict[str, Any], array_limit: int | None = None
) -> str:
    """An sbatch job array: task i runs pending point i's fit, at most ``array_limit`` at once; a preempted
    task (exit 143) is requeued. Task i's output is ``slurm-<job>_<i>.out`` in the grid folder."""
    options = {"job-name": grid_name, "output": str(folder / "slurm-%A_%a.out"), **sbatch}
    throttle = "" if array_limit is None else f"%{array_limit}"
    lines = ["#!/bin/bash", f"#SBATCH --array=0-{len(points) - 1}{throttle}"]
    lines += [f"#SBATCH --{key}={value}" for key, value in options.items()]
    lines += [
        "#SBATCH --requeue                 # a preempted task goes back into the queue",
        "#SBATCH --signal=TERM@120         # SIGTERM 120 s before the time limit: save last.ckpt, exit 143",
        "#SBATCH --open-mode=append",
        "",
        f"# {len(points)} pending points of the grid; the manifest is {folder / GRID_MANIFEST}",
        "COMMANDS=(",
        *(f"  {shlex.quote(shlex.join(point.command))}  # {point.index}: {point.name}" for point in points),
        ")",
        'eval "srun ${COMMANDS[$SLURM_ARRAY_TASK_ID]}"',
        "status=$?",
        'if [ "$status" -eq 143 ]; then scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; fi',
        'exit "$status"',
        "",
    ]
    return "\n".join(lines)


def run_grid(
    grid_file: Path,
    base: list[str],
    axes: dict[str, list[Any]],
    set: dict[str, Any] | None = None,
    name: str | None = None,
    save_dir: str = "runs",
    launcher: Literal["local", "slurm"] = "local",
    parallel: int = 1,
    gpus: list[int] | None = None,
    sbatch: dict[str, str | int] | None = None,
    array_limit: int | None = None,
    dry_run: bool = False,
    baseline: dict[str, Any] | None = None,
    controls: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run (local), or write and submit (slurm), every unfinished point of a grid. See the module doc.

    Args:
        grid_file: the grid file (``--config``); ``base`` paths are relative to it.
        base: config files every point starts from.
        axes: override key -> values; the grid is their product.
        set: overrides every point shares.
        name: the grid's folder under ``save_dir``; default: the grid file's name.
        save_dir: where grids live.
        launcher: ``local`` or ``slurm``.
        parallel: local launcher: points at a time.
        gpus: local launcher: GPU indices, one per running point (CUDA_VISIBLE_DEVICES).
        sbatch: slurm launcher: extra ``#SBATCH`` options, e.g. ``{gres: "gpu:1", time: "12:00:00"}``.
        array_limit: slurm launcher: array tasks running at once (``--array=0-167%4``).
        dry_run: list the points and what would run, and the slurm launcher's script; run, download and
            write nothing.
        baseline: axis values of the arm the report compares every other arm with, seed by seed
            (``{model.attention: se, model.pool: avg}``); recorded in ``grid.json``.
        controls: named extra arms, each a set of overrides crossed with the axes it does not set
            (``{const_gate: {model.attention: const_gate, model.pool: null}}``).
    """
    check_int("parallel", parallel)
    check_sbatch(sbatch or {}, array_limit)
    check_baseline(baseline, axes)
    grid_name, points = expand(grid_file, base, axes, set or {}, name, save_dir, controls)
    check_points(points)
    folder = Path(save_dir).absolute() / grid_name
    statuses = {point.name: point.status() for point in points}
    pending = [point for point in points if statuses[point.name] not in ("finished", "running")]
    summary = {"grid": grid_name, "folder": str(folder), "points": len(points), "statuses": statuses}
    print(f"[grid] {grid_name}: {len(points)} points, {len(pending)} to run ({folder})")
    if dry_run:
        for point in points:
            print(f"  {point.index:3d} {statuses[point.name]:<11} {shlex.join(point.command)}")
        if launcher == "slurm" and pending:
            print(f"# the script {folder / SCRIPT} would hold:")
            print(slurm_script(grid_name, folder, pending, sbatch or {}, array_limit))
        return summary
    prepare_data(pending)
    write_manifest(folder, grid_file, points, baseline)
    if launcher == "slurm":
        script = folder / SCRIPT
        script.write_text(slurm_script(grid_name, folder, pending, sbatch or {}, array_limit))
        if pending and shutil.which("sbatch"):
            submitted = subprocess.run(["sbatch", str(script)], capture_output=True, text=True, check=True)
            print(submitted.stdout.strip())
        else:
            print(script.read_text() + f"\n# written to {script}; submit it with: sbatch {script}")
        return {**summary, "script": str(script)}
    codes = run_local(pending, parallel, gpus) if pending else {}
    failed = {name: code for name, code in codes.items() if code != 0}
    if failed:
        raise RunFailure(
            f"grid {grid_name}: {len(failed)} of {len(pending)} points failed ({failed}); "
            f"their output is in <point>.log in {folder}"
        )
    return {**summary, "exit_codes": codes}


def main(args: list[str]) -> dict[str, Any]:
    """``python -m spe_lightning grid --config <grid file> [--launcher slurm] [--dry_run true] ...``."""
    parser = ToolArgumentParser(prog="python -m spe_lightning grid", description=__doc__.split("\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="the grid file (YAML)")
    parser.add_function_arguments(run_grid, skip={"grid_file"})
    config = parser.parse_args(args)
    files = config.pop("config", None) or []
    if not files:
        raise InputError(
            "grid needs its file: python -m spe_lightning grid --config configs/grids/<name>.yaml"
        )
    return run_grid(Path(str(files[-1])), **vars(config))
