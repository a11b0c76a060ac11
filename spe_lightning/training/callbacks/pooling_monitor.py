"""Watch SPEM's pooling weights learn: lam per block and what moves it, gates, and the lam figure.

The tags follow :mod:`spe_lightning.runs.log_names`: everything sits under ``watch/``, after ``train/`` and
``val/``, and what grows with depth is a line, not a card. For a block ``layer1.3``:

- every ``log_every_n_steps`` optimizer steps and at every epoch end: ``watch/lam/layer1`` in the sub-run
  ``blocks/3`` (one chart per stage, one line per block, with reference lines at lam = 0 and 1), next to
  ``watch/p_norm/layer1`` (|p|) and ``watch/lam_grad/layer1`` (the classification loss's gradient on
  lam, from the step's ``p.grad``), and in the run itself ``watch/lam_{mean,min,max,above_half}/layer1``,
  which a Custom Scalars layout written at the start draws as one band per stage (:func:`pool_value_layout`).
  Other pools' learned values go the same way (``gem_p``, ``lse_r``, ``mixed_a``);
- after every epoch's validation (every ``summary_every_n_epochs``): ``watch/gate_mean/layer1`` and
  ``watch/gate_std/layer1`` (the block's channel gates on a fixed batch of validation images);
  histograms of the gates and of SPEM's parameters per stage (``watch/gate/layer1``), per block, or none;
  and ``watch/lam_overview``, the lam figure, also saved as ``lam_figures/epoch_<NNN>.png`` in the run
  folder (TensorBoard keeps 10 images per tag unless started with
  :data:`~spe_lightning.runs.log_names.TENSORBOARD_FLAGS`).

Loggers other than TensorBoard (CSV) get the same values as one column per block
(``watch/lam/layer1/3``). Steps follow Lightning's ``self.log`` (:func:`logging_step`); the values at
initialisation are logged at step 0. Only global rank zero reads values to the host and writes, and the
gates are recorded during its own validation forward, so no collective ever runs inside a
rank-zero-only branch (DDP-safe). Blocks without learned pooling produce no ``lam`` lines.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto import tensor_pb2, types_pb2
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalars
from torch import Tensor, nn

from spe_lightning.analysis.figures import figure_png, lam_figure
from spe_lightning.core.errors import InputError
from spe_lightning.core.validation import check_int
from spe_lightning.layers import SPEM, ChannelAttention, GlobalPool, LearnedMixPool
from spe_lightning.models import attention_modules, learned_pools, valued_pools
from spe_lightning.runs.layout import run_folder, run_label
from spe_lightning.runs.log_names import (
    ABOVE_HALF,
    LAM,
    LAM_OVERVIEW,
    MIX_WEIGHTS,
    SUMMARY_STATS,
    block_run,
    block_tag,
    reference_runs,
    stage_of,
    stage_tag,
    summary_tag,
)
from spe_lightning.training.subrun_writers import RunWriters

SPEM_PARAMETERS = ("reweight_weight", "reweight_bias", "excite_weight", "excite_bias")
HISTOGRAM_BINS = 64
"""Equal-width buckets: TensorBoard shows ~30; torch's default exponential ~1500 cost 2.5x the time and
make each histogram ~9 KB, not 0.5."""
FIGURES = "lam_figures"
"""Folder, inside the run, of the lam figure of every epoch."""
Histograms = Literal["stage", "block", "none"]


def _strip_common_parent(names: list[str]) -> list[str]:
    """Drop the leading path components every name shares (``net.layer1.0`` -> ``layer1.0``), keeping two,
    and keeping a parent whose children are numbered (timm's ``net.blocks.1.0`` -> ``blocks.1.0``): a stage
    reads as ``blocks.1``, not ``1``."""
    parts = [name.split(".") for name in names]
    common = 0
    while (
        all(len(p) > common + 2 for p in parts)
        and len({p[common] for p in parts}) == 1
        and not any(p[common + 1].isdigit() for p in parts)
    ):
        common += 1
    return [".".join(p[common:]) for p in parts]


def _to_host(tensors: dict[Any, Tensor]) -> dict[Any, Tensor]:
    """Many small device tensors -> float32 CPU tensors with a single device-to-host copy."""
    flat = torch.cat([t.detach().float().flatten() for t in tensors.values()]).cpu()
    return dict(zip(tensors, flat.split([t.numel() for t in tensors.values()]), strict=True))


def stage_summaries(values: dict[tuple[str, str], float], keys: Iterable[str]) -> dict[str, float]:
    """Mean, min and max over each stage's blocks of every ``keys`` value (``watch/lam_mean/layer1``, ...),
    and for a mix weight the number of its blocks above 0.5 (``watch/lam_above_half/layer1``)."""
    by_stage: dict[tuple[str, str], list[float]] = {}
    for (block, key), value in values.items():
        if key in keys:
            by_stage.setdefault((key, stage_of(block)), []).append(value)
    reduce = {"mean": np.mean, "min": np.min, "max": np.max, ABOVE_HALF: lambda s: np.sum(np.greater(s, 0.5))}
    return {
        summary_tag(key, stat, stage): float(reduce[stat](series))
        for (key, stage), series in by_stage.items()
        for stat in summary_stats(key)
    }


def summary_stats(key: str) -> tuple[str, ...]:
    """The stage summaries of a logged value: mean, min and max, and above one half for a mix weight."""
    return (*SUMMARY_STATS, ABOVE_HALF) if key in MIX_WEIGHTS else SUMMARY_STATS


Named = list[tuple[str, nn.Module]]


def watched_blocks(model: nn.Module) -> tuple[Named, Named, Named]:
    """(learned mixes, pools with learned values, attention modules) by block name (``layer1.0``), the
    names shortened together so that each block has one name in every tag."""
    found = [learned_pools(model), valued_pools(model), attention_modules(model)]
    names = iter(_strip_common_parent([name for group in found for name, _ in group]))
    return tuple([(next(names), module) for _, module in group] for group in found)


def pool_value_layout(valued: Named) -> layout_pb2.Layout:
    """TensorBoard's Custom Scalars page for the learned pool values: per value (lam, ...) and stage, one
    category holding the stage's mean with the min-max band of its blocks and, for a mix weight, the count
    of blocks above 0.5, so that a stage whose blocks split between max and min shows it at a glance.

    One category per stage, not one chart per stage in a shared category: TensorBoard (2.21) draws a
    category's margin charts in reverse and its line charts first, so only categories keep depth order.
    """
    keys = list(dict.fromkeys(key for _, pool in valued for key in pool.logged_values()))
    blocks_per_stage = Counter(stage_of(block) for block, _ in valued)
    categories = []
    for key in keys:
        for stage, blocks in blocks_per_stage.items():
            charts = [
                layout_pb2.Chart(
                    title=f"{key} in {stage}: mean, band from min to max over its {blocks} blocks",
                    margin=layout_pb2.MarginChartContent(
                        series=[
                            layout_pb2.MarginChartContent.Series(
                                value=summary_tag(key, "mean", stage),
                                lower=summary_tag(key, "min", stage),
                                upper=summary_tag(key, "max", stage),
                            )
                        ]
                    ),
                )
            ]
            if ABOVE_HALF in summary_stats(key):
                charts.append(
                    layout_pb2.Chart(
                        title=f"{key} in {stage}: blocks above 0.5, of {blocks}",
                        multiline=layout_pb2.MultilineChartContent(
                            tag=[f"^{re.escape(summary_tag(key, ABOVE_HALF, stage))}$"]
                        ),
                    )
                )
            categories.append(layout_pb2.Category(title=f"{key} in {stage}", chart=charts))
    return layout_pb2.Layout(category=categories)


def custom_scalars_summary(layout: layout_pb2.Layout) -> Summary:
    """The layout as the summary TensorBoard's Custom Scalars plugin reads (its own ``summary.pb`` needs
    TensorFlow): one string tensor under the plugin's config tag."""
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[layout.SerializeToString()])
    value = Summary.Value(
        tag=custom_scalars.CONFIG_SUMMARY_TAG,
        metadata=custom_scalars.create_summary_metadata(),
        tensor=tensor,
    )
    return Summary(value=[value])


def final_value_tags(model: nn.Module) -> list[str]:
    """Every stage summary of every learned pool value (``watch/lam_mean/layer1``, ``lam_min``, ``lam_max``,
    ``lam_above_half``): each stage's final lams in the HParams view, their spread beside their mean."""
    _, valued, _ = watched_blocks(model)
    tags = (
        summary_tag(key, stat, stage_of(block))
        for block, pool in valued
        for key in pool.logged_values()
        for stat in summary_stats(key)
    )
    return list(dict.fromkeys(tags))


class PoolingMonitor(Callback):
    """Log how learned pooling and attention evolve (see the module docstring for the tags).

    Args:
        log_every_n_steps: optimizer steps between two logs of the learned values; None uses the trainer's
            ``log_every_n_steps``. Only those steps read them from the device (one copy for all blocks).
        num_gate_images: images of the first validation batch whose attention gates are summarised every
            epoch, recorded as the validation forward computes them (validation must run); 0 turns gate
            summaries off.
        summary_every_n_epochs: epochs between two rounds of gate summaries, histograms and lam figure (a
            round costs ~0.15 s of CPU for a ResNet-164: see the README's benchmarks); the learned values
            themselves are logged at every epoch end.
        histograms: ``stage`` (default) writes one histogram per stage of the gates and of each SPEM
            parameter (5 per stage at any depth), ``block`` one per block (5 per block: 270 for a
            ResNet-164), ``none`` none.
        save_figures: also save the lam figure of every summary epoch as a PNG in the run folder.
    """

    def __init__(
        self,
        log_every_n_steps: int | None = None,
        num_gate_images: int = 64,
        summary_every_n_epochs: int = 1,
        histograms: Histograms = "stage",
        save_figures: bool = True,
    ) -> None:
        check_int("pooling_monitor.log_every_n_steps", log_every_n_steps, allow_none=True)
        check_int("pooling_monitor.num_gate_images", num_gate_images, minimum=0)
        check_int("pooling_monitor.summary_every_n_epochs", summary_every_n_epochs)
        if histograms not in get_args(Histograms):
            raise InputError(
                f"pooling_monitor.histograms={histograms!r} is not allowed; use one of: "
                f"{', '.join(get_args(Histograms))}"
            )
        self.log_every_n_steps = log_every_n_steps
        self.num_gate_images = num_gate_images
        self.summary_every_n_epochs = summary_every_n_epochs
        self.histograms = histograms
        self.save_figures = save_figures
        self.epochs: list[int] = []
        self.lam_history: list[list[float]] = []
        self._restored_blocks: list[str] | None = None
        self._pools: list[tuple[str, LearnedMixPool]] = []
        self._valued: list[tuple[str, GlobalPool]] = []
        self._spems: list[tuple[str, SPEM]] = []
        self._gates: list[tuple[str, nn.Module]] = []
        self._every = 1
        self._last_logged_step = -1
        self._epoch_gates: dict[str, Tensor] = {}
        self._recording = ExitStack()  # the recorded batch's forward hooks and eager stance
        self._writers: list[RunWriters] = []
        self._folder: str | None = None
        self._alpha = 0.0
        self._references: dict[str, float] = {}
        self._last_values: dict[tuple[str, str], float] = {}
        """The values of the last logged step: an epoch end's lam history row reads them, no second copy."""

    @property
    def blocks(self) -> list[str]:
        """Names of the blocks with learned pooling, in forward order."""
        return [block for block, _ in self._pools]

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._pools, self._valued, attention = watched_blocks(pl_module)
        self._spems = [(name, attn) for name, attn in attention if isinstance(attn, SPEM)]
        # the channel attention of each block (CBAM's channel gate inside CBAM): its gate is summarised
        self._gates = [
            (name, next(m for m in attn.modules() if isinstance(m, ChannelAttention)))
            for name, attn in attention
        ]
        if self._restored_blocks is not None and self._restored_blocks != self.blocks:
            raise InputError(
                f"PoolingMonitor state in the checkpoint has lam history for blocks {self._restored_blocks}, "
                f"but the model's learned pools are {self.blocks}"
            )
        self._every = self.log_every_n_steps or trainer.log_every_n_steps
        widest = max(Counter(stage_of(block) for block, _ in self._valued).values(), default=0)
        self._references = reference_runs(widest)
        self._folder = str(run_folder(trainer))
        self._alpha = float(getattr(pl_module, "hparams", {}).get("pool_alpha", 0.0))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        # a resumed run (global step restored by now) rewrites its sub-runs' history from its checkpoint
        purge = trainer.global_step if trainer.global_step > 0 else None
        self._writers = [RunWriters(logger, purge) for logger in self._tensorboards(trainer)]
        if self._valued and trainer.global_step == 0:  # resumed: logged already
            layout = custom_scalars_summary(pool_value_layout(self._valued))
            for logger in self._tensorboards(trainer):
                logger.experiment.file_writer.add_summary(layout)
            self._log_values(trainer)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._valued and trainer.global_step % self._every == 0 and trainer.is_global_zero:
            self._log_values(trainer)

    def on_validation_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """On the first batch of a summary epoch's validation: record the gates that forward computes.

        A compiled network runs that one batch eagerly (``torch.compiler.set_stance("force_eager")``):
        torch.compile does not guard on module hooks, so hooks added after it compiled would never run,
        and guarding on them would cost a compile of its own.
        """
        first = batch_idx == 0 and dataloader_idx == 0 and not trainer.sanity_checking
        if (
            first
            and self._gates
            and self.num_gate_images
            and trainer.is_global_zero
            and self._summarises(trainer)
        ):
            for name, module in self._gates:
                self._recording.callback(module.register_forward_hook(partial(self._record, name)).remove)
            self._recording.enter_context(torch.compiler.set_stance("force_eager"))

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._recording.close()

    def _record(self, name: str, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        """The block's gates on the batch's first ``num_gate_images`` images (eval mode and the run's
        precision, as validation runs): the validation forward is the one pass, nothing runs twice."""
        self._epoch_gates[name] = module.gate(args[0][: self.num_gate_images]).detach()

    def _summarises(self, trainer: Trainer) -> bool:
        return (trainer.current_epoch + 1) % self.summary_every_n_epochs == 0

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Runs after the epoch's validation: learned values, gate and parameter summaries, the lam figure."""
        gates, self._epoch_gates = self._epoch_gates, {}
        if not trainer.is_global_zero:
            return
        step = logging_step(trainer)
        self._log_values(trainer)
        if self._pools:
            self.epochs.append(trainer.current_epoch)
            self.lam_history.append([self._last_values[(block, LAM)] for block in self.blocks])
        if not self._summarises(trainer):
            return
        tensors: dict[tuple[str, str], Tensor] = {(name, "gate"): gate for name, gate in gates.items()}
        if self._writers and self.histograms != "none":
            tensors.update(
                {
                    (name, f"spem_{param}"): getattr(module, param)
                    for name, module in self._spems
                    for param in SPEM_PARAMETERS
                }
            )
        host = _to_host(tensors) if tensors else {}
        gate_stats = {}
        for name, _ in self._gates if gates else ():
            values = host[(name, "gate")]
            gate_stats[(name, "gate_mean")] = values.mean().item()
            gate_stats[(name, "gate_std")] = values.std().item()
        self._write_block_values(trainer, gate_stats, step)
        if self._writers and self.histograms != "none":
            self._write_histograms(host, step)
        if self.lam_history:
            self._write_figure(step)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._recording.close()
        for writers in self._writers:
            writers.close()
        self._writers = []

    def state_dict(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "epochs": self.epochs, "lam_history": self.lam_history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_blocks = list(state_dict["blocks"])
        self.epochs = list(state_dict["epochs"])
        self.lam_history = [list(row) for row in state_dict["lam_history"]]

    @staticmethod
    def _tensorboards(trainer: Trainer) -> list[TensorBoardLogger]:
        return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]

    @torch.no_grad()
    def _log_values(self, trainer: Trainer) -> None:
        """Every pool's learned values and diagnostics (lam, |p|, dL/dlam, GeM's p, ...), one copy."""
        step = logging_step(trainer)
        if step == self._last_logged_step or not self._valued:  # an epoch end on a logging step
            return
        tensors = {
            (name, key): value
            for name, pool in self._valued
            for key, value in {**pool.logged_values(), **pool.diagnostics(self._alpha)}.items()
        }
        values = {key: value.item() for key, value in _to_host(tensors).items()}
        self._last_values = values
        keys = {key for _, pool in self._valued for key in pool.logged_values()}
        self._write_block_values(trainer, values, step, summaries=stage_summaries(values, keys))
        self._last_logged_step = step

    def _write_block_values(
        self,
        trainer: Trainer,
        values: dict[tuple[str, str], float],
        step: int,
        summaries: dict[str, float] | None = None,
    ) -> None:
        """Per-block values as lines of their stage's chart (TensorBoard sub-runs) or per-block columns
        (other loggers), and the stage summaries in the run itself."""
        summaries = summaries or {}
        per_block = {block_tag(key, block): value for (block, key), value in values.items()}
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger) and (per_block or summaries):
                logger.log_metrics({**per_block, **summaries}, step)
        subruns: dict[str, dict[str, float]] = {}
        for (block, key), value in values.items():
            subruns.setdefault(block_run(block), {})[stage_tag(key, stage_of(block))] = value
        stages = {(key, stage_of(block)) for block, key in values if key in MIX_WEIGHTS}
        for reference, value in self._references.items() if stages else ():
            subruns[reference] = {stage_tag(key, stage): value for key, stage in stages}
        for writers in self._writers:
            writers.scalars(summaries, step)
            for subrun, lines in subruns.items():
                writers.scalars(lines, step, subrun)

    def _write_histograms(self, host: dict[tuple[str, str], Tensor], step: int) -> None:
        grouped: dict[str, list[Tensor]] = {}
        for (block, key), values in host.items():
            tag = block_tag(key, block) if self.histograms == "block" else stage_tag(key, stage_of(block))
            grouped.setdefault(tag, []).append(values)
        for tag, parts in grouped.items():
            values = torch.cat(parts)
            finite = values[torch.isfinite(values)]  # a diverged run (loss guard off) keeps logging
            if finite.numel():
                for writers in self._writers:
                    writers.logger.experiment.add_histogram(tag, finite.numpy(), step, bins=HISTOGRAM_BINS)

    def _write_figure(self, step: int) -> None:
        """The lam figure, rendered once: to TensorBoard and to ``lam_figures/epoch_<NNN>.png``."""
        if not (self._writers or self.save_figures):
            return
        figure = lam_figure(
            self.blocks,
            self.epochs,
            np.array(self.lam_history),
            title=run_label(Path(self._folder or ".").absolute()),
        )
        png, size = figure_png(figure)
        figure.clear()  # breaks the figure's reference cycles now, not in a garbage collection mid-epoch
        for writers in self._writers:
            writers.image(LAM_OVERVIEW, png, size, step)
        if self.save_figures and self._folder is not None:
            path = Path(self._folder) / FIGURES / f"epoch_{self.epochs[-1]:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)


def logging_step(trainer: Trainer) -> int:
    """Lightning's step for what is logged after an optimizer step: its 0-based index (``global_step - 1``).

    ``self.log`` metrics use it too, so lam and ``val/acc1`` of an epoch share a step, and everything
    logged before a checkpoint at ``global_step`` G has a step below G: a resumed run's TensorBoard writer
    (``purge_step=G``) then drops exactly what the interrupted run logged after its checkpoint.
    """
    return max(trainer.global_step - 1, 0)
