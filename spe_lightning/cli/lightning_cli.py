"""Command line: ``python -m spe_lightning {fit,validate,test,predict} --config configs/<name>.yaml``.

A LightningCLI whose defaults are the paper's recipe (:mod:`~spe_lightning.training.recipe`), TensorBoard
logs under ``runs/``, a best-by-``val/acc1`` plus last checkpoint, a learning-rate monitor and a CSV
prediction writer. Every default is a config key, so ``fit --print_config`` shows (and a YAML file
overrides) all of it. The ``optimizer:`` and ``lr_scheduler:`` sections are passed to the model, which
builds them over its parameter groups.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import textwrap
from argparse import RawDescriptionHelpFormatter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError, Namespace
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, LRSchedulerTypeTuple
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch.optim import Optimizer

import spe_lightning.data  # noqa: F401  (imported so configs can name datamodules by class name alone)
from spe_lightning.cli.checks import check_before_run, check_config, check_config_files
from spe_lightning.cli.config_files import resolve_config_args
from spe_lightning.cli.exit_policy import ResumeHint, debug, exit_policy
from spe_lightning.cli.library_notices import quiet_notices
from spe_lightning.cli.moved_modules import map_moved_modules
from spe_lightning.cli.parser import SPEArgumentParser, concise_parser_error
from spe_lightning.core.errors import InputError
from spe_lightning.kernels.cpu_max_min import kernel_mode
from spe_lightning.layers.spem_fused import fused_gate_mode
from spe_lightning.runs.layout import open_csv_loggers, write_result
from spe_lightning.runs.lock import RunLock
from spe_lightning.runs.log_names import TEST_ACC1, VAL_ACC1, VAL_ACC1_BEST, tensorboard_hint
from spe_lightning.runs.naming import name_unnamed_runs
from spe_lightning.runs.plan import RunPlan, plan_run
from spe_lightning.training.callbacks.config_hparams import ConfigHParams
from spe_lightning.training.callbacks.cpu_threads import CPUThreads
from spe_lightning.training.callbacks.fault_tolerance import FiniteLossGuard, LastCheckpoint, RandomState
from spe_lightning.training.callbacks.learning_rate import LearningRateLogger
from spe_lightning.training.callbacks.pooling_monitor import PoolingMonitor
from spe_lightning.training.callbacks.prediction_writer import CSVPredictionWriter
from spe_lightning.training.callbacks.signals import PeerWatch, StopOnSignal
from spe_lightning.training.callbacks.throughput import TrainingThroughput
from spe_lightning.training.classifier import ImageClassifier
from spe_lightning.training.recipe import PAPER_LR_SCHEDULER, PAPER_OPTIMIZER
from spe_lightning.training.speed import evaluates_in_inference_mode

SUBCOMMANDS = {
    "fit": "Train, validating every epoch; --ckpt_path last continues an interrupted run in its folder.",
    "validate": "Evaluate a checkpoint (--ckpt_path best, last or a file) on the validation set.",
    "test": "Evaluate a checkpoint on the test set, kept apart from fit so that nothing is tuned on it.",
    "predict": "Classify the prediction images with a checkpoint and write the classes to a CSV file.",
}
"""Each subcommand's one-line help; Lightning's come from the first line of the Trainer's docstrings."""
CKPT_PATH_HELP = {
    "fit": "``last``: continue the newest run of this name from its ``checkpoints/last.ckpt``, in its folder "
    "(a fresh run if none has one). A run's own ``last.ckpt``: continue that run. Any other checkpoint file: "
    "start a new run from it, leaving its run as it was. ``best`` is refused: it would rewind a run.",
    "evaluate": "Required. ``last`` or ``best``: that checkpoint of the newest run of this name (or of the "
    "version the logger pins); or a checkpoint file. The logs go to ``<run>/eval/<subcommand>/version_K``.",
}
"""The ``--ckpt_path`` help: what ``last``, ``best`` and a file mean to the run layer
(:mod:`spe_lightning.runs`), not Lightning's keywords (``hpc``, ``registry``), which it does not take."""
ARGUMENT_HELP = {
    "weights_only": "null (default) or true: every checkpoint loads as tensors and plain containers only, "
    "so that a file cannot run code. false is refused: Lightning reads hyperparameters that way too.",
    "verbose": "Print the table of metrics at the end.",
    "return_predictions": "Also keep every prediction in memory (Lightning's default: yes, but not in "
    "spawned processes); the CSV file is written either way.",
}
"""The help of the Trainer methods' other arguments that the CLI offers."""
CHECKPOINT_NAME = f"best-epoch={{epoch:03d}}-acc1={{{VAL_ACC1}:.4f}}"
"""Best-k checkpoint files: ``best-epoch=016-acc1=0.9913.ckpt``."""


def command_line(args: ArgsType) -> list[str]:
    """The arguments as a list (``sys.argv`` when None); a dict of arguments has no command line."""
    return [] if isinstance(args, (dict, Namespace)) else list(sys.argv[1:] if args is None else args)


class _CurrentStderr(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record comes (notebooks and tests replace it; a stream
    bound once would be closed by then)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """``StreamHandler.__init__`` sets a stream; this handler always looks it up."""


def _show_kernel_build() -> None:
    """Let the one-time build of the CPU kernel (a pause of some seconds at the first step) say so."""
    log = logging.getLogger("spe_lightning.kernels")
    if not log.handlers:
        log.addHandler(_CurrentStderr())
        log.setLevel(logging.INFO)


def _described(subcommand: str) -> Callable[..., Any]:
    """The Trainer's ``subcommand`` method with our docstring: the subcommand's help (:data:`SUBCOMMANDS`)
    and the help of the method's arguments that the CLI offers. The signature stays the Trainer's."""
    method = getattr(Trainer, subcommand)

    @functools.wraps(method)
    def described(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        return method(self, *args, **kwargs)

    parameters = inspect.signature(method).parameters
    arguments = {"ckpt_path": CKPT_PATH_HELP["fit" if subcommand == "fit" else "evaluate"]}
    arguments |= {name: text for name, text in ARGUMENT_HELP.items() if name in parameters}
    documented = "".join(f"    {name}: {text}\n" for name, text in arguments.items())
    described.__doc__ = f"{SUBCOMMANDS[subcommand]}\n\nArgs:\n{documented}"
    return described


class SPETrainer(Trainer):
    """Lightning's Trainer: devices, precision, epochs, logging and callbacks.

    Lightning's own, but for the docstrings of its subcommands, which are the CLI's help.
    """

    fit = _described("fit")
    validate = _described("validate")
    test = _described("test")
    predict = _described("predict")


def prog() -> str:
    """How the user started us: ``python -m spe_lightning`` or the ``spe-lightning`` script."""
    name = Path(sys.argv[0]).name
    return "python -m spe_lightning" if name in ("__main__.py", "-m", "") else name


def description(tools: dict[str, str]) -> str:
    """The main ``--help`` text: what the program does, where to start, and the ``tools`` beside it."""
    lines = "\n".join(f"  {prog()} {name} --help: {text}" for name, text in tools.items())
    summary = (
        "Train and evaluate image classifiers with pluggable channel attention (SPEM, SE, ECA, CBAM, SRM, "
        "FcaNet, GCT, coordinate attention) and pooling."
    )
    also = f"\n\nAlso:\n{lines}" if tools else ""
    return f"{textwrap.fill(summary, 88)}\nStart with: {prog()} fit --config quickstart.yaml{also}"


class ParsedConfig(Exception):
    """Raised by :class:`SPECLI` with ``parse_only``: parsing and the checks of values are done."""

    def __init__(self, config: Namespace) -> None:
        super().__init__("parsed")
        self.config = config


def input_error_in(err: BaseException) -> InputError | None:
    """The :class:`InputError` that caused ``err`` (itself, or one in its chain of causes), if any.

    jsonargparse wraps the errors of subclass arguments (the datamodule) in a summary of every type it tried;
    the innermost error is the one that names the value.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, InputError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def constructor_rejection(err: BaseException) -> str | None:
    """What a class built from the config (a logger, a callback) said when it refused its arguments.

    jsonargparse reports it as the first of the reasons each type of a union argument failed
    (``Does not validate against any of the Union subtypes ... Errors: - <the constructor's message>``)."""
    text = str(err)
    if not text.startswith("Does not validate against any of the Union subtypes"):
        return None
    reasons = [
        line.strip()[2:]
        for line in text.partition("Errors:")[2].splitlines()
        if line.strip().startswith("- ")
    ]
    return reasons[0] if reasons else None


def test_accuracies(
    trainer: Trainer, model: LightningModule, datamodule: LightningDataModule, best_path: str | None
) -> dict[str, float | None]:
    """Test top-1 of the weights a fit ended with (``last``) and of its best checkpoint (``selected``).

    The two evaluations write nothing to the run's loggers: both would land on the fit's last step under one
    ``test/`` tag, in a fresh event file once the fit closed its writers. ``result.json`` holds them, each by
    name. The fit's trainer and model are left as the fit left them: the last weights in the model, the fit's
    metrics in ``callback_metrics`` (beside the test's), its ``ckpt_path`` and its loggers."""
    weights = {key: value.detach().clone() for key, value in model.state_dict().items()}
    metrics, ckpt_path, loggers = dict(trainer.callback_metrics), trainer.ckpt_path, trainer.loggers
    trainer.loggers = []

    def test(path: str | None) -> float | None:
        results = trainer.test(model, datamodule=datamodule, ckpt_path=path, verbose=False)
        value = results[0].get(TEST_ACC1) if results else None
        return None if value is None else float(value)

    try:
        return {"last": test(None), "selected": test(best_path) if best_path else None}
    finally:
        model.load_state_dict(weights)
        trainer.callback_metrics.update(metrics)
        trainer.ckpt_path = ckpt_path
        trainer.loggers = loggers


def input_shape(datamodule: LightningDataModule) -> list[int] | None:
    """One network input's shape, ``[channels, height, width]``, for counting FLOPs later."""
    size = getattr(datamodule, "image_size", None)
    return None if size is None else [getattr(datamodule, "in_chans", 3), size, size]


def fit_result(metrics: dict[str, Any], selected_on: str | None, tested: dict[str, float | None]) -> dict:
    """What a finished fit reports, each figure named by how it was chosen (``result.json``).

    ``val_acc1_best``: the best epoch on the split that validated (``best_selected_on``).
    ``test_acc1_selected``: the test top-1 of the checkpoint chosen on a held-out validation split.
    ``test_acc1_last``: the test top-1 of the last epoch. ``test_acc1_best_on_test``: the best epoch's test
    top-1 chosen on test itself: the paper's protocol, where the validation loader read the test split.
    """
    best = metrics.get(VAL_ACC1_BEST)
    best = None if best is None else float(best)
    final = float(metrics[VAL_ACC1]) if VAL_ACC1 in metrics else None
    on_test = selected_on == "test"
    return {
        "val_acc1_best": best,
        "val_acc1": final,
        "best_selected_on": selected_on,
        "test_acc1_selected": tested.get("selected"),
        "test_acc1_last": final if on_test else tested.get("last"),
        "test_acc1_best_on_test": best if on_test else None,
    }


class SPECLI(LightningCLI):
    """LightningCLI with the paper's defaults, linked data -> model arguments, one-line errors, and the run
    layer (:mod:`spe_lightning.runs`): every subcommand's folder and checkpoint are planned once, right
    after parsing, everything is checked (:mod:`spe_lightning.cli.checks`) before the folder is claimed.

    Args:
        parse_only: stop after parsing and checking the values (raises :class:`ParsedConfig`).
    """

    def __init__(self, *args: Any, parse_only: bool = False, **kwargs: Any) -> None:
        self.argv = command_line(kwargs.get("args"))
        self.parse_only = parse_only
        self.plan: RunPlan | None = None
        self.requested_model: dict[str, Any] = {}
        self.lock: RunLock | None = None
        self.stack = ExitStack()
        with self.stack:  # on any ending: the run's lock released
            super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the optimizer and scheduler are the model's arguments (it builds them over its parameter groups)
        parser.add_optimizer_args((Optimizer,), link_to="model.optimizer")
        parser.add_lr_scheduler_args(LRSchedulerTypeTuple, link_to="model.lr_scheduler")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")  # after it: last holds its best
        parser.add_lightning_class_args(LearningRateLogger, "lr_monitor")
        parser.add_lightning_class_args(CSVPredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(PoolingMonitor, "pooling_monitor")
        parser.add_lightning_class_args(FiniteLossGuard, "loss_guard")
        parser.add_lightning_class_args(CPUThreads, "cpu_threads")
        parser.add_lightning_class_args(TrainingThroughput, "throughput")
        parser.set_defaults(
            {
                "optimizer": PAPER_OPTIMIZER,
                "lr_scheduler": PAPER_LR_SCHEDULER,
                "checkpoint.monitor": VAL_ACC1,
                "checkpoint.mode": "max",
                "checkpoint.filename": CHECKPOINT_NAME,
                "checkpoint.auto_insert_metric_name": False,
                "lr_monitor.logging_interval": "epoch",
            }
        )
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse, check the values, then plan the run: its folder and its checkpoint (read once, mapped)."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:  # a parser built with exit_on_error=False (parse_only)
            raise InputError(concise_parser_error(" ".join(str(err).split()))) from None
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        check_config(config)
        if self.parse_only:
            raise ParsedConfig(config)
        if subcommand is None:
            return
        self.requested_model = config.model.as_dict()  # before LightningCLI merges a checkpoint's hparams
        name_unnamed_runs(config)
        config.trainer.inference_mode &= evaluates_in_inference_mode(config.model.compile)
        self.plan = plan_run(config, subcommand)
        self.plan.apply(config)
        if self.plan.resumes_in_place:  # keep the config the run started with; save this one beside it
            name = f"config.step{self.plan.start_step}.yaml"
            self.save_config_kwargs = {**self.save_config_kwargs, "config_filename": name}

    def instantiate_classes(self) -> None:
        """Build model, data and trainer. A value that a constructor rejects is bad input (exit 2): our
        :class:`InputError`, Lightning's ``MisconfigurationException`` (its word for a Trainer setting
        that cannot work), and what a logger or callback said when it refused its arguments
        (:func:`constructor_rejection`). Anything else a constructor raises is a failure of ours (exit 1)."""
        try:
            super().instantiate_classes()
        except Exception as err:
            if debug():
                raise
            found = input_error_in(err)
            if found is not None:
                raise found from None
            if isinstance(err, MisconfigurationException):
                raise InputError(str(err)) from None
            refused = constructor_rejection(err)
            if refused is not None:
                raise InputError(refused) from None
            raise

    def start_run(self) -> None:
        """Before any subcommand: check everything, then claim the folder (and lock a fit run)."""
        subcommand = self.subcommand
        check_before_run(
            self.plan,
            self.trainer,
            self.model,
            self.datamodule,
            self.config_init[subcommand],
            self.requested_model,
        )
        if self.plan.notice:
            rank_zero_info(self.plan.notice)
        if subcommand == "fit" and any(isinstance(lg, TensorBoardLogger) for lg in self.trainer.loggers):
            rank_zero_info(tensorboard_hint(self.plan.folder.parent))
        if not self.trainer.loggers:
            rank_zero_info(
                f"no logger (trainer.logger: false): no metric, learning rate or pooling value is logged; "
                f"the checkpoints, config.yaml and result.json are in {self.plan.folder}"
            )
        self.lock = self.plan.claim()
        if self.lock is not None:
            self.stack.callback(self.lock.release)
        open_csv_loggers(self.trainer)
        ResumeHint.command = self.plan.resume_command(self.argv)

    before_fit = before_validate = before_test = before_predict = start_run

    def after_fit(self) -> None:
        """Mark the run finished (``result.json``) with what it measured, and print the best validation top-1.

        With a held-out validation split, the test split is evaluated twice, on every rank: the last
        epoch's weights and the checkpoint chosen on validation (what the run reports). Under the paper's
        protocol the validation loader read the test split, so the same figures are its best and last
        epochs: nothing more is evaluated.
        """
        if self.trainer.interrupted:
            return
        ckpt = self.trainer.checkpoint_callback
        best_path = ckpt.best_model_path if ckpt is not None else None
        metrics = dict(self.trainer.callback_metrics)
        selected_on = getattr(self.datamodule, "selects_on", lambda: None)()
        tested = (
            test_accuracies(self.trainer, self.model, self.datamodule, best_path)
            if (selected_on == "validation")
            else {}
        )
        if not self.trainer.is_global_zero:
            return
        speed = next((c for c in self.trainer.callbacks if isinstance(c, TrainingThroughput)), None)
        write_result(
            self.plan.folder,
            fit_result(metrics, selected_on, tested)
            | {
                "epochs": self.trainer.current_epoch,
                "global_step": self.trainer.global_step,
                "best_checkpoint": best_path,
                "input_shape": input_shape(self.datamodule),
                "train_img_per_s": speed.rate if speed is not None else None,
                "train_devices": speed.devices if speed is not None else None,
            },
        )
        best = metrics.get(VAL_ACC1_BEST)
        if ckpt is not None and ckpt.best_model_score is not None:
            print(f"best {VAL_ACC1} = {ckpt.best_model_score:.4f} (checkpoint: {best_path})")
        elif best is not None:
            print(f"best {VAL_ACC1} = {best:.4f}")
        if tested.get("selected") is not None:
            last = tested["last"]
            print(f"{TEST_ACC1} of that checkpoint = {tested['selected']:.4f} (last epoch: {last:.4f})")

    def after_predict(self) -> None:
        for writer in self.trainer.callbacks:
            if isinstance(writer, CSVPredictionWriter) and writer.path is not None:
                print(f"wrote {writer.rows} predictions to {writer.path}")


def build_cli(
    args: ArgsType,
    run: bool = True,
    cli_class: type[SPECLI] = SPECLI,
    tools: dict[str, str] | None = None,
    parse_only: bool = False,
    command: str | None = None,
) -> SPECLI:
    """The CLI with our defaults. ``run=False`` builds model, data and trainer from a config (no
    subcommand) and stops; ``cli_class`` may add arguments (the export tool's); ``tools`` are listed in
    ``--help``; ``parse_only`` raises :class:`ParsedConfig` once the arguments are parsed and checked;
    ``command`` names a tool built on the CLI in its usage line (``export``)."""
    return cli_class(
        ImageClassifier,
        LightningDataModule,
        trainer_class=SPETrainer,
        subclass_mode_data=True,
        parser_class=SPEArgumentParser,
        parser_kwargs={
            "prog": f"{prog()} {command}" if command else prog(),
            "description": description(tools or {}),
            "formatter_class": RawDescriptionHelpFormatter,
            **({"exit_on_error": False} if parse_only else {}),
        },
        save_config_callback=ConfigHParams,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "plugins": {"class_path": "spe_lightning.runs.checkpoints.SafeCheckpointIO"},
            "callbacks": [RandomState(), StopOnSignal(), PeerWatch()],
            "logger": {
                "class_path": "spe_lightning.training.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "runs", "name": None},
            },
        },
        args=args,
        run=run,
        parse_only=parse_only,
    )


def prepare_arguments(args: ArgsType) -> list[str]:
    """The command line with ``--config`` names resolved (packaged configs), every config file checked, the
    library's notices quieted and the modules of earlier releases mapped (old ``config.yaml`` files)."""
    argv = resolve_config_args(command_line(args))
    quiet_notices()
    map_moved_modules()
    check_config_files(argv)
    return argv


def parse_config(args: list[str]) -> Namespace:
    """A subcommand's arguments (``["fit", "--config", ...]``) parsed and checked as ``cli_main`` would, and
    its model built once (names and arguments only its constructor knows: an unknown attention, an impossible
    depth); no data, trainer or folder. A bad value is an :class:`InputError` that names it."""
    argv = prepare_arguments(args)
    try:
        build_cli(argv, parse_only=True)
    except ParsedConfig as parsed:
        ImageClassifier(**parsed.config.model.as_dict())
        return parsed.config
    raise RuntimeError("the parser returned without a config")  # parse_only always raises ParsedConfig


def cli_main(args: ArgsType = None, tools: dict[str, str] | None = None) -> SPECLI:
    """LightningCLI's subcommands (``fit``, ``validate``, ``test``, ``predict``); ``tools`` are listed in
    ``--help``. Tests pass ``args``; :mod:`spe_lightning.__main__` routes here."""
    with exit_policy():
        argv = prepare_arguments(args)
        kernel_mode()  # a bad SPE_LIGHTNING_CPU_KERNEL fails here, not at the first training step
        fused_gate_mode()  # and a bad SPE_LIGHTNING_FUSED_GATE
        _show_kernel_build()
        if args is None:  # with config names resolved: also what DDP's launcher starts its ranks with
            sys.argv[1:] = argv
            return build_cli(None, tools=tools)  # LightningCLI reads sys.argv itself
        return build_cli(args if isinstance(args, (dict, Namespace)) else argv, tools=tools)
