"""``python -m spe_lightning report <runs or grid folder>``: runs, groups with intervals, paired comparisons.

Sources, all written by the runs themselves and read by :mod:`spe_lightning.analysis.reader`: a run's
settings come from the ``config.yaml`` it started with, its parameter count from the model its
``hparams.yaml`` rebuilds, its metrics from its TensorBoard events (``val/acc1`` per epoch, Lightning's
``epoch`` scalar, wall times) and its status from the run layer (finished, running, interrupted, failed).
In a grid folder the manifest (``grid.json``) lists every point, so a point that never started shows as
``pending``: no run is dropped silently. Groups are runs equal in everything but the seed (finished runs
with metrics); against a baseline, arms are compared seed by seed (:mod:`spe_lightning.analysis.statistics`).

Writes ``runs.csv``, ``groups.csv``, ``comparisons.csv`` (with a baseline), ``report.md`` (all of it, with
the figures) and ``accuracy_by_pool.png``, ``differences.png``, ``lam_by_depth.png`` into
``<folder>/report`` (or ``--output``), replacing an earlier report there.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jsonargparse import ActionConfigFile
from matplotlib.figure import Figure

from spe_lightning.analysis.figures import plot_final_lam, save_figure
from spe_lightning.analysis.reader import RunData, read_run
from spe_lightning.analysis.statistics import Comparison, GroupSummary, compare_paired, judge, summarize_group
from spe_lightning.analysis.tables import markdown_table
from spe_lightning.cli.parser import ToolArgumentParser
from spe_lightning.core.errors import InputError, MissingInput
from spe_lightning.models import count_parameters
from spe_lightning.runs.layout import GRID_MANIFEST, Run, find_runs, newest_run
from spe_lightning.runs.log_names import EPOCH, VAL_ACC1
from spe_lightning.runs.naming import attention_label, dataset_label, pool_label_of
from spe_lightning.training.identity import flatten

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
    experiment: dict[str, Any] = field(default_factory=dict)
    """The run's resolved config, flattened, less what only names or places the run and its seed."""
    values: dict[str, Any] = field(default_factory=dict)
    """The grid point's axis values (none outside a grid)."""
    selected_on: str = "-"
    """Where ``best`` was chosen: ``validation``, or ``test (paper protocol)`` (the val loader read test)."""

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
            "best chosen on": self.selected_on,
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


RUN_ONLY = ("seed_everything", "ckpt_path", "trainer.logger", "trainer.default_root_dir", "prediction_writer")
"""Config keys (and prefixes) that name or place a run, or pick its seed: not part of what a group shares."""


def experiment_config(config: dict[str, Any], root: Path | None = None) -> dict[str, Any]:
    """What a run shares with the other seeds of its group: its flattened config less :data:`RUN_ONLY` and
    any path inside its own run root (the run layer's checkpoint folders)."""
    return {
        key: value
        for key, value in flatten(config).items()
        if not any(key == k or key.startswith(f"{k}.") for k in RUN_ONLY)
        and not key.endswith(".dirpath")  # checkpoint folders: the run layer puts them in the run
        and not (root is not None and isinstance(value, str) and value.startswith(str(root)))
    }


def _same(a: Any, b: Any) -> bool:
    """Values equal as configs write them (``0.25`` and ``'0.25'`` from a command line are one value)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str) or str(
        a
    ) == str(b)


def check_point_run(run: Run, point: str, values: dict[str, Any], config: dict[str, Any]) -> None:
    """A grid point's run must have been trained with the point's values: another grid's run in its folder
    would be reported, and averaged, as this grid's."""
    flat = flatten(config)
    for key, value in values.items():
        if key in flat and not _same(flat[key], value):
            raise InputError(
                f"run {run.folder} under grid point {point} was trained with {key}={flat[key]!r}, not "
                f"{value!r}: it belongs to another grid; move it out, or report it on its own"
            )


def read_record(run: Run, name: str | None = None, values: dict[str, Any] | None = None) -> RunRecord:
    logs = read_run(run)
    if values and logs.config:
        check_point_run(run, name or run.folder.name, values, logs.config)
    settings, seed = _settings(logs.config, values)
    record = RunRecord(name or run.folder.name, run.folder, logs.status, settings, seed, logs=logs)
    record.experiment = experiment_config(logs.config, run.folder.parent)
    record.values = dict(values or {})
    record.params = _params(logs.hparams)
    if VAL_ACC1 in logs.scalars:
        steps, accuracy = logs.scalars[VAL_ACC1]
        epoch_steps, epoch_values = logs.scalars.get(EPOCH, logs.scalars.get("epoch", ([], [])))
        by_step = dict(zip(np.asarray(epoch_steps).tolist(), np.asarray(epoch_values).tolist(), strict=True))
        record.accuracies = accuracy.tolist()
        record.epochs = [int(by_step.get(step, i)) for i, step in enumerate(steps.tolist())]
    record.wall_time_s = logs.wall_time_s
    chosen = (logs.result or {}).get("best_selected_on")
    record.selected_on = {"test": "test (paper protocol)"}.get(chosen, chosen or "-")
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
                run = newest_run(folder / point["name"])  # where the grid put it, wherever the grid moved
                if run is None:
                    settings, seed = _settings({}, point["values"])
                    records.append(
                        RunRecord(point["name"], None, "pending", settings, seed, values=point["values"])
                    )
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


@dataclass
class Group:
    """Runs that share every setting but the seed: a mean, its interval, and the runs behind it."""

    settings: dict[str, Any]
    split: dict[str, Any]
    """Keys whose values set this group apart from another with the same settings (epochs, say)."""
    runs: list[RunRecord]
    """Finished runs with a ``val/acc1``."""
    not_finished: int = 0
    without_metrics: int = 0

    @property
    def label(self) -> str:
        parts = [str(self.settings[key]) for key in ("attention", "pool") if self.settings.get(key) != "-"]
        parts += [f"{key}={value}" for key, value in self.split.items()]
        return "-".join(parts[:2]) + "".join(f" ({part})" for part in parts[2:])

    def best_by_seed(self) -> dict[Any, float]:
        return {run.seed: run.best for run in self.runs if run.best is not None}

    def summary(self, metric: str = "best") -> GroupSummary:
        return summarize_group([getattr(run, metric) for run in self.runs])

    def matches(self, baseline: dict[str, Any]) -> bool:
        """Whether every run and point of the group has the ``baseline`` values (axis values, settings or
        config keys)."""
        run = self.runs[0] if self.runs else None
        for key, value in baseline.items():
            have = [r.values[key] for r in self.runs if key in r.values]
            if not have and run is not None:
                have = [run.experiment[key]] if key in run.experiment else [run.settings.get(key)]
            if not have or not all(_same(v, value) for v in have):
                return False
        return True


def group(records: Sequence[RunRecord]) -> list[Group]:
    """Groups of runs equal in everything but the seed. Runs with the same settings columns that differ in
    anything else (epochs, recipe, data) form separate groups, labelled by the keys that split them: no
    mean is taken over unlike runs. Unfinished runs and finished runs without metrics are counted."""
    by_settings: dict[tuple, list[RunRecord]] = {}
    for record in records:
        by_settings.setdefault(tuple(record.settings.get(k) for k in SETTINGS), []).append(record)
    groups = []
    for key, members in by_settings.items():
        settings = dict(zip(SETTINGS, key, strict=True))
        finished = [r for r in members if r.status == "finished"]
        measured = [r for r in finished if r.best is not None]
        variants: dict[str, list[RunRecord]] = {}
        for record in measured:
            variants.setdefault(json.dumps(record.experiment, sort_keys=True, default=str), []).append(record)
        configs = [runs[0].experiment for runs in variants.values()]
        splitting = sorted(
            k for k in set().union(*configs) if len({json.dumps(c.get(k), default=str) for c in configs}) > 1
        )
        rest = len(members) - len(finished), len(finished) - len(measured)
        for i, runs in enumerate(variants.values() or [[]]):
            split = {k: runs[0].experiment.get(k) for k in splitting} if runs else {}
            groups.append(Group(settings, split, runs, *(rest if i == 0 else (0, 0))))
    return groups


def group_rows(groups: Sequence[Group]) -> list[dict[str, Any]]:
    """One row per group, numbers as numbers (``groups.csv``)."""
    rows = []
    for g in groups:
        row: dict[str, Any] = {**g.settings, "split by": ", ".join(f"{k}={v}" for k, v in g.split.items())}
        row["best chosen on"] = g.runs[0].selected_on if g.runs else "-"
        for metric in ("best", "final"):
            summary = g.summary(metric)
            row["n"] = summary.n
            for stat in ("mean", "std", "low", "high"):
                row[f"{metric} {VAL_ACC1} {stat}"] = getattr(summary, stat)
        rows.append({**row, "not finished": g.not_finished, "no metrics": g.without_metrics})
    return rows


def _ci(row: dict[str, Any], metric: str) -> str:
    mean, low, high = (row[f"{metric} {VAL_ACC1} {stat}"] for stat in ("mean", "low", "high"))
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f}" if math.isnan(low) else f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def group_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`group_rows` as people read them (``report.md``)."""
    return [
        {
            **{key: row[key] for key in SETTINGS},
            "split by": row["split by"] or "-",
            "best chosen on": row["best chosen on"],
            "n": row["n"],
            f"best {VAL_ACC1} mean [95% CI]": _ci(row, "best"),
            "std": "-" if math.isnan(row[f"best {VAL_ACC1} std"]) else f"{row[f'best {VAL_ACC1} std']:.4f}",
            f"final {VAL_ACC1} mean [95% CI]": _ci(row, "final"),
            "not finished": row["not finished"],
            "no metrics": row["no metrics"],
        }
        for row in rows
    ]


def parse_baseline(text: str | None) -> dict[str, Any] | None:
    """``model.attention=se,model.pool=avg`` -> ``{"model.attention": "se", "model.pool": "avg"}``."""
    if not text:
        return None
    baseline = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--baseline {text!r} is not key=value[,key=value...] (e.g. model.attention=se)")
        baseline[key.strip()] = value.strip()
    return baseline


def compared_axes(records: Sequence[RunRecord]) -> set[str]:
    """The keys arms may differ in: a grid's axes (less the seed), else the model's attention settings."""
    axes = {key for record in records for key in record.values if key != "seed_everything"}
    return axes or {"model.attention", "model.pool", "model.attention_kwargs", "model.backbone"}


def comparisons(groups: Sequence[Group], baseline: dict[str, Any], axes: set[str]) -> tuple[Group, list]:
    """The baseline group and every other group against it, paired by seed, Holm-adjusted and judged."""
    found = [g for g in groups if g.runs and g.matches(baseline)]
    wanted = ",".join(f"{k}={v}" for k, v in baseline.items())
    if not found:
        labels = ", ".join(g.label for g in groups if g.runs) or "none with finished runs"
        raise InputError(f"baseline {wanted} matches no group of finished runs; the groups: {labels}")
    if len(found) > 1:
        raise InputError(
            f"baseline {wanted} matches {len(found)} groups ({', '.join(g.label for g in found)}); "
            "name more keys to pick one"
        )
    (base,) = found
    arms = [g for g in groups if g is not base and g.runs]
    for arm in arms:
        extra = sorted(
            key
            for key in set(arm.runs[0].experiment) | set(base.runs[0].experiment)
            if not any(key == a or key.startswith(f"{a}.") for a in axes)
            and not _same(arm.runs[0].experiment.get(key), base.runs[0].experiment.get(key))
        )
        if extra:
            key = extra[0]
            mine, theirs = arm.runs[0].experiment.get(key), base.runs[0].experiment.get(key)
            raise InputError(
                f"group {arm.label} differs from the baseline in {key} ({mine!r} vs {theirs!r}), which is "
                f"not a compared axis ({', '.join(sorted(axes))}); report such runs separately"
            )
    judged = judge([compare_paired(arm.best_by_seed(), base.best_by_seed()) for arm in arms])
    return base, list(zip(arms, judged, strict=True))


def comparison_rows(pairs: Sequence[tuple[Group, Comparison]]) -> list[dict[str, Any]]:
    """One row per arm against the baseline, numbers as numbers (``comparisons.csv``)."""
    return [
        {
            "arm": arm.label,
            "pairs": c.pairs,
            "difference": c.difference,
            "ci low": c.low,
            "ci high": c.high,
            "p t": c.p_t,
            "p wilcoxon": c.p_wilcoxon,
            "p holm": c.p_holm,
            "verdict": c.verdict,
        }
        for arm, c in pairs
    ]


def comparison_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`comparison_rows` as people read them: differences in points of accuracy."""

    def p(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.3g}"

    return [
        {
            "arm": row["arm"],
            "pairs": row["pairs"],
            "difference (points)": "-"
            if math.isnan(row["difference"])
            else f"{100 * row['difference']:+.2f}",
            "95% CI": "-"
            if math.isnan(row["ci low"])
            else f"[{100 * row['ci low']:+.2f}, {100 * row['ci high']:+.2f}]",
            "p (paired t)": p(row["p t"]),
            "p (Wilcoxon)": p(row["p wilcoxon"]),
            "p (Holm)": p(row["p holm"]),
            "verdict": row["verdict"],
        }
        for row in rows
    ]


def accuracy_figure(groups: Sequence[Group]) -> Figure:
    """Best val/acc1 by pool, one line per attention: group means with their 95 % t intervals."""
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.subplots()
    shown = [g for g in groups if g.runs]
    pools = list(dict.fromkeys(str(g.settings["pool"]) for g in shown))
    attentions = list(dict.fromkeys(g.settings["attention"] for g in shown))
    for k, attention in enumerate(attentions):
        mine = {str(g.settings["pool"]): g.summary() for g in shown if g.settings["attention"] == attention}
        xs = [i for i, pool in enumerate(pools) if pool in mine]
        means = np.array([mine[pools[i]].mean for i in xs])
        half = np.nan_to_num(np.array([mine[pools[i]].high for i in xs]) - means)
        shift = 0.08 * (k - (len(attentions) - 1) / 2)  # side by side: intervals do not hide each other
        ax.errorbar(np.array(xs) + shift, means, yerr=half, marker="o", capsize=3, label=attention)
    ax.set_xticks(range(len(pools)), pools)
    ax.set(xlabel="pool", ylabel="best val top-1 (mean, 95% CI)")
    ax.legend(fontsize="small", title="attention")
    return fig


def forest_figure(base: Group, pairs: Sequence[tuple[Group, Comparison]]) -> Figure:
    """Each arm's paired difference from the baseline with its 95 % interval; the baseline's seed-to-seed
    std as a band around zero (the noise floor)."""
    fig = Figure(figsize=(7, 0.4 * len(pairs) + 1.4), layout="constrained")
    ax = fig.subplots()
    noise = base.summary().std
    if not math.isnan(noise):
        ax.axvspan(-100 * noise, 100 * noise, color="0.9", label="baseline seed std")
    ax.axvline(0, color="0.4", linewidth=1)
    for y, (_, c) in enumerate(pairs):
        if math.isnan(c.difference):
            continue
        colour = {"better": "tab:green", "worse": "tab:red"}.get(c.verdict, "tab:gray")
        low, high = (c.low, c.high) if not math.isnan(c.low) else (c.difference, c.difference)
        ax.errorbar(100 * c.difference, y, xerr=[[100 * (c.difference - low)], [100 * (high - c.difference)]],
                    fmt="o", color=colour, capsize=3)  # fmt: skip
    ax.set_yticks(range(len(pairs)), [arm.label for arm, _ in pairs])
    ax.invert_yaxis()
    ax.set(xlabel=f"paired difference from {base.label} (points of best val top-1, 95% CI)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_baseline(folders: Sequence[str | Path], given: str | None) -> dict[str, Any] | None:
    """``--baseline``, else the one a grid file named (``grid.json``)."""
    if given:
        return parse_baseline(given)
    for folder in map(Path, folders):
        manifest = folder / GRID_MANIFEST
        if manifest.is_file():
            named = json.loads(manifest.read_text()).get("baseline")
            if named:
                return named
    return None


def report(
    folders: Sequence[str | Path], output: str | Path | None = None, baseline: str | None = None
) -> dict[str, Path]:
    """Write the report of ``folders`` into ``output`` (default ``<first folder>/report``); its files."""
    records = load_runs(*folders)
    groups = group(records)
    wanted = read_baseline(folders, baseline)
    compared = comparisons(groups, wanted, compared_axes(records)) if wanted else None  # before any write
    out = Path(output) if output is not None else Path(folders[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    data = {"runs": [record.row() for record in records], "groups": group_rows(groups)}
    if compared is not None:
        data["comparisons"] = comparison_rows(compared[1])
    written = {}
    for name, rows in data.items():
        if not rows:
            continue
        written[f"{name}.csv"] = out / f"{name}.csv"
        _write_csv(written[f"{name}.csv"], rows)
    tables = {"runs": data["runs"], "groups": group_table(data["groups"])}
    if compared is not None:
        tables["comparisons"] = comparison_table(data["comparisons"])
    written["accuracy_by_pool.png"] = save_figure(accuracy_figure(groups), out / "accuracy_by_pool.png")
    if compared is not None and compared[1]:
        written["differences.png"] = save_figure(forest_figure(*compared), out / "differences.png")
    lam = plot_final_lam([record.logs for record in records if record.logs is not None])
    if lam is not None:
        written["lam_by_depth.png"] = save_figure(lam, out / "lam_by_depth.png")
    text = report_text(tables, compared, sorted(name for name in written if name.endswith(".png")))
    written["report.md"] = out / "report.md"
    written["report.md"].write_text(text)
    print(text)
    print(f"report written to {out}: {', '.join(sorted(written))}")
    return written


def report_text(
    tables: dict[str, list[dict[str, Any]]], compared: tuple[Group, list] | None, figures: list[str]
) -> str:
    """The report as one Markdown file: the tables, what each selection means, the figures beside it."""
    parts = [
        "## Runs\n",
        markdown_table(tables["runs"]),
        f"\n`best {VAL_ACC1}` is the highest validation accuracy over the epochs; `best chosen on` says "
        "which split that was: a held-out `validation` split, or `test (paper protocol)` where the "
        "validation loader read the test split (the reference code's protocol: selecting on the set it "
        f"reports overstates every arm). `final {VAL_ACC1}` is the last epoch's.\n",
        "## Groups: runs equal in everything but the seed\n",
        markdown_table(tables["groups"]),
        "\nMean over seeds with its 95 % t interval, and the sample std. Runs that differ in more than the "
        "seed are never averaged together: `split by` names the keys that set a group apart.\n",
    ]
    if compared is not None:
        base, pairs = compared
        noise = base.summary().std
        parts += [
            f"## Against the baseline {base.label}, paired by seed\n",
            markdown_table(tables["comparisons"]) if pairs else "(no other group has finished runs)",
            f"\nDifference: arm minus baseline over the seeds both ran (points of best {VAL_ACC1}), with its "
            "95 % t interval; p-values of the paired t-test and the Wilcoxon signed-rank test, and the "
            "t-test's adjusted by Holm across this table's comparisons. `better`/`worse`: Holm-adjusted "
            "p <= 0.05. Noise floor, the baseline's seed-to-seed std: "
            f"{'-' if math.isnan(noise) else f'{100 * noise:.2f} points'}.\n",
        ]
    parts += [f"![{name}]({name})\n" for name in figures]
    return "\n".join(parts) + "\n"


def main(args: list[str]) -> dict[str, Path]:
    """``python -m spe_lightning report <folder> [<folder> ...] [--output DIR] [--baseline K=V,...]``."""
    parser = ToolArgumentParser(prog="python -m spe_lightning report", description=__doc__.split("\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="the arguments as a YAML file")
    parser.add_argument("folders", nargs="+", help="runs or grid folders (e.g. runs/digits_smoke)")
    parser.add_argument("--output", default=None, help="folder for the report (default <folder>/report)")
    parser.add_argument(
        "--baseline",
        default=None,
        help="the arm to compare every other with, seed by seed, e.g. model.attention=se,model.pool=avg "
        "(default: the grid file's baseline, if it names one)",
    )
    config = parser.parse_args(args)
    return report(config.folders, config.output, config.baseline)
