"""``python -m spe_lightning report <runs or grid folder>``: runs, groups with intervals, paired comparisons.

Sources, all written by the runs themselves and read by :mod:`spe_lightning.analysis.reader`: a run's
settings come from the ``config.yaml`` it started with, its parameter count from the model its
``hparams.yaml`` rebuilds, its metrics from its TensorBoard events (``val/acc1`` per epoch, Lightning's
``epoch`` scalar, wall times) and its status from the run layer (finished, running, interrupted, failed).
In a grid folder the manifest (``grid.json``) lists every point, so a point that never started shows as
``pending``: no run is dropped silently. Groups are runs equal in everything but the seed (finished runs
with metrics); against a baseline, arms are compared seed by seed (:mod:`spe_lightning.analysis.statistics`).

Writes ``runs.csv``, ``groups.csv``, ``comparisons.csv`` (with a baseline), ``report.md`` (all of it, with
the figures) and the figures ``accuracy_by_pool.png``, ``accuracy_by_lam.png`` (max/min grids),
``differences.png`` and ``lam_by_depth.png`` into ``<folder>/report`` (or ``--output``), replacing an
earlier report there.
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
from spe_lightning.analysis.published import PAPER_PROTOCOL, published_result
from spe_lightning.analysis.reader import RunData, read_run
from spe_lightning.analysis.statistics import Comparison, GroupSummary, compare_paired, judge, summarize_group
from spe_lightning.analysis.tables import markdown_table
from spe_lightning.cli.parser import ToolArgumentParser
from spe_lightning.core.errors import InputError, MissingInput
from spe_lightning.models import count_flops, count_parameters
from spe_lightning.runs.layout import GRID_MANIFEST, Run, find_runs, newest_run
from spe_lightning.runs.log_names import EPOCH, VAL_ACC1
from spe_lightning.runs.naming import attention_label, dataset_label, pool_label_of
from spe_lightning.training.identity import flatten

SETTINGS = ("dataset", "backbone", "depth", "attention", "pool")
REPORTED_SELECTED = "test top-1, val-selected"
"""The test accuracy of the checkpoint chosen on a held-out validation split."""


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
    result: dict[str, Any] = field(default_factory=dict)
    """What the fit reported when it finished (``result.json``)."""
    flops: int | None = None

    @property
    def best(self) -> float | None:
        return max(self.accuracies) if self.accuracies else None

    @property
    def best_epoch(self) -> int | None:
        return self.epochs[int(np.argmax(self.accuracies))] if self.accuracies else None

    @property
    def final(self) -> float | None:
        return self.accuracies[-1] if self.accuracies else None

    @property
    def test_selected(self) -> float | None:
        """Test top-1 of the checkpoint chosen on a held-out validation split."""
        return self.result.get("test_acc1_selected")

    @property
    def test_last(self) -> float | None:
        """Test top-1 of the last epoch."""
        return self.result.get("test_acc1_last")

    @property
    def reported(self) -> float | None:
        """The run's accuracy for groups and comparisons: the test top-1 of the checkpoint chosen on
        validation where there is one, else the best epoch's (on test under the paper's protocol)."""
        return self.test_selected if self.test_selected is not None else self.best

    @property
    def reported_as(self) -> str:
        if self.test_selected is not None:
            return REPORTED_SELECTED
        return PAPER_PROTOCOL if self.result.get("best_selected_on") == "test" else f"best {VAL_ACC1}"

    @property
    def img_per_s(self) -> float | None:
        return self.result.get("train_img_per_s")

    def row(self) -> dict[str, Any]:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.4f}"

        return {
            "run": self.name,
            **{key: self.settings.get(key, "-") for key in SETTINGS},
            "seed": self.seed if self.seed is not None else "-",
            f"best {VAL_ACC1}": fmt(self.best),
            "best chosen on": self.selected_on,
            "best epoch": self.best_epoch if self.best_epoch is not None else "-",
            f"final {VAL_ACC1}": fmt(self.final),
            REPORTED_SELECTED: fmt(self.test_selected),
            "test top-1, last epoch": fmt(self.test_last),
            PAPER_PROTOCOL: fmt(self.best if self.result.get("best_selected_on") == "test" else None),
            "epochs": len(self.accuracies),
            "params": self.params if self.params is not None else "-",
            "MFLOPs": "-" if self.flops is None else f"{self.flops / 1e6:.2f}",
            "train img/s": "-" if self.img_per_s is None else f"{self.img_per_s:.0f}",
            "devices": self.result.get("train_devices") or "-",
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


_COSTS: dict[str, tuple[int, int | None]] = {}


def _cost(hparams: dict[str, Any], input_shape: Sequence[int] | None) -> tuple[int | None, int | None]:
    """Parameters and forward FLOPs per image of the network a run's model arguments rebuild (cached:
    seeds share a model); no FLOPs without the input shape the fit recorded."""
    if not hparams:
        return None, None
    from spe_lightning.training.classifier import ImageClassifier  # torch models: only when a run is read

    kwargs = {k: v for k, v in hparams.items() if not k.startswith("_")}  # LightningCLI's _instantiator
    kwargs.pop("compile", None)  # no compile for a count
    key = json.dumps([kwargs, input_shape], sort_keys=True, default=str)
    if key not in _COSTS:
        net = ImageClassifier(**kwargs).net
        flops = count_flops(net, tuple(input_shape)) if input_shape else None
        _COSTS[key] = count_parameters(net), flops
    return _COSTS[key]


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
    record.result = dict(logs.result or {})
    record.params, record.flops = _cost(logs.hparams, record.result.get("input_shape"))
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

    def reported_by_seed(self) -> dict[Any, float]:
        return {run.seed: run.reported for run in self.runs if run.reported is not None}

    @property
    def reported_as(self) -> str:
        """How the group's accuracy was chosen (one protocol per group: its runs share their config)."""
        return self.runs[0].reported_as if self.runs else "-"

    def summary(self, metric: str = "reported") -> GroupSummary:
        return summarize_group([value for run in self.runs if (value := getattr(run, metric)) is not None])

    def mean_of(self, attribute: str) -> float | None:
        values = [value for run in self.runs if (value := getattr(run, attribute)) is not None]
        return float(np.mean(values)) if values else None

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


GROUP_METRICS = {"reported": "accuracy", "test_last": "test top-1, last epoch", "best": f"best {VAL_ACC1}"}
"""Per-run figures a group summarises -> their column names: the reported accuracy (named by how it was
chosen, ``reported as``), the last epoch's test accuracy, the best validation epoch."""


def group_rows(groups: Sequence[Group]) -> list[dict[str, Any]]:
    """One row per group, numbers as numbers (``groups.csv``)."""
    rows = []
    for g in groups:
        row: dict[str, Any] = {**g.settings, "split by": ", ".join(f"{k}={v}" for k, v in g.split.items())}
        row["reported as"] = g.reported_as
        row["n"] = g.summary().n
        for metric, name in GROUP_METRICS.items():
            summary = g.summary(metric)
            for stat in ("mean", "std", "low", "high"):
                row[f"{name} {stat}"] = getattr(summary, stat)
        published = published_result(g.settings, g.runs[0].experiment) if g.runs else None
        row["published"] = published[0] if published else None
        row["published as"] = published[1] if published else ""
        params, flops = (g.runs[0].params, g.runs[0].flops) if g.runs else (None, None)
        row.update({"params": params, "FLOPs": flops, "train img/s": g.mean_of("img_per_s")})
        rows.append({**row, "not finished": g.not_finished, "no metrics": g.without_metrics})
    return rows


def _ci(row: dict[str, Any], name: str) -> str:
    mean, low, high = (row[f"{name} {stat}"] for stat in ("mean", "low", "high"))
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f}" if math.isnan(low) else f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def group_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`group_rows` as people read them (``report.md``)."""
    accuracy = GROUP_METRICS["reported"]
    return [
        {
            **{key: row[key] for key in SETTINGS},
            "split by": row["split by"] or "-",
            "reported as": row["reported as"],
            "n": row["n"],
            f"{accuracy} mean [95% CI]": _ci(row, accuracy),
            "std": "-" if math.isnan(row[f"{accuracy} std"]) else f"{row[f'{accuracy} std']:.4f}",
            **{f"{name} mean [95% CI]": _ci(row, name) for name in list(GROUP_METRICS.values())[1:]},
            "published": "-" if row["published"] is None else f"{row['published']:.4f}",
            "params": "-" if row["params"] is None else f"{row['params']:,}",
            "MFLOPs": "-" if row["FLOPs"] is None else f"{row['FLOPs'] / 1e6:.2f}",
            "train img/s": "-" if row["train img/s"] is None else f"{row['train img/s']:.0f}",
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
    judged = judge([compare_paired(arm.reported_by_seed(), base.reported_by_seed()) for arm in arms])
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
    """The reported accuracy by pool, one line per attention: group means with their 95 % t intervals."""
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
    ax.set(xlabel="pool", ylabel=f"{shown[0].reported_as if shown else 'accuracy'}\n(mean, 95% CI)")
    if attentions:  # a grid with no finished run yet draws an empty chart, without a legend
        ax.legend(fontsize="small", title="attention")
    return fig


LAM_OF_POOL = {"min": 0.0, "max": 1.0}
"""Pools on the max/min line: ``maxmin@<lam>`` is ``lam * max + (1 - lam) * min``, and lam = 0 and 1 are
min and max pooling alone."""


def lam_of(pool: Any) -> float | None:
    """Where a pool sits on the max/min line (``maxmin@0.25`` -> 0.25), None off it."""
    text = str(pool)
    if text in LAM_OF_POOL:
        return LAM_OF_POOL[text]
    name, _, value = text.partition("@")
    try:
        return float(value) if name == "maxmin" else None
    except ValueError:
        return None


def lam_figure(groups: Sequence[Group]) -> Figure | None:
    """The phenomenon grid's picture: accuracy against lam for each attention, means with 95 % t bands,
    and the same attention with average pooling as a horizontal band. None without two points on the line."""
    shown = [g for g in groups if g.runs and not g.split]
    attentions = [
        a for a in dict.fromkeys(g.settings["attention"] for g in shown)
        if sum(lam_of(g.settings["pool"]) is not None for g in shown if g.settings["attention"] == a) >= 2
    ]  # fmt: skip
    if not attentions:
        return None
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for k, attention in enumerate(attentions):
        colour = f"C{k}"
        mine = [g for g in shown if g.settings["attention"] == attention]
        on_line = [(lam_of(g.settings["pool"]), g.summary()) for g in mine]
        line = sorted([(lam, summary) for lam, summary in on_line if lam is not None], key=lambda x: x[0])
        lams = np.array([lam for lam, _ in line])
        means = np.array([summary.mean for _, summary in line])
        ax.plot(lams, means, marker="o", color=colour, label=f"{attention}, max/min mix")
        low, high = (np.array([getattr(summary, b) for _, summary in line]) for b in ("low", "high"))
        if not np.isnan(low).all():
            ax.fill_between(lams, low, high, color=colour, alpha=0.2)
        average = next((g.summary() for g in mine if g.settings["pool"] == "avg"), None)
        if average is not None:
            ax.axhline(average.mean, color=colour, linestyle="--", label=f"{attention}, avg pool")
            if not math.isnan(average.low):
                ax.axhspan(average.low, average.high, color=colour, alpha=0.08)
    ax.set_xlim(-0.05, 1.05)
    ax.set(xlabel="lam (0: min pooling, 1: max pooling)", ylabel=f"{shown[0].reported_as}\n(mean, 95% CI)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
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
    ax.set(xlabel=f"paired difference from {base.label}\n(points of {base.reported_as}, 95% CI)")
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
    by_lam = lam_figure(groups)
    if by_lam is not None:
        written["accuracy_by_lam.png"] = save_figure(by_lam, out / "accuracy_by_lam.png")
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
        f"reports overstates every arm). `final {VAL_ACC1}` is the last epoch's. With a held-out split, the "
        f"fit then tests the chosen checkpoint (`{REPORTED_SELECTED}`) and the last epoch's weights.\n",
        "## Groups: runs equal in everything but the seed\n",
        markdown_table(tables["groups"]),
        "\nMean over seeds with its 95 % t interval, and the sample std. Runs that differ in more than the "
        "seed are never averaged together: `split by` names the keys that set a group apart. `accuracy` "
        f"is each run's `reported as`: the `{REPORTED_SELECTED}` where a held-out validation split chose "
        f"the checkpoint, else the best epoch (`{PAPER_PROTOCOL}` where the validation loader read the "
        "test split). `published`: the paper's single run for the same network and recipe, chosen on "
        f"test ({PAPER_PROTOCOL}). Cost: parameters, forward FLOPs per image, and training images per "
        "second over the steady-state steps (the run's devices are in the runs table).\n",
    ]
    if compared is not None:
        base, pairs = compared
        noise = base.summary().std
        parts += [
            f"## Against the baseline {base.label}, paired by seed\n",
            markdown_table(tables["comparisons"]) if pairs else "(no other group has finished runs)",
            "\nDifference: arm minus baseline over the seeds both ran (points of "
            f"{base.reported_as}), with its 95 % t interval; p-values of the paired t-test and the Wilcoxon "
            "signed-rank test, and the t-test's adjusted by Holm across this table's comparisons. "
            "`better`/`worse`: Holm-adjusted p <= 0.05. Noise floor, the baseline's seed-to-seed std: "
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
