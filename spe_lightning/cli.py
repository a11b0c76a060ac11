"""Command line: ``python -m spe_lightning {fit,validate,test,predict} --config configs/<name>.yaml``.

A LightningCLI whose defaults are the paper's recipe (SGD lr 0.1, momentum 0.9, weight decay 1e-4,
MultiStepLR at epochs 81 and 122), TensorBoard logs under ``runs/``, a best-by-``val/acc1`` plus last
checkpoint, a learning-rate monitor and a CSV prediction writer. Every default is a config key, so
``fit --print_config`` shows (and a YAML file overrides) all of it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
import sys
import textwrap
from argparse import RawDescriptionHelpFormatter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import (
    ArgsType,
    LightningArgumentParser,
    LightningCLI,
    LRSchedulerTypeUnion,
    instantiate_class,
)
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

import spe_lightning.data  # noqa: F401  (imported so configs can name datamodules by class name alone)
from spe_lightning.accelerate import evaluates_in_inference_mode
from spe_lightning.callbacks.config_hparams import ConfigHParams
from spe_lightning.callbacks.cpu_threads import CPUThreads
from spe_lightning.callbacks.fault_tolerance import FiniteLossGuard, LastCheckpoint, RandomState
from spe_lightning.callbacks.pooling_monitor import PoolingMonitor
from spe_lightning.callbacks.prediction_writer import CSVPredictionWriter
from spe_lightning.checks import check_before_run, check_config, check_config_files
from spe_lightning.classifier import PAPER_MULTISTEP, PAPER_SGD, ImageClassifier
from spe_lightning.config_files import configs_main, resolve_config_args
from spe_lightning.errors import InputError, StopSignal, debug, one_line_errors
from spe_lightning.kernels import kernel_mode
from spe_lightning.notices import quiet_notices
from spe_lightning.runs import RunLock, RunPlan, name_unnamed_runs, plan_run, write_result
from spe_lightning.tags import LR

CONSTRUCTOR_ERRORS = (ValueError, TypeError, LookupError, OSError, MisconfigurationException)
"""What a constructor raises for a value it rejects: while the config's classes are built, bad input."""


def command_line(args: ArgsType) -> list[str]:
    """The arguments as a list (``sys.argv`` when None); a dict of arguments has no command line."""
    return [] if isinstance(args, dict) else list(sys.argv[1:] if args is None else args)


def _show_kernel_build() -> None:
    """Let the one-time build of the CPU kernel (a pause of some 10 s at the first step) say so."""
    log = logging.getLogger("spe_lightning.kernels")
    if not log.handlers:
        log.addHandler(logging.StreamHandler())
        log.setLevel(logging.INFO)


def concise_parser_error(message: str) -> str:
    """jsonargparse's "does not validate against any of the Union subtypes" report, as key, value, types."""
    single = re.fullmatch(r'Parser key "([^"]+)": Expected a (.+?)\. Got value: (\S+)', message)
    if single:  # one type, not a union: a Literal's choices or a class
        literal = re.fullmatch(r"typing\.Literal\[(.*)\]", single.group(2))
        choices = (
            [v.strip().strip("'") for v in literal.group(1).split(",")] if literal else [single.group(2)]
        )
        return f"{single.group(1)}={single.group(3)} is not allowed; expected one of: {', '.join(choices)}"
    if "Does not validate against any of the Union subtypes" not in message:
        return message
    keys = re.findall(r'Parser key "([^"]+)"', message)
    key = keys[0] + "".join(f".init_args.{inner}" for inner in keys[1:2])
    value = re.search(r"(?:Given|Got) value: (?!NestedArg)(\S+)", message)
    tail = message[message.rfind(f'Parser key "{keys[-1]}"') :]
    subtypes = re.search(r"Subtypes: \[(.*?)\] Errors", tail)
    if subtypes:
        literals = re.findall(r"Literal\[([^\]]*)\]", subtypes.group(1))
        names = [v.strip().strip("'") for group in literals for v in group.split(",")]
        names += [n.rsplit(".", 1)[-1] for n in re.findall(r"<class '([\w.]+)'>", subtypes.group(1))]
    else:
        names = [n.rsplit(".", 1)[-1] for n in re.findall(r"<class '([\w.]+)'>", tail)[:1]]
    allowed = ", ".join(dict.fromkeys("null" if name == "NoneType" else name for name in names))
    given = f"={value.group(1)}" if value else ""
    return f"{key}{given} is not allowed; expected one of: {allowed}"


class SPEArgumentParser(LightningArgumentParser):
    """Parser errors as one line on stderr (exit 2) instead of a usage dump of every option."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if self.exit_on_error and not debug():
            self.exit(2, f"error: {concise_parser_error(' '.join(message.split()))}\n")
        super().error(message, ex)  # raises: jsonargparse's internal parses and debug mode


SUBCOMMANDS = {
    "fit": "Train, validating every epoch; --ckpt_path last continues an interrupted run in its folder.",
    "validate": "Evaluate a checkpoint (--ckpt_path best, last or a file) on the validation set.",
    "test": "Evaluate a checkpoint on the test set, kept apart from fit so that nothing is tuned on it.",
    "predict": "Classify the prediction images with a checkpoint and write the classes to a CSV file.",
}
"""Each subcommand's one-line help; Lightning's come from the first line of the Trainer's docstrings."""
TOOL_HELP = {  # our own subcommands (TOOLS) and their one-line help
    "grid": "attention x pooling x seed grids, locally or on SLURM",
    "report": "mean +- std tables and figures of a grid's runs",
    "export": "a checkpoint to ONNX, torch.export or TorchScript",
    "configs": "list the packaged configs, or copy one out to edit",
}


def _described(method: Callable[..., Any], summary: str) -> Callable[..., Any]:
    """``method`` with ``summary`` as its docstring's first paragraph; the signature (the CLI's arguments)
    and the argument docs stay the Trainer's."""

    @functools.wraps(method)
    def described(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        return method(self, *args, **kwargs)

    body = (method.__doc__ or "").strip().split("\n\n", 1)
    described.__doc__ = summary + ("\n\n" + body[1] if len(body) > 1 else "")
    return described


class SPETrainer(Trainer):
    """Lightning's Trainer, unchanged, with subcommand docstrings whose first line is the whole help."""

    fit = _described(Trainer.fit, SUBCOMMANDS["fit"])
    validate = _described(Trainer.validate, SUBCOMMANDS["validate"])
    test = _described(Trainer.test, SUBCOMMANDS["test"])
    predict = _described(Trainer.predict, SUBCOMMANDS["predict"])


def prog() -> str:
    """How the user started us: ``python -m spe_lightning`` or the ``spe-lightning`` script."""
    name = Path(sys.argv[0]).name
    return "python -m spe_lightning" if name in ("__main__.py", "-m", "") else name


def description() -> str:
    tools = "\n".join(f"  {prog()} {name} --help: {text}" for name, text in TOOL_HELP.items())
    summary = (
        "Train and evaluate image classifiers with pluggable channel attention (SPEM, SE, ECA, CBAM, SRM, "
        "FcaNet, GCT, coordinate attention) and pooling."
    )
    return (
        f"{textwrap.fill(summary, 88)}\nStart with: {prog()} fit --config quickstart.yaml\n\nAlso:\n{tools}"
    )


class SPECLI(LightningCLI):
    """LightningCLI with the paper's defaults, linked data -> model arguments, one-line errors, and the run
    layer (:mod:`spe_lightning.runs`): every subcommand's folder and checkpoint are planned once, right
    after parsing, everything is checked (:mod:`spe_lightning.checks`) before the folder is claimed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.argv = command_line(kwargs.get("args"))
        self.plan: RunPlan | None = None
        self.lock: RunLock | None = None
        self.stack = ExitStack()
        with self.stack:  # on any ending: the SIGINT handler restored, the run's lock released
            super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_optimizer_args((Optimizer,))
        parser.add_lr_scheduler_args((LRScheduler, ReduceLROnPlateau))
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")  # after it: last holds its best
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(CSVPredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(PoolingMonitor, "pooling_monitor")
        parser.add_lightning_class_args(FiniteLossGuard, "loss_guard")
        parser.add_lightning_class_args(CPUThreads, "cpu_threads")
        parser.set_defaults(
            {
                "optimizer": {"class_path": "torch.optim.SGD", "init_args": PAPER_SGD},
                "lr_scheduler": {
                    "class_path": "torch.optim.lr_scheduler.MultiStepLR",
                    "init_args": PAPER_MULTISTEP,
                },
                "checkpoint.monitor": "val/acc1",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-epoch={epoch:03d}-acc1={val/acc1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
                "lr_monitor.logging_interval": "epoch",
            }
        )
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")

    def configure_optimizers(
        self,
        lightning_module: LightningModule,
        optimizer: Optimizer,
        lr_scheduler: LRSchedulerTypeUnion | None = None,
    ) -> Any:
        """Step schedulers per epoch; a plateau scheduler watches ``val/acc1`` unless it names a monitor.

        With ``model.pool_weight_decay`` set, the optimizer is rebuilt with the learned-mix parameters in a
        group of their own (LightningCLI builds it over all parameters) and the scheduler over it.
        """
        groups = getattr(lightning_module, "parameter_groups", lambda: None)()
        if groups is not None:
            optimizer = type(optimizer)(groups, **optimizer.defaults)
            if lr_scheduler is not None:
                lr_scheduler = instantiate_class(optimizer, self.config_init[self.subcommand]["lr_scheduler"])
        if lr_scheduler is None:
            return optimizer
        monitor = getattr(lr_scheduler, "monitor", "val/acc1")
        scheduler = {"scheduler": lr_scheduler, "monitor": monitor, "name": LR}  # the monitor's tag
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse, check the values, then plan the run: its folder and its checkpoint (read once, mapped)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand is None:
            return
        config = self.config[subcommand]
        name_unnamed_runs(config)
        check_config(config)
        config.trainer.inference_mode &= evaluates_in_inference_mode(config.model.compile)
        self.plan = plan_run(config, subcommand)
        self.plan.apply(config)
        if self.plan.resumes_in_place:  # keep the config the run started with; save this one beside it
            name = f"config.step{self.plan.start_step}.yaml"
            self.save_config_kwargs = {**self.save_config_kwargs, "config_filename": name}

    def instantiate_classes(self) -> None:
        """A value a constructor rejects is bad input: re-raised as the innermost error that names it.

        jsonargparse wraps errors of subclass arguments (the datamodule) in a summary of every type it
        tried; the innermost error is the one that names the value.
        """
        try:
            super().instantiate_classes()
        except CONSTRUCTOR_ERRORS as err:
            if debug():
                raise
            while isinstance(err.__cause__, CONSTRUCTOR_ERRORS):
                err = err.__cause__
            raise InputError(str(err)) from None

    def start_run(self) -> None:
        """Before any subcommand: check everything, then claim the folder (and lock a fit run)."""
        subcommand = self.subcommand
        check_before_run(self.plan, self.trainer, self.model, self.datamodule, self.config_init[subcommand])
        if self.plan.notice:
            rank_zero_info(self.plan.notice)
        self.lock = self.plan.claim()
        if self.lock is not None:
            self.stack.callback(self.lock.release)
        self.stack.enter_context(StopSignal.forwarding(self.plan.resume_command(self.argv)))

    before_fit = before_validate = before_test = before_predict = start_run

    def after_fit(self) -> None:
        """Mark the run finished (``result.json``); print the best validation top-1 (the paper's metric)."""
        if not self.trainer.is_global_zero or self.trainer.interrupted:
            return
        ckpt = self.trainer.checkpoint_callback
        metrics = self.trainer.callback_metrics
        best = metrics.get("val/acc1_best")
        write_result(
            self.plan.folder,
            {
                "val_acc1_best": None if best is None else float(best),
                "val_acc1": float(metrics["val/acc1"]) if "val/acc1" in metrics else None,
                "epochs": self.trainer.current_epoch,
                "global_step": self.trainer.global_step,
                "best_checkpoint": ckpt.best_model_path if ckpt is not None else None,
            },
        )
        if ckpt is not None and ckpt.best_model_score is not None:
            print(f"best val/acc1 = {ckpt.best_model_score:.4f} (checkpoint: {ckpt.best_model_path})")
        elif best is not None:
            print(f"best val/acc1 = {best:.4f}")

    def after_predict(self) -> None:
        for writer in self.trainer.callbacks:
            if isinstance(writer, CSVPredictionWriter) and writer.path is not None:
                print(f"wrote {writer.rows} predictions to {writer.path}")


TOOLS = tuple(TOOL_HELP)
"""Subcommands of our own, beside LightningCLI's fit/validate/test/predict."""


def parse_only(args: list[str]) -> None:
    """Parse a subcommand's arguments as ``cli_main`` would, building nothing; a bad one is an InputError."""
    errors = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
        try:
            cli_main([*args, "--print_config"])
        except SystemExit as exit:
            if exit.code not in (0, None):
                message = errors.getvalue().strip().splitlines()
                raise InputError(
                    message[-1].removeprefix("error: ") if message else f"exit {exit.code}"
                ) from None


def cli_main(args: ArgsType = None) -> Any:
    """Entry point of ``python -m spe_lightning`` and ``spe-lightning``; tests pass ``args``."""
    argv = resolve_config_args(command_line(args))
    quiet_notices()
    with one_line_errors():
        check_config_files(argv)
        if argv and argv[0] in TOOLS:
            from spe_lightning import export, grid, report  # only these subcommands need them

            tools = {
                "grid": grid.grid_main,
                "report": report.report_main,
                "export": export.export_main,
                "configs": configs_main,
            }
            return tools[argv[0]](argv[1:])
        kernel_mode()  # a bad SPE_LIGHTNING_CPU_KERNEL fails here, not at the first training step
        _show_kernel_build()
        if args is None:
            sys.argv[1:] = argv  # with config names resolved: also what DDP's launcher starts its ranks with
        return build_cli(args if args is None or isinstance(args, dict) else argv)


def main() -> None:
    """The ``spe-lightning`` console script: as ``cli_main``, without a return value (a console script
    passes the return value to ``sys.exit``, which would print the CLI object and exit 1)."""
    cli_main()


def build_cli(args: ArgsType, run: bool = True) -> SPECLI:
    """The CLI with our defaults; ``run=False`` builds model, data and trainer from a config and stops."""
    return SPECLI(
        ImageClassifier,
        LightningDataModule,
        trainer_class=SPETrainer,
        subclass_mode_data=True,
        parser_class=SPEArgumentParser,
        parser_kwargs={
            "prog": prog(),
            "description": description(),
            "formatter_class": RawDescriptionHelpFormatter,
        },
        save_config_callback=ConfigHParams,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "plugins": {"class_path": "spe_lightning.checkpoint_io.SafeCheckpointIO"},
            "callbacks": [RandomState()],
            "logger": {
                "class_path": "spe_lightning.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "runs", "name": None},
            },
        },
        args=args,
        run=run,
    )
