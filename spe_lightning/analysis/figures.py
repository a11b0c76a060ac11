"""Pictures of runs: lam against depth and over training, the other learned values, training curves.

Shared by the pooling monitor (the lam figure it logs every epoch), the report and the notebooks, so all
draw the same pictures. Figures are standalone ``matplotlib.figure.Figure`` objects rendered by Agg, never
pyplot's global state: safe in any process and backend, and notebooks display them inline.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator

from spe_lightning.runs.log_names import LAM, TRAIN, TRAIN_LOSS_STEP, VAL_ACC1, WATCH, metric, stage_of

if TYPE_CHECKING:
    from spe_lightning.analysis.reader import RunData

LAM_LABEL = "lam (weight of max pooling)"
LOSS_EPOCH = metric(TRAIN, "loss")
"""Older runs logged the training loss under ``train/loss``."""


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


def _unit_axis(ax: Axes) -> None:
    """A mix weight's axis: always 0 to 1 (lines are not clipped at the edges), the even mix 0.5 dashed."""
    ax.set_ylim(0.0, 1.0)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")


def plot_lam_vs_depth(ax: Axes, blocks: Sequence[str], lams: Sequence[float], **line_kwargs: Any) -> None:
    """lam of every block against its depth (block index): one line per stage, never joined across a
    stage boundary (dotted), on the fixed 0-1 axis."""
    lams = np.asarray(lams)
    for k, (stage, first, last) in enumerate(_stage_bounds(blocks)):
        index = np.arange(first, last + 1)
        kwargs = line_kwargs if k == 0 else {**line_kwargs, "label": None}
        line = ax.plot(index, lams[first : last + 1], marker="o", markersize=3, clip_on=False, **kwargs)[0]
        line_kwargs = {**line_kwargs, "color": line.get_color()}
        if first:
            ax.axvline(first - 0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.text((first + last) / 2, 1.0, stage, transform=ax.get_xaxis_transform(), ha="center", va="bottom")
    _unit_axis(ax)
    ax.set_xlabel("block (depth)")
    ax.set_ylabel(LAM_LABEL)


def _short_stage_names(stages: list[str]) -> tuple[list[str], str]:
    """Stage names without the part they all share, and that part: ``blocks.0`` .. ``blocks.10`` -> ``0`` ..
    ``10`` under ``blocks``; ``layer1``, ``layer2`` -> ``1``, ``2`` under ``layer``; else the whole names."""
    parents = {stage.rpartition(".")[0] for stage in stages}
    if len(parents) == 1 and "" not in parents:
        return [stage.rpartition(".")[2] for stage in stages], parents.pop()
    numbered = [re.fullmatch(r"(.*?)(\d+)", stage) for stage in stages]
    if all(numbered) and len({match.group(1) for match in numbered}) == 1:
        return [match.group(2) for match in numbered], numbered[0].group(1)
    return list(stages), ""


def plot_lam_heatmap(
    ax: Axes, blocks: Sequence[str], epochs: Sequence[int], history: np.ndarray
) -> AxesImage:
    """lam of every block (columns, by depth) at the end of every epoch (rows, the latest at the bottom) on
    the fixed 0-1 colour scale (white: the even mix 0.5). Stages are named at their centres and separated by
    lines; each block is a minor tick, so its bottom cell is the block's lam now."""
    image = ax.imshow(
        history,
        aspect="auto",
        cmap="RdBu_r",
        norm=Normalize(0.0, 1.0),
        interpolation="nearest",
        extent=(-0.5, len(blocks) - 0.5, epochs[-1] + 0.5, epochs[0] - 0.5),
    )
    bounds = _stage_bounds(blocks)
    for _, first, _ in bounds[1:]:
        ax.axvline(first - 0.5, color="black", linewidth=1.5)
    stages = [stage for stage, _, _ in bounds]
    narrowest = min(last - first + 1 for _, first, last in bounds) / len(blocks) * ax.bbox.width
    widest = max(map(len, stages)) * 0.6 * ax.xaxis.get_ticklabels()[0].get_fontsize() * ax.figure.dpi / 72
    if widest > narrowest:  # stages of one or two blocks: name them by what tells them apart
        stages, shared = _short_stage_names(stages)
        ax.set_xlabel(shared or "stage")
    ax.set_xticks([(first + last) / 2 for _, first, last in bounds], stages)
    ax.set_xticks(range(len(blocks)), minor=True)
    ax.tick_params(axis="x", length=0)
    ax.tick_params(axis="x", which="minor", length=3)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True, min_n_ticks=1))
    ax.set_ylabel("epoch")
    return image


CARD_BOX = (412, 215)
"""The picture box of an image card in TensorBoard's Time Series (2.21, default card width), in pixels.
An image is scaled to fit it whole, and a wider card (its settings) keeps the height: a portrait picture
shrinks to a strip 215 px high, so the lam figure is drawn landscape in the box's proportions."""


def lam_figure(
    blocks: Sequence[str], epochs: Sequence[int], history: np.ndarray, title: str | None = None
) -> Figure:
    """The callback's per-epoch picture: lam of every block (by depth) at every epoch so far, the latest
    epoch in the bottom row (:func:`plot_lam_heatmap`).

    ``history`` is epochs x blocks. The colour scale is fixed to 0-1, so a colour means the same lam at
    every epoch of the slider. Drawn at about twice the card's box (:data:`CARD_BOX`) with large type, so it
    stays legible when the card shrinks it and sharp at the card's actual-size toggle. Fixed margins
    instead of a layout engine keep it at ~0.1 s.
    """
    with rc_context({"font.size": 17}):
        fig = Figure(figsize=(7.68, 4.0), dpi=100)
        fig.subplots_adjust(left=0.1, right=0.9, bottom=0.12, top=0.86)
        ax = fig.subplots()
        image = plot_lam_heatmap(ax, blocks, epochs, history)
        if ax.get_xlabel():  # short stage names, the common part below them
            fig.subplots_adjust(bottom=0.22)
        bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
        bar.set_ticks([0, 0.5, 1], labels=["min", "0.5", "max"])
        bar.ax.set_title("lam", fontsize="medium")
        heading = f"epoch {epochs[-1]}"
        fig.suptitle(f"{title} · {heading}" if title else heading, x=0.02, ha="left", fontsize=15)
    return fig


BLOCK_SERIES_LABELS = {
    LAM: LAM_LABEL,
    "p_norm": "|p| (log scale)",
    "lam_grad": "dL_cls / dlam (symlog)",
    "gate_mean": "mean gate (fixed val batch)",
}


def plot_over_steps(run: RunData, key: str = LAM) -> Figure:
    """``key``'s series of every block against training steps (``lam``, ``p_norm``, ``lam_grad``, ...): one
    panel per stage, block i in the same colour in every stage, a legend of blocks, the run's name on top.
    lam keeps its 0-1 axis, |p| a log axis, the gradient a symmetric log axis."""
    series = run.block_series(key)
    if not series:
        raise ValueError(f"run {run.path} logged no {WATCH}/{key} lines: its model has no learned pooling")
    blocks = list(series)
    bounds = _stage_bounds(blocks)
    fig = Figure(figsize=(4 * len(bounds), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(bounds), sharey=True))
    widest = max(last - first + 1 for _, first, last in bounds)
    colours = ScalarMappable(Normalize(0, max(widest - 1, 1)), "turbo")
    for ax, (stage, first, last) in zip(axes, bounds, strict=True):
        for i in range(first, last + 1):
            steps, values = series[blocks[i]]
            colour = colours.to_rgba(i - first)
            ax.plot(steps, values, color=colour, linewidth=1.2, label=blocks[i], clip_on=key != LAM)
        if key == LAM:
            _unit_axis(ax)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.legend(fontsize="x-small", ncol=max(1, (last - first + 1) // 6), loc="best")
    if key == "p_norm":
        axes[0].set_yscale("log")
    elif key == "lam_grad":
        finite = np.concatenate([values[np.isfinite(values)] for _, values in series.values()])
        nonzero = np.abs(finite[finite != 0])
        axes[0].set_yscale("symlog", linthresh=float(np.quantile(nonzero, 0.1)) if nonzero.size else 1.0)
    axes[0].set_ylabel(BLOCK_SERIES_LABELS.get(key, key))
    fig.suptitle(run.label)
    return fig


def plot_lam_over_steps(run: RunData) -> Figure:
    """lam of every block against training steps (:func:`plot_over_steps`)."""
    return plot_over_steps(run, LAM)


def plot_final_lam(runs: Sequence[RunData]) -> Figure | None:
    """The last logged lam against depth, one line per run that has learned pooling; None if none has."""
    learned = [(run, *run.final_lams()) for run in runs if run.lam]
    if not learned:
        return None
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.subplots()
    for run, blocks, lams in learned:
        plot_lam_vs_depth(ax, blocks, lams, label=run.label)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("final lam of every block", pad=16)
    return fig


def plot_training_curves(runs: Sequence[RunData]) -> Figure:
    """Training loss and validation top-1 against steps, one line per run."""
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for run in runs:
        loss_ax.plot(*run.scalar(TRAIN_LOSS_STEP, LOSS_EPOCH), label=run.label, linewidth=1)
        acc_ax.plot(*run.scalar(VAL_ACC1), marker="o", markersize=3, label=run.label)
    loss_ax.set(xlabel="step", ylabel="train loss", yscale="log")
    acc_ax.set(xlabel="step", ylabel="val top-1")
    acc_ax.legend(fontsize="small")
    if len(runs) == 1:
        fig.suptitle(runs[0].label)
    return fig


def figure_png(fig: Figure) -> tuple[bytes, tuple[int, int]]:
    """``fig`` as PNG bytes at its own dpi, and the image's (width, height) in pixels."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    width, height = (round(v) for v in fig.get_size_inches() * fig.dpi)
    return buffer.getvalue(), (width, height)


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG (folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
