"""``python -m spe_lightning report <runs or grid folder>``: per-run and mean +- std tables, and figures.

Sources, all written by the runs themselves: a run's settings come from the ``config.yaml`` it started
with, its parameter count from the model its ``hparams.yaml`` rebuilds, its metrics from its TensorBoard
events (``val/acc1`` per epoch, Lightning's ``epoch`` scalar, wall times) and its status from the run
layer (:meth:`~spe_lightning.runs.Run.status`: finished, running, interrupted, failed). In a grid folder
the manifest (``grid.json``) lists every point, so a point that never started shows as ``pending``:
no run is dropped silently. Groups (mean +- sample std over seeds) count finished runs only.

Writes ``runs.csv``, ``runs.md``, ``groups.csv``, ``groups.md``, ``accuracy_by_pool.png`` and
``lam_by_depth.png`` into ``<folder>/report`` (or ``--output``), replacing an earlier report there.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from spe_lightning.errors import InputError, MissingInput
from spe_lightning.grid import MANIFEST
from spe_lightning.inspect_logs import Run as Logs
from spe_lightning.inspect_logs import markdown_table, plot_lam_vs_depth, read_run, save_figure
from spe_lightning.layers import default_pool
from spe_lightning.runs import EVAL, Run, newest_run, run_label, versions

ACC = "val/acc1"
SETTINGS = ("dataset", "backbone", "depth", "attention", "pool")


@dataclass
class RunRecord:
    """One run (or a grid point that has none yet) as the report shows it."""

    name: str
    folder: Path | None
    status: str
    settings: dict[str, Any]
    seed: Any = None
    params: int | None = None
    accuracies: list[float] = field(default_factory=list)
    """``val/acc1`` at each epoch end, in order."""
    epochs: list[int] = field(default_factory=list)
    wall_time_s: float | None = None
    logs: Logs | None = None

    @property
    def best(self) -> float | None:
        return max(self.accuracies) if self.accuracies else None

    @property
    def best_epoch(self) -> int | None:
        return self.epochs[int(np.argmax(self.accuracies))] if self.accuracies else None

    @property
    def final(self) -> float | None:
        return self.accuracies[-1] if self.accuracies else None

    def row(self) -> dict[str, Any]:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.4f}"

        return {
            "run": self.name,
            **{key: self.settings.get(key, "-") for key in SETTINGS},
            "seed": self.seed if self.seed is not None else "-",
            "params": self.params if self.params is not None else "-",
            "best val/acc1": fmt(self.best),
            "best epoch": self.best_epoch if self.best_epoch is not None else "-",
            "final val/acc1": fmt(self.final),
            "epochs": len(self.accuracies),
            "wall time (s)": "-" if self.wall_time_s is None else f"{self.wall_time_s:.0f}",
            "status": self.status,
        }


def _settings(config: dict[str, Any], values: dict[str, Any] | None = None) -> tuple[dict[str, Any], Any]:
    """Report columns from a run's config (or a grid point's values), and its seed."""
    flat = {**config, **{key: value for key, value in (values or {}).items()}}
    model = config.get("model") or {}
    pick = {key.removeprefix("model."): value for key, value in flat.items() if key.startswith("model.")}
    model = {**model, **pick}
    data = config.get("data") or {}
    attention = model.get("attention") or "none"
    settings = {
        "dataset": str(data.get("class_path", "-")).rsplit(".", 1)[-1].removesuffix("DataModule"),
        "backbone": model.get("backbone", "-"),
        "depth": (model.get("backbone_kwargs") or {}).get("depth", "-"),
        "attention": attention,
        "pool": model.get("pool") or default_pool(attention) or "-",
    }
    return settings, flat.get("seed_everything")


_PARAMS: dict[str, int] = {}


def _params(hparams_file: Path) -> int | None:
    """Parameters of the network ``hparams.yaml`` rebuilds (cached: seeds share a model)."""
    if not hparams_file.is_file():
        return None
    from spe_lightning.classifier import ImageClassifier  # torch models: only when a run is read

    text = hparams_file.read_text()
    if text not in _PARAMS:
        hparams = {k: v for k, v in (yaml.safe_load(text) or {}).items() if not k.startswith("_")}
        hparams.pop("compile", None)  # LightningCLI's _instantiator, and no compile for a count
        _PARAMS[text] = sum(p.numel() for p in ImageClassifier(**hparams).net.parameters())
    return _PARAMS[text]


def _wall_time(folder: Path) -> float | None:
    """Seconds the run's writers were active: per event file, last minus first event (restarts add up)."""
    total = 0.0
    for path in sorted(folder.glob("events.out.tfevents.*")):
        times = [event.wall_time for event in EventFileLoader(str(path)).Load()]
        total += max(times) - min(times) if times else 0.0
    return total or None


def _config(folder: Path) -> dict[str, Any]:
    """The config a run started with; a run made without the CLI has only its model's ``hparams.yaml``."""
    for name, wrap in (("config.yaml", False), ("hparams.yaml", True)):
        if (folder / name).is_file():
            content = yaml.safe_load((folder / name).read_text()) or {}
            return {"model": content} if wrap else content
    return {}


def read_record(run: Run, name: str | None = None, values: dict[str, Any] | None = None) -> RunRecord:
    settings, seed = _settings(_config(run.folder), values)
    record = RunRecord(name or run.folder.name, run.folder, run.status(), settings, seed)
    record.params = _params(run.folder / "hparams.yaml")
    if any(run.folder.glob("events.out.tfevents.*")):
        record.logs = read_run(run.folder)
        if ACC in record.logs.scalars:
            steps, accuracy = record.logs.scalars[ACC]
            epoch_steps, epoch_values = record.logs.scalars.get("epoch", (np.array([]), np.array([])))
            by_step = dict(zip(epoch_steps.tolist(), epoch_values.tolist(), strict=True))
            record.accuracies = accuracy.tolist()
            record.epochs = [int(by_step.get(step, i)) for i, step in enumerate(steps.tolist())]
        record.wall_time_s = _wall_time(run.folder)
    return record


def _training_runs(folder: Path) -> Iterable[Run]:
    """Every run at or below ``folder``: ``version_N`` folders, never evaluations inside a run."""
    if any(folder.glob("events.out.tfevents.*")) or (folder / "config.yaml").is_file():
        yield Run(folder)  # a run folder itself
        return
    runs = versions(folder)
    yield from runs
    listed = {run.folder for run in runs}
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != EVAL and p not in listed):
        yield from _training_runs(child)


def load_runs(*folders: str | Path) -> list[RunRecord]:
    """The report's rows: each grid point (from its manifest) or each run under ``folders``."""
    records = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise MissingInput(f"report folder {folder} does not exist")
        manifest = folder / MANIFEST
        if manifest.is_file():
            for point in json.loads(manifest.read_text())["points"]:
                run = newest_run(Path(point["root"]))
                if run is None:
                    settings, seed = _settings({}, point["values"])
                    records.append(RunRecord(point["name"], None, "pending", settings, seed))
                else:
                    records.append(read_record(run, point["name"], point["values"]))
        else:
            records += [read_record(run, _name(run, folder)) for run in _training_runs(folder)]
    if not records:
        raise InputError(f"no runs under {', '.join(map(str, folders))}: nothing to report")
    return records


def _name(run: Run, root: Path) -> str:
    """``se-avg-seed0/version_0`` below ``root``; a run given itself: ``<parent>/<folder>``."""
    if run.folder == root:
        return run_label(run.folder)
    return str(run.folder.relative_to(root))


def group(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Mean +- sample std and n of the best and final val/acc1 over seeds, per setting, finished runs."""
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(tuple(record.settings.get(k) for k in SETTINGS), []).append(record)
    rows = []
    for key, members in groups.items():
        done = [r for r in members if r.status == "finished" and r.best is not None]
        row = dict(zip(SETTINGS, key, strict=True))
        for label, values in (("best", [r.best for r in done]), ("final", [r.final for r in done])):
            row[f"{label} val/acc1 mean"] = statistics.fmean(values) if values else math.nan
            row[f"{label} val/acc1 std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        row["n"] = len(done)
        row["not finished"] = len(members) - len(done)
        rows.append(row)
    return rows


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def group_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **{key: row[key] for key in SETTINGS},
            "best val/acc1": _pm(row["best val/acc1 mean"], row["best val/acc1 std"]),
            "final val/acc1": _pm(row["final val/acc1 mean"], row["final val/acc1 std"]),
            "n": row["n"],
            "not finished": row["not finished"],
        }
        for row in rows
    ]


def accuracy_figure(rows: Sequence[dict[str, Any]]) -> Figure:
    """Best val/acc1 (mean +- std over seeds) by pool, one line per attention."""
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.subplots()
    pools = list(dict.fromkeys(str(row["pool"]) for row in rows))
    for attention in dict.fromkeys(row["attention"] for row in rows):
        mine = {str(row["pool"]): row for row in rows if row["attention"] == attention}
        xs = [i for i, pool in enumerate(pools) if pool in mine]
        means = [mine[pools[i]]["best val/acc1 mean"] for i in xs]
        stds = [np.nan_to_num(mine[pools[i]]["best val/acc1 std"]) for i in xs]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=attention)
    ax.set_xticks(range(len(pools)), pools)
    ax.set(xlabel="pool", ylabel="best val top-1 (mean ± std)")
    ax.legend(fontsize="small", title="attention")
    return fig


def lam_figure(records: Sequence[RunRecord]) -> Figure | None:
    """Final lam against depth, one line per run with learned pooling; None if no run has any."""
    learned = [(r, *r.logs.final_lams()) for r in records if r.logs is not None and r.logs.lam]
    if not learned:
        return None
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.subplots()
    for record, blocks, lams in learned:
        plot_lam_vs_depth(ax, blocks, lams, label=record.name)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def report(folders: Sequence[str | Path], output: str | Path | None = None) -> dict[str, Path]:
    """Write the report of ``folders`` into ``output`` (default ``<first folder>/report``); its files."""
    records = load_runs(*folders)
    out = Path(output) if output is not None else Path(folders[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    runs, groups = [record.row() for record in records], group(records)
    written = {"runs.csv": out / "runs.csv", "runs.md": out / "runs.md"}
    _write_csv(written["runs.csv"], runs)
    written["runs.md"].write_text(markdown_table(runs) + "\n")
    written["groups.csv"], written["groups.md"] = out / "groups.csv", out / "groups.md"
    _write_csv(written["groups.csv"], groups)
    written["groups.md"].write_text(markdown_table(group_table(groups)) + "\n")
    written["accuracy_by_pool.png"] = save_figure(accuracy_figure(groups), out / "accuracy_by_pool.png")
    lam = lam_figure(records)
    if lam is not None:
        written["lam_by_depth.png"] = save_figure(lam, out / "lam_by_depth.png")
    print(f"## Runs\n\n{written['runs.md'].read_text()}\n## Mean ± std over seeds (finished runs)\n")
    print(written["groups.md"].read_text())
    print(f"report written to {out}: {', '.join(sorted(written))}")
    return written


def report_main(args: list[str]) -> dict[str, Path]:
    """``python -m spe_lightning report <folder> [<folder> ...] [--output DIR]``."""
    from jsonargparse import ActionConfigFile

    from spe_lightning.cli import SPEArgumentParser

    parser = SPEArgumentParser(prog="python -m spe_lightning report", description=__doc__.split("\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="the arguments as a YAML file")
    parser.add_argument("folders", nargs="+", help="runs or grid folders (e.g. runs/digits_smoke)")
    parser.add_argument("--output", default=None, help="folder for the report (default <folder>/report)")
    config = parser.parse_args(args)
    return report(config.folders, config.output)
