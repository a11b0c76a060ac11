"""Command line: ``python -m spe_lightning {fit,validate,test,predict} --config configs/<name>.yaml``.

A LightningCLI whose defaults are the paper's recipe (SGD lr 0.1, momentum 0.9, weight decay 1e-4,
MultiStepLR at epochs 81 and 122), TensorBoard logs under ``runs/``, a best-by-``val/acc1`` plus last
checkpoint, a learning-rate monitor and a CSV prediction writer. Every default is a config key, so
``fit --print_config`` shows (and a YAML file overrides) all of it.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, NoReturn

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, LRSchedulerTypeUnion
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

import spe_lightning.data  # noqa: F401  (imported so configs can name datamodules by class name alone)
from spe_lightning.callbacks.fault_tolerance import FiniteLossGuard, RandomState, StepCheckpoint
from spe_lightning.callbacks.pooling_monitor import PoolingMonitor
from spe_lightning.callbacks.prediction_writer import CSVPredictionWriter
from spe_lightning.classifier import PAPER_MULTISTEP, PAPER_SGD, ImageClassifier
from spe_lightning.guard import check_checkpoint_file, checked_run, one_line_errors
from spe_lightning.kernels import kernel_mode

# The CLI's optimizer groups are the configuration; the classifier's own configure_optimizers (the
# same recipe, for use outside the CLI) is replaced on purpose, so Lightning's notice is noise.
warnings.filterwarnings("ignore", message=r".*configure_optimizers` will be overridden by")


def _show_kernel_build() -> None:
    """Let the one-time build of the CPU kernel (a pause of some 10 s at the first step) say so."""
    log = logging.getLogger("spe_lightning.kernels")
    if not log.handlers:
        log.addHandler(logging.StreamHandler())
        log.setLevel(logging.INFO)


def _debug() -> bool:
    """``JSONARGPARSE_DEBUG=true`` shows tracebacks instead of one-line errors (jsonargparse's own switch)."""
    return os.environ.get("JSONARGPARSE_DEBUG", "").lower() == "true"


class SPEArgumentParser(LightningArgumentParser):
    """Parser errors as one line on stderr (exit 2) instead of a usage dump of every option."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if self.exit_on_error and not _debug():
            self.exit(2, f"error: {' '.join(message.split())}\n")
        super().error(message, ex)  # raises: jsonargparse's internal parses and debug mode


class SPECLI(LightningCLI):
    """LightningCLI with the paper's defaults, linked data -> model arguments and one-line errors."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_optimizer_args((Optimizer,))
        parser.add_lr_scheduler_args((LRScheduler, ReduceLROnPlateau))
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(CSVPredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(PoolingMonitor, "pooling_monitor")
        parser.add_lightning_class_args(StepCheckpoint, "step_checkpoint")
        parser.add_lightning_class_args(FiniteLossGuard, "loss_guard")
        parser.set_defaults(
            {
                "optimizer": {"class_path": "torch.optim.SGD", "init_args": PAPER_SGD},
                "lr_scheduler": {
                    "class_path": "torch.optim.lr_scheduler.MultiStepLR",
                    "init_args": PAPER_MULTISTEP,
                },
                "checkpoint.monitor": "val/acc1",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-epoch={epoch:03d}-acc1={val/acc1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
                "lr_monitor.logging_interval": "epoch",
            }
        )
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")

    @staticmethod
    def configure_optimizers(
        lightning_module: LightningModule,
        optimizer: Optimizer,
        lr_scheduler: LRSchedulerTypeUnion | None = None,
    ) -> Any:
        """Step schedulers per epoch; a plateau scheduler watches ``val/acc1`` unless it names a monitor."""
        if lr_scheduler is None:
            return optimizer
        monitor = getattr(lr_scheduler, "monitor", "val/acc1")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "monitor": monitor}}

    def before_instantiate_classes(self) -> None:
        """Make ``fit --ckpt_path last`` continue the latest run of the configured logger, in its folder.

        Lightning looks for ``last.ckpt`` in the checkpoint folder of the run being started; with a
        versioned logger that is a fresh ``version_<n+1>``, so it would silently train from scratch.
        """
        if self.subcommand != "fit" or self.config.fit.ckpt_path != "last":
            return
        init = getattr(self.config.fit.trainer.logger, "init_args", None)
        if init is None or "save_dir" not in init or init.get("version") is not None:
            return
        root = Path(init.save_dir) / (init.get("name") or "")
        versions = [int(p.name[8:]) for p in root.glob("version_*") if p.name[8:].isdigit()]
        if versions:
            init.version = max(versions)

    def instantiate_classes(self) -> None:
        """Re-raise a bad value found while building the model, data or trainer as the error that names it.

        jsonargparse wraps errors of subclass arguments (the datamodule) in a summary of every type it
        tried; the innermost error is the one that names the value. ``one_line_errors`` (around the
        whole CLI in ``cli_main``) prints it as one line and exits 2.
        """
        try:
            super().instantiate_classes()
        except (ValueError, FileNotFoundError) as err:
            if _debug():
                raise
            while isinstance(err.__cause__, (ValueError, FileNotFoundError)):
                err = err.__cause__
            raise err from None

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse, then check a ``ckpt_path`` file before LightningCLI reads hyperparameters from it."""
        super().parse_arguments(parser, args)
        check_checkpoint_file(self.config)

    def _run_subcommand(self, subcommand: str) -> None:
        """Check outputs and checkpoint first; a run failing before it trains leaves no trace in its logs."""
        with checked_run(self.trainer, self.model, subcommand, self.config_init[subcommand]):
            super()._run_subcommand(subcommand)

    def after_fit(self) -> None:
        """Print the best validation top-1 (the paper's metric) and where its checkpoint is."""
        if not self.trainer.is_global_zero:
            return
        ckpt = self.trainer.checkpoint_callback
        if ckpt is not None and ckpt.best_model_score is not None:
            print(f"best val/acc1 = {ckpt.best_model_score:.4f} (checkpoint: {ckpt.best_model_path})")
        elif "val/acc1_best" in self.trainer.callback_metrics:
            print(f"best val/acc1 = {self.trainer.callback_metrics['val/acc1_best']:.4f}")

    def after_predict(self) -> None:
        writer = self._get(self.config_init, "prediction_writer")
        if writer.path is not None:
            print(f"wrote {writer.rows} predictions to {writer.path}")


def cli_main(args: ArgsType = None) -> SPECLI:
    """Entry point of ``python -m spe_lightning`` and ``spe-lightning``; tests pass ``args``."""
    with one_line_errors(_debug()):
        kernel_mode()  # a bad SPE_LIGHTNING_CPU_KERNEL fails here, not at the first training step
        _show_kernel_build()
        return SPECLI(
            ImageClassifier,
            LightningDataModule,
            subclass_mode_data=True,
            parser_class=SPEArgumentParser,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "plugins": {"class_path": "spe_lightning.checkpoint_io.SafeCheckpointIO"},
                "callbacks": [RandomState()],
                "logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "runs", "name": "default", "default_hp_metric": False},
                },
            },
            args=args,
        )
