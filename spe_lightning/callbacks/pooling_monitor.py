"""Watch SPEM's pooling weights learn: lam per block, SPEM parameters, gates and HParams in TensorBoard.

What is logged (block names like ``layer1.0``, written ``layer1/0`` in tags):

- ``lam/<stage>/<block>``: the learned max/min mix weight of every block with learned pooling, every
  ``log_every_n_steps`` optimizer steps and at every epoch end (to every logger). Other pools' learned
  values go the same way: ``gem_p/...`` (GeM's exponent), ``lse_r/...`` (LSE's sharpness), ``mixed_a/...``
  (the max weight of the mixed pool, averaged over channels when per channel). A custom-scalars layout
  draws each stage as one multi-line chart.
- ``gate_mean/<stage>/<block>``, ``gate_std/...`` (every logger) and ``gate/<stage>/<block>`` histograms:
  the channel gates each attention block produces on a fixed batch of validation images.
- ``spem_{reweight,excite}_{weight,bias}/<stage>/<block>`` histograms.
- ``lam/overview`` image: lam against depth, and the blocks x epochs heatmap so far.

Steps follow Lightning's ``self.log`` (:func:`logging_step`); the value at initialisation is logged at step 0.

The last three are written once per epoch (every ``summary_every_n_epochs``), after validation.
- HParams: the module's and datamodule's hyperparameters with ``hp_metrics`` (``val/acc1_best``) as the
  metric columns, which the normal logging of those keys fills in.

Histograms, images, layout and HParams need a TensorBoardLogger. Only global rank zero reads values to the
host and writes; the one forward pass per epoch for the gates runs on every rank, so no collective ever
runs inside a rank-zero-only branch (DDP-safe). Blocks without learned pooling (plain networks, SE with
average pooling) simply produce no ``lam`` tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from spe_lightning.inspect_logs import LAM, block_tag, lam_figure, stage_of
from spe_lightning.layers.cbam import CBAM
from spe_lightning.layers.pool import GlobalPool, LearnedMixPool
from spe_lightning.layers.spem import SPEM
from spe_lightning.models import NormAttention, learned_pools, valued_pools

SPEM_PARAMETERS = ("reweight_weight", "reweight_bias", "excite_weight", "excite_bias")
HISTOGRAM_BINS = 64  # TensorBoard shows ~30 buckets; torch's default ~1500 make each histogram ~9 KB, not 0.5


def _strip_common_parent(names: Sequence[str]) -> list[str]:
    """Drop the leading path components every name shares (``net.layer1.0`` -> ``layer1.0``), keeping two."""
    parts = [name.split(".") for name in names]
    common = 0
    while all(len(p) > common + 2 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return [".".join(p[common:]) for p in parts]


def _attention_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(block path, attention module) for every attention ``attach_attention`` placed in ``model``."""
    return [
        (name.rpartition(".")[0], module.attn)
        for name, module in model.named_modules()
        if isinstance(module, NormAttention)
    ]


def _to_host(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Many small device tensors -> float32 CPU tensors with a single device-to-host copy."""
    flat = torch.cat([t.detach().float().flatten() for t in tensors.values()]).cpu()
    return dict(zip(tensors, flat.split([t.numel() for t in tensors.values()]), strict=True))


class PoolingMonitor(Callback):
    """Log how learned pooling and attention evolve (see the module docstring for the tags).

    Args:
        log_every_n_steps: optimizer steps between two lam logs; None uses the trainer's
            ``log_every_n_steps``. Only those steps read lam from the device (one copy for all blocks).
        num_gate_images: images of the first validation batch kept to summarise the attention gates every
            epoch; 0 turns gate summaries off.
        summary_every_n_epochs: epochs between two rounds of histograms, gate summaries and lam figure (each
            round costs ~0.1 s and ~0.5 KB per histogram); lam itself is logged at every epoch end.
        hp_metrics: logged keys shown as metric columns in TensorBoard's HParams view; empty logs no HParams.
            Set the TensorBoardLogger's ``default_hp_metric`` to False so no ``hp_metric`` placeholder is
            logged besides them.
    """

    def __init__(
        self,
        log_every_n_steps: int | None = None,
        num_gate_images: int = 64,
        summary_every_n_epochs: int = 1,
        hp_metrics: Sequence[str] = ("val/acc1_best",),
    ) -> None:
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError(
                f"log_every_n_steps={log_every_n_steps} is not allowed; use an integer >= 1 or None"
            )
        if num_gate_images < 0:
            raise ValueError(f"num_gate_images={num_gate_images} is not allowed; use an integer >= 0")
        if summary_every_n_epochs < 1:
            raise ValueError(
                f"summary_every_n_epochs={summary_every_n_epochs} is not allowed; use an integer >= 1"
            )
        self.log_every_n_steps = log_every_n_steps
        self.num_gate_images = num_gate_images
        self.summary_every_n_epochs = summary_every_n_epochs
        self.hp_metrics = tuple(hp_metrics)
        self.epochs: list[int] = []
        self.lam_history: list[list[float]] = []
        self._restored_blocks: list[str] | None = None
        self._pools: list[tuple[str, LearnedMixPool]] = []
        self._valued: list[tuple[str, GlobalPool]] = []
        self._spems: list[tuple[str, SPEM]] = []
        self._gates: list[tuple[str, nn.Module]] = []
        self._every = 1
        self._last_logged_step = -1
        self._images: Tensor | None = None
        self._layouts_written: set[str] = set()

    @property
    def blocks(self) -> list[str]:
        """Names of the blocks with learned pooling, in forward order."""
        return [block for block, _ in self._pools]

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pools, valued = learned_pools(pl_module), valued_pools(pl_module)
        attention = _attention_blocks(pl_module)
        names = _strip_common_parent([name for name, _ in pools + valued + attention])
        pool_names, valued_names = names[: len(pools)], names[len(pools) : len(pools) + len(valued)]
        attention_names = names[len(pools) + len(valued) :]
        self._pools = [(name, pool) for name, (_, pool) in zip(pool_names, pools, strict=True)]
        self._valued = [(name, pool) for name, (_, pool) in zip(valued_names, valued, strict=True)]
        attention = [(name, attn) for name, (_, attn) in zip(attention_names, attention, strict=True)]
        self._spems = [(name, attn) for name, attn in attention if isinstance(attn, SPEM)]
        gates = [(name, attn.channel if isinstance(attn, CBAM) else attn) for name, attn in attention]
        self._gates = [(name, module) for name, module in gates if hasattr(module, "gate")]
        if self._restored_blocks is not None and self._restored_blocks != self.blocks:
            raise ValueError(
                f"PoolingMonitor state in the checkpoint has lam history for blocks {self._restored_blocks}, "
                f"but the model's learned pools are {self.blocks}"
            )
        self._every = self.log_every_n_steps or trainer.log_every_n_steps
        ckpt = trainer.ckpt_path
        if trainer.is_global_zero:
            for logger in self._tensorboards(trainer):
                if ckpt is not None and Path(ckpt).absolute().parents[1] == Path(logger.log_dir).absolute():
                    continue  # resumed in its own folder, whose first writer logged these at step 0
                self._write_layout(logger)
                self._write_hparams(trainer, pl_module, logger)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._valued and trainer.is_global_zero and trainer.global_step == 0:  # resumed: logged already
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
        keep = self._gates and self.num_gate_images and self._images is None
        if keep and batch_idx == 0 and dataloader_idx == 0:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not isinstance(images, Tensor):
                raise TypeError(
                    f"PoolingMonitor needs validation batches that are an image tensor or (images, ...), "
                    f"got {type(images).__name__}"
                )
            self._images = images[: self.num_gate_images].detach().clone()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Runs after the epoch's validation: lam, parameter and gate summaries, and the lam figure.

        The gate forward pass runs on every rank (a sharded model needs all ranks in its forward); only
        rank zero reads and writes the results.
        """
        summarise = (trainer.current_epoch + 1) % self.summary_every_n_epochs == 0
        gates = (
            self._gates_on_fixed_batch(trainer, pl_module) if summarise and self._images is not None else {}
        )
        if not trainer.is_global_zero:
            return
        step = logging_step(trainer)
        self._log_values(trainer)
        if self._pools:
            self.epochs.append(trainer.current_epoch)
            self.lam_history.append(self._current_lams().tolist())
        if not summarise:
            return
        tensorboards = self._tensorboards(trainer)
        tensors: dict[str, Tensor] = {}
        if tensorboards:
            tensors.update(
                {
                    block_tag(f"spem_{param}", name): getattr(module, param)
                    for name, module in self._spems
                    for param in SPEM_PARAMETERS
                }
            )
        tensors.update({block_tag("gate", name): gate for name, gate in gates.items()})
        host = _to_host(tensors) if tensors else {}
        if gates:
            gate_stats = {}
            for name, _ in self._gates:
                values = host[block_tag("gate", name)]
                gate_stats[block_tag("gate_mean", name)] = values.mean().item()
                gate_stats[block_tag("gate_std", name)] = values.std().item()
            for logger in trainer.loggers:
                logger.log_metrics(gate_stats, step)
        figure = (
            lam_figure(self.blocks, self.epochs, np.array(self.lam_history)) if self.lam_history else None
        )
        for logger in tensorboards:
            for tag, values in host.items():
                finite = values[torch.isfinite(values)]  # a diverged run (loss guard off) keeps logging
                if finite.numel():
                    logger.experiment.add_histogram(tag, finite.numpy(), step, max_bins=HISTOGRAM_BINS)
            if figure is not None:
                logger.experiment.add_figure(f"{LAM}/overview", figure, step, close=False)

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
    def _current_lams(self) -> Tensor:
        """lam of every block, on the host: one stack on the device, one copy."""
        return torch.stack([pool.lam for _, pool in self._pools]).cpu()

    @torch.no_grad()
    def _log_values(self, trainer: Trainer) -> None:
        """Every pool's learned values (lam, GeM's p, ...) as ``<value>/<stage>/<block>``, one copy."""
        step = logging_step(trainer)
        if step == self._last_logged_step or not self._valued:  # an epoch end on a logging step
            return
        tensors = {
            block_tag(key, name): value
            for name, pool in self._valued
            for key, value in pool.logged_values().items()
        }
        metrics = {tag: value.item() for tag, value in _to_host(tensors).items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step)
        self._last_logged_step = step

    @torch.no_grad()
    def _gates_on_fixed_batch(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Tensor]:
        """Channel gates of every attention block on the kept images: eval mode, the run's precision."""
        gates: dict[str, Tensor] = {}

        def record(name: str, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
            gates[name] = module.gate(args[0])

        handles = [module.register_forward_hook(partial(record, name)) for name, module in self._gates]
        modes = [(module, module.training) for module in pl_module.modules()]
        pl_module.eval()
        precision = trainer.precision_plugin
        try:
            with precision.forward_context():
                pl_module(precision.convert_input(self._images))
        finally:
            for handle in handles:
                handle.remove()
            for module, training in modes:
                module.training = training
        return gates

    def _write_layout(self, logger: TensorBoardLogger) -> None:
        """One multi-line chart per stage for lam and the gate statistics (Custom Scalars dashboard)."""
        if logger.log_dir in self._layouts_written:
            return  # TensorBoard reads one layout per run
        gate_blocks = [name for name, _ in self._gates] if self.num_gate_images else []
        layout = {}
        for prefix, blocks, title in (
            (LAM, self.blocks, "lam (weight of max pooling)"),
            ("gate_mean", gate_blocks, "gate mean (fixed validation batch)"),
            ("gate_std", gate_blocks, "gate std (fixed validation batch)"),
        ):
            stages = dict.fromkeys(stage_of(block) for block in blocks)
            charts = {
                stage: ["Multiline", [block_tag(prefix, b) for b in blocks if stage_of(b) == stage]]
                for stage in stages
            }
            if charts:
                layout[title] = charts
        if layout:
            logger.experiment.add_custom_scalars(layout)
            self._layouts_written.add(logger.log_dir)

    def _write_hparams(self, trainer: Trainer, pl_module: LightningModule, logger: TensorBoardLogger) -> None:
        """Hyperparameters with ``hp_metrics`` as HParams columns.

        Written in ``on_fit_start``, before Lightning's own ``log_hyperparams``: TensorBoard keeps the
        first HParams summary of a run, so these metric columns win over a ``hp_metric`` placeholder.
        """
        if not self.hp_metrics:
            return
        params = dict(trainer.datamodule.hparams_initial) if trainer.datamodule is not None else {}
        params.update(pl_module.hparams_initial)
        logger.log_hyperparams(params, dict.fromkeys(self.hp_metrics, 0))


def logging_step(trainer: Trainer) -> int:
    """Lightning's step for what is logged after an optimizer step: its 0-based index (``global_step - 1``).

    ``self.log`` metrics use it too, so lam and ``val/acc1`` of an epoch share a step, and everything
    logged before a checkpoint at ``global_step`` G has a step below G: a resumed run's TensorBoard writer
    (``purge_step=G``) then drops exactly what the interrupted run logged after its checkpoint.
    """
    return max(trainer.global_step - 1, 0)
