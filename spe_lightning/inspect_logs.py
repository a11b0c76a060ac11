"""Read a run's TensorBoard logs back and plot SPEM's learned pooling weights (lam per block).

Shared by :class:`~spe_lightning.callbacks.PoolingMonitor` (the figure it logs every epoch) and the
notebooks in ``notebooks/`` (which read finished runs), so both draw the same pictures. Figures are
standalone ``matplotlib.figure.Figure`` objects rendered by Agg, never pyplot's global state: the callback
is safe in any process and backend, and notebooks display them inline.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from spe_lightning.runs import EVAL, newest_run

LAM = "lam"
"""Tag prefix of the learned pooling weights: ``lam/<stage>/<block>`` (see :func:`block_tag`)."""
TRAIN_LOSS_TAGS = ("train/loss_step", "train/loss")
VAL_ACC_TAG = "val/acc1"
LAM_LABEL = "lam (weight of max pooling)"

Series = tuple[np.ndarray, np.ndarray]
"""(steps, values) of one scalar tag, in step order."""


def block_tag(prefix: str, block: str) -> str:
    """``("lam", "layer1.0")`` -> ``lam/layer1/0``; TensorBoard groups charts by the first component."""
    return f"{prefix}/{block.replace('.', '/')}"


def stage_of(block: str) -> str:
    """``layer1.0`` -> ``layer1``: the stage is the block's parent module (a lone block is its own)."""
    return block.rpartition(".")[0] or block


def natural_key(name: str) -> list[Any]:
    """Sort key reading digit runs as numbers, so ``layer1.10`` follows ``layer1.9`` (depth order)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def find_runs(root: str | Path) -> list[Path]:
    """Every training run under ``root`` (itself included) with TensorBoard events, oldest first.

    Evaluations (``<run>/eval/...``, see :mod:`spe_lightning.runs`) are not runs of their own.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"run root {str(root)!r} is not a directory")
    events = (event for event in root.rglob("events.out.tfevents.*"))
    folders = {event.parent for event in events if EVAL not in event.relative_to(root).parts}
    return sorted(folders, key=lambda folder: max(f.stat().st_mtime for f in folder.glob("events.out.*")))


def latest_run(root: str | Path) -> Path:
    """The newest run under ``root``: ``runs/quickstart`` -> its highest ``version_N``, as ``fit --ckpt_path
    last`` counts (else the most recently written run below ``root``)."""
    newest = newest_run(Path(root))
    if newest is not None:
        return newest.folder
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no TensorBoard event files under {str(root)!r}; train a run first")
    return runs[-1]


@dataclass
class Run:
    """The scalars and hyperparameters one training run logged."""

    path: Path
    scalars: dict[str, Series]
    hparams: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``attention/pool (version)``, e.g. ``spem/learned (version_0)``; the folder name if unknown."""
        if "attention" not in self.hparams:
            return self.path.name
        pool = self.hparams.get("pool") or "default"
        return f"{self.hparams['attention']}/{pool} ({self.path.name})"

    @property
    def lam(self) -> dict[str, Series]:
        """lam series per block name (``layer1.0``), in depth order; empty without learned pooling."""
        prefix = f"{LAM}/"
        blocks = {
            tag[len(prefix) :].replace("/", "."): s
            for tag, s in self.scalars.items()
            if tag.startswith(prefix)
        }
        return {block: blocks[block] for block in sorted(blocks, key=natural_key)}

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


def read_run(run_dir: str | Path) -> Run:
    """Load every scalar of a run folder (all points: size guidance 0) and its ``hparams.yaml``."""
    run_dir = Path(run_dir)
    if not any(run_dir.glob("events.out.tfevents.*")):
        raise FileNotFoundError(f"no TensorBoard event file in {str(run_dir)!r}")
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    scalars = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        scalars[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    hparams_file = run_dir / "hparams.yaml"
    hparams = yaml.safe_load(hparams_file.read_text()) if hparams_file.exists() else {}
    return Run(run_dir, scalars, hparams or {})


def _stage_bounds(blocks: Sequence[str]) -> list[tuple[str, int, int]]:
    """(stage, first index, last index) of each run of consecutive blocks in the same stage."""
    bounds: list[tuple[str, int, int]] = []
    for i, block in enumerate(blocks):
        stage = stage_of(block)
        if bounds and bounds[-1][0] == stage:
            bounds[-1] = (stage, bounds[-1][1], i)
        else:
            bounds.append((stage, i, i))
    return bounds


def plot_lam_vs_depth(ax: Axes, blocks: Sequence[str], lams: Sequence[float], **line_kwargs: Any) -> None:
    """lam of every block against its depth (block index), stages separated by dotted lines."""
    ax.plot(np.arange(len(blocks)), lams, marker="o", markersize=3, **line_kwargs)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    for stage, first, last in _stage_bounds(blocks):
        if first:
            ax.axvline(first - 0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.text((first + last) / 2, 1.0, stage, transform=ax.get_xaxis_transform(), ha="center", va="bottom")
    ax.set_xlabel("block (depth)")
    ax.set_ylabel(LAM_LABEL)


def plot_lam_heatmap(
    ax: Axes, blocks: Sequence[str], epochs: Sequence[int], history: np.ndarray
) -> AxesImage:
    """lam of every block (rows) at the end of every epoch (columns), centred on the even mix 0.5."""
    spread = max(float(np.abs(history - 0.5).max()), 1e-3)
    image = ax.imshow(
        history.T,
        aspect="auto",
        cmap="RdBu_r",
        norm=Normalize(0.5 - spread, 0.5 + spread),
        interpolation="nearest",
        extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(blocks) - 0.5, -0.5),
    )
    bounds = _stage_bounds(blocks)
    for _, first, _ in bounds[1:]:
        ax.axhline(first - 0.5, color="black", linewidth=0.8)
    ax.set_yticks([(first + last) / 2 for _, first, last in bounds], [stage for stage, _, _ in bounds])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    return image


def lam_figure(blocks: Sequence[str], epochs: Sequence[int], history: np.ndarray) -> Figure:
    """The callback's per-epoch picture: lam against depth now, and lam per block over the epochs so far.

    ``history`` is epochs x blocks. Fixed margins instead of a layout engine keep it at ~0.1 s per epoch.
    """
    fig = Figure(figsize=(10, 3.6))
    fig.subplots_adjust(left=0.07, right=0.93, bottom=0.14, top=0.86, wspace=0.22)
    depth_ax, heat_ax = fig.subplots(1, 2)
    plot_lam_vs_depth(depth_ax, blocks, history[-1])
    depth_ax.set_title(f"epoch {epochs[-1]}", pad=14)
    image = plot_lam_heatmap(heat_ax, blocks, epochs, history)
    heat_ax.set_title("lam per block and epoch", pad=14)
    fig.colorbar(image, ax=heat_ax, label="lam")
    return fig


def plot_lam_over_steps(run: Run) -> Figure:
    """lam of every block against training steps: one panel per stage, lines coloured by depth."""
    series = run.lam
    if not series:
        raise ValueError(f"run {run.path} logged no {LAM}/* scalars: its model has no learned pooling")
    blocks = list(series)
    bounds = _stage_bounds(blocks)
    fig = Figure(figsize=(4 * len(bounds), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(bounds), sharey=True))
    colour = ScalarMappable(Normalize(0, max(len(blocks) - 1, 1)), "viridis")
    for ax, (stage, first, last) in zip(axes, bounds, strict=True):
        for i in range(first, last + 1):
            steps, values = series[blocks[i]]
            ax.plot(steps, values, color=colour.to_rgba(i), linewidth=1.2)
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(stage)
        ax.set_xlabel("step")
    axes[0].set_ylabel(LAM_LABEL)
    fig.colorbar(colour, ax=list(axes), label="block (depth)")
    return fig


def plot_final_lam(runs: Sequence[Run]) -> Figure:
    """The last logged lam against depth, one line per run that has learned pooling."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.subplots()
    for run in runs:
        blocks, lams = run.final_lams()
        if blocks:
            plot_lam_vs_depth(ax, blocks, lams, label=run.label)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_training_curves(runs: Sequence[Run]) -> Figure:
    """Training loss and validation top-1 against steps, one line per run."""
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for run in runs:
        loss_ax.plot(*run.scalar(*TRAIN_LOSS_TAGS), label=run.label, linewidth=1)
        acc_ax.plot(*run.scalar(VAL_ACC_TAG), marker="o", markersize=3, label=run.label)
    loss_ax.set(xlabel="step", ylabel="train loss", yscale="log")
    acc_ax.set(xlabel="step", ylabel="val top-1")
    acc_ax.legend(fontsize="small")
    return fig


def summary_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per run: model, best and last val top-1, and the spread of its final lams."""
    rows = []
    for run in runs:
        _, acc = run.scalar(VAL_ACC_TAG)
        _, lams = run.final_lams()
        rows.append(
            {
                "run": run.label,
                "backbone": run.hparams.get("backbone", "?"),
                "best val/acc1": f"{acc.max():.4f}",
                "last val/acc1": f"{acc[-1]:.4f}",
                "blocks with lam": len(lams),
                "lam min / mean / max": f"{lams.min():.3f} / {lams.mean():.3f} / {lams.max():.3f}"
                if len(lams)
                else "-",
            }
        )
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of ``rows`` (dicts with the same keys), for ``IPython.display.Markdown``."""
    if not rows:
        raise ValueError("markdown_table needs at least one row")
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines)


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG (folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
