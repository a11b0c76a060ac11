"""``python -m spe_lightning report <runs or grid folder>``: per-run and mean +- std tables, and figures.

Sources, all written by the runs themselves and read by :mod:`spe_lightning.analysis.reader`: a run's
settings come from the ``config.yaml`` it started with, its parameter count from the model its
``hparams.yaml`` rebuilds, its metrics from its TensorBoard events (``val/acc1`` per epoch, Lightning's
``epoch`` scalar, wall times) and its status from the run layer (finished, running, interrupted, failed).
In a grid folder the manifest (``grid.json``) lists every point, so a point that never started shows as
``pending``: no run is dropped silently. Groups (mean +- sample std over seeds) count finished runs only.

Writes ``runs.csv``, ``runs.md``, ``groups.csv``, ``groups.md``, ``accuracy_by_pool.png`` and
``lam_by_depth.png`` into ``<folder>/report`` (or ``--output``), replacing an earlier report there.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jsonargparse import ActionConfigFile
from matplotlib.figure import Figure

from spe_lightning.analysis.figures import plot_final_lam, save_figure
from spe_lightning.analysis.reader import RunData, read_run
from spe_lightning.analysis.tables import markdown_table
from spe_lightning.cli.parser import ToolArgumentParser
from spe_lightning.core.errors import InputError, MissingInput
from spe_lightning.models import count_parameters
from spe_lightning.runs.layout import GRID_MANIFEST, Run, find_runs, newest_run
from spe_lightning.runs.log_names import EPOCH, VAL_ACC1
from spe_lightning.runs.naming import attention_label, dataset_label, pool_label_of

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
    logs: RunData | None = None

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
            f"best {VAL_ACC1}": fmt(self.best),
            "best epoch": self.best_epoch if self.best_epoch is not None else "-",
            f"final {VAL_ACC1}": fmt(self.final),
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
    settings = {
        "dataset": dataset_label(data.get("class_path")) or "-",
        "backbone": model.get("backbone", "-"),
        "depth": (model.get("backbone_kwargs") or {}).get("depth", "-"),
        "attention": attention_label(model),
        "pool": pool_label_of(model) or "-",
    }
    return settings, flat.get("seed_everything")


_PARAMS: dict[str, int] = {}


def _params(hparams: dict[str, Any]) -> int | None:
    """Parameters of the network a run's model arguments rebuild (cached: seeds share a model)."""
    if not hparams:
        return None
    from spe_lightning.training.classifier import ImageClassifier  # torch models: only when a run is read

    kwargs = {k: v for k, v in hparams.items() if not k.startswith("_")}  # LightningCLI's _instantiator
    kwargs.pop("compile", None)  # no compile for a count
    key = json.dumps(kwargs, sort_keys=True, default=str)
    if key not in _PARAMS:
        _PARAMS[key] = count_parameters(ImageClassifier(**kwargs).net)
    return _PARAMS[key]


def read_record(run: Run, name: str | None = None, values: dict[str, Any] | None = None) -> RunRecord:
    logs = read_run(run)
    settings, seed = _settings(logs.config, values)
    record = RunRecord(name or run.folder.name, run.folder, logs.status, settings, seed, logs=logs)
    record.params = _params(logs.hparams)
    if VAL_ACC1 in logs.scalars:
        steps, accuracy = logs.scalars[VAL_ACC1]
        epoch_steps, epoch_values = logs.scalars.get(EPOCH, logs.scalars.get("epoch", ([], [])))
        by_step = dict(zip(np.asarray(epoch_steps).tolist(), np.asarray(epoch_values).tolist(), strict=True))
        record.accuracies = accuracy.tolist()
        record.epochs = [int(by_step.get(step, i)) for i, step in enumerate(steps.tolist())]
    record.wall_time_s = logs.wall_time_s
    return record


def load_runs(*folders: str | Path) -> list[RunRecord]:
    """The report's rows: each grid point (from its manifest) or each run under ``folders``."""
    records = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise MissingInput(f"report folder {folder} does not exist")
        manifest = folder / GRID_MANIFEST
        if manifest.is_file():
            for point in json.loads(manifest.read_text())["points"]:
                run = newest_run(Path(point["root"]))
                if run is None:
                    settings, seed = _settings({}, point["values"])
                    records.append(RunRecord(point["name"], None, "pending", settings, seed))
                else:
                    records.append(read_record(run, point["name"], point["values"]))
        else:
            records += [read_record(run, _name(run, folder)) for run in find_runs(folder)]
    if not records:
        raise InputError(f"no runs under {', '.join(map(str, folders))}: nothing to report")
    return records


def _name(run: Run, root: Path) -> str:
    """``se-avg-seed0/version_0`` below ``root``; a run given itself: ``<parent>/<folder>``."""
    if run.folder == root:
        return run.label
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
            row[f"{label} {VAL_ACC1} mean"] = statistics.fmean(values) if values else math.nan
            row[f"{label} {VAL_ACC1} std"] = statistics.stdev(values) if len(values) > 1 else math.nan
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
            f"best {VAL_ACC1}": _pm(row[f"best {VAL_ACC1} mean"], row[f"best {VAL_ACC1} std"]),
            f"final {VAL_ACC1}": _pm(row[f"final {VAL_ACC1} mean"], row[f"final {VAL_ACC1} std"]),
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
        means = [mine[pools[i]][f"best {VAL_ACC1} mean"] for i in xs]
        stds = [np.nan_to_num(mine[pools[i]][f"best {VAL_ACC1} std"]) for i in xs]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=attention)
    ax.set_xticks(range(len(pools)), pools)
    ax.set(xlabel="pool", ylabel="best val top-1 (mean ± std)")
    ax.legend(fontsize="small", title="attention")
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
    lam = plot_final_lam([record.logs for record in records if record.logs is not None])
    if lam is not None:
        written["lam_by_depth.png"] = save_figure(lam, out / "lam_by_depth.png")
    print(f"## Runs\n\n{written['runs.md'].read_text()}\n## Mean ± std over seeds (finished runs)\n")
    print(written["groups.md"].read_text())
    print(f"report written to {out}: {', '.join(sorted(written))}")
    return written


def main(args: list[str]) -> dict[str, Path]:
    """``python -m spe_lightning report <folder> [<folder> ...] [--output DIR]``."""
    parser = ToolArgumentParser(prog="python -m spe_lightning report", description=__doc__.split("\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="the arguments as a YAML file")
    parser.add_argument("folders", nargs="+", help="runs or grid folders (e.g. runs/digits_smoke)")
    parser.add_argument("--output", default=None, help="folder for the report (default <folder>/report)")
    config = parser.parse_args(args)
    return report(config.folders, config.output)
