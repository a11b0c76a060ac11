"""Everything checked before a run writes anything: config files, values, outputs, checkpoint, data.

:func:`check_config_files` runs before the parser (a YAML error names its file), :func:`check_config`
right after it (values that Lightning or torch would divide by), :func:`check_before_run` once the model,
data and trainer exist and before the run folder is created. Each failure is an
:class:`~spe_lightning.core.errors.InputError` naming the value and what is allowed (exit status 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import instantiate_class

from spe_lightning.cli.config_files import config_args
from spe_lightning.core.errors import InputError, MissingInput
from spe_lightning.core.resources import host_memory, readable_bytes
from spe_lightning.core.validation import check_int
from spe_lightning.models import convolution_outputs
from spe_lightning.runs.checkpoints import check_checkpoint_fits
from spe_lightning.runs.log_names import monitorable_metrics
from spe_lightning.runs.plan import RunPlan
from spe_lightning.training.callbacks.prediction_writer import CSVPredictionWriter
from spe_lightning.training.classifier import ImageClassifier
from spe_lightning.training.identity import EVALUATION_KEYS, differences, recorded_identity

POSITIVE_TRAINER_KEYS = (
    "accumulate_grad_batches",
    "log_every_n_steps",
    "check_val_every_n_epoch",
    "num_nodes",
)
"""Trainer values that Lightning divides by (or counts with) and that must be >= 1 when given."""
SCHEDULER_DRY_RUN_EPOCHS = 10_000
MAPPING_SECTIONS = ("model", "trainer")
"""Config sections that only a mapping can give (``data:`` and ``optimizer:`` may be a class path)."""


def check_config_files(args: list[str]) -> None:
    """Each ``--config`` file (and each file it includes with ``config:``) is a readable YAML mapping."""
    for _, _, name in config_args(args):
        _check_config_file(Path(name))


def _check_config_file(path: Path) -> None:
    if not path.is_file():
        raise MissingInput(
            f"config file {path} does not exist, here or among the packaged configs "
            "(python -m spe_lightning configs lists them)"
        )
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise InputError(f"config file {path} is not valid YAML{at}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"config file {path} cannot be read ({err})") from None
    if not isinstance(content, dict):
        found = "empty" if content is None else f"a {type(content).__name__}, not a mapping"
        raise InputError(
            f"config file {path} is {found}; a config is a YAML mapping (model:, data:, trainer:, ...)"
        )
    for group in MAPPING_SECTIONS:  # a class path string is allowed for data, optimizer, lr_scheduler
        value = content.get(group)
        if value is not None and not isinstance(value, dict):
            raise InputError(
                f"{group}: {value!r} is not allowed; {group} takes a mapping of its arguments (config file "
                f"{path}; see python -m spe_lightning fit --print_config)"
            )
    included = content.get("config")
    for name in included if isinstance(included, list) else [included] if included else []:
        _check_config_file(path.parent / name if not Path(name).is_absolute() else Path(name))


def check_config(config: Namespace) -> None:
    """Values of the parsed subcommand config that would fail only later, with an unnamed error."""
    for group in ("model", "data", "trainer"):
        if not isinstance(config.get(group), (Namespace, type(None))):
            raise InputError(
                f"{group}: {config.get(group)!r} is not allowed; {group} takes a mapping of its arguments "
                f"(see python -m spe_lightning fit --print_config)"
            )
    if config.get("weights_only") is False:
        raise InputError(
            "weights_only=false is not allowed; checkpoints load as tensors and plain containers only "
            "(null or true), so that a file cannot run code"
        )
    trainer = config.trainer
    for key in POSITIVE_TRAINER_KEYS:
        check_int(f"trainer.{key}", trainer.get(key), allow_none=True)
    _check_optimization(config)
    checkpoint = config.get("checkpoint")
    if checkpoint is not None and checkpoint.get("save_last"):
        raise InputError(
            f"checkpoint.save_last={checkpoint.save_last!r} is not allowed: last.ckpt is written at every "
            "epoch end by last_checkpoint; leave checkpoint.save_last unset"
        )


def check_before_run(
    plan: RunPlan,
    trainer: Trainer,
    model: ImageClassifier,
    datamodule: LightningDataModule | None,
    config: Namespace,
    requested_model: dict[str, Any],
) -> None:
    """After the classes are built, before the run folder exists: outputs, checkpoint (the experiment it
    belongs to, its weights), metrics, data. ``requested_model`` is the model config as the user gave it
    (LightningCLI replaces it with a checkpoint's hyperparameters before the model is built)."""
    check_writable(plan.folder)
    writers = [cb for cb in trainer.callbacks if isinstance(cb, CSVPredictionWriter)]
    if plan.subcommand == "predict":
        for writer in writers:
            _check_new_file(writer.output_path, "prediction_writer.output_path")
    if plan.checkpoint is not None and plan.ckpt_path is not None:
        check_identity(plan, model, datamodule, requested_model)
        check_checkpoint_fits(plan.checkpoint, model, plan.ckpt_path)
        if not plan.fitting:
            check_finite(plan.checkpoint, plan.ckpt_path, model)
    if plan.fitting:
        _check_monitors(trainer, config)
        if plan.ckpt_path is None:
            model.check_pretrained_weights()
    if datamodule is not None:
        check_memory(plan.fitting, trainer, model, datamodule)
        datamodule.prepare_data()
        datamodule.setup(plan.subcommand)  # Lightning's stage names are the subcommands


def check_identity(
    plan: RunPlan, model: ImageClassifier, datamodule: LightningDataModule | None, requested: dict[str, Any]
) -> None:
    """The checkpoint belongs to the experiment this config describes (see
    :mod:`spe_lightning.training.identity`): all of it to continue training; the network, the class list and
    the input normalisation to evaluate or export."""
    hparams = {**dict(model.hparams), **requested}  # the user's own values: the checkpoint's must match them
    current = model.identity(hparams, datamodule)
    recorded = recorded_identity(plan.checkpoint)
    changed = differences(recorded, current, () if plan.fitting else EVALUATION_KEYS)
    if not changed:
        return
    more = (
        f" (and {', '.join(line.split('=')[0].split(':')[0] for line in changed[1:])})" if changed[1:] else ""
    )
    if plan.fitting:
        raise InputError(
            f"checkpoint {plan.ckpt_path} belongs to another experiment: it was trained with "
            f"{changed[0]}{more}; a resume continues the same experiment (what may change is listed in the "
            f"README); to train from its weights with this config, start a new run: "
            f"--model.init_from={plan.ckpt_path}"
        )
    raise InputError(
        f"checkpoint {plan.ckpt_path} was trained for another network, class list or input normalisation: "
        f"{changed[0]}{more}; "
        "evaluate it with the model and data options it was trained with"
    )


MEASURED_SIDE = 32
"""Image side at which a network's activations are measured, then scaled by area to the configured size."""


def bytes_per_activation(precision: str) -> int:
    """Bytes one activation takes under Lightning's ``trainer.precision`` ("16-mixed", "bf16-true", "32-true",
    "64-true", ...): 2 for 16-bit, 8 for 64-bit, else 4."""
    if precision.startswith(("16", "bf16")):
        return 2
    return 8 if precision.startswith("64") else 4


WORKER_MEMORY = 50 * 2**20
"""A lower bound on what a DataLoader worker process costs (an interpreter with torch loaded)."""


def check_memory(
    fitting: bool, trainer: Trainer, model: ImageClassifier, datamodule: LightningDataModule
) -> None:
    """Settings that decide memory (image size, batch size, workers) against what the device has, before the
    first allocation: the data ``setup`` will hold, and at least the convolution outputs one training step
    keeps for its backward pass (the largest one, for evaluation), measured at a small size and scaled."""
    host = host_memory()
    data = getattr(datamodule, "memory_needed", lambda: 0)()
    size = getattr(datamodule, "image_size", None)
    if data > host:
        raise InputError(
            f"data.image_size={size} makes the dataset {readable_bytes(data)} in memory, more than the "
            f"{readable_bytes(host)} this machine has; choose a smaller image_size"
        )
    workers = getattr(datamodule, "workers", lambda: 0)()
    if workers * WORKER_MEMORY > host:
        raise InputError(
            f"data.num_workers={workers} needs at least {readable_bytes(workers * WORKER_MEMORY)} for its "
            f"processes, more than the {readable_bytes(host)} this machine has; use null (Lightning's "
            "suggestion for the machine) or fewer"
        )
    batch = getattr(datamodule, "batch_size" if fitting else "eval_batch_size", None)
    if not size or not batch:
        return
    side = min(size, MEASURED_SIDE)
    total, largest = convolution_outputs(model.net, (model.hparams.in_chans, side, side))
    scale = (size / side) ** 2 * batch * bytes_per_activation(str(trainer.precision))
    needed = (total if fitting else largest) * scale
    device = trainer.strategy.root_device
    available = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else host
    if needed > available:
        step = "one training step" if fitting else "one evaluation batch"
        batch_key = "batch_size" if fitting else "eval_batch_size"
        raise InputError(
            f"data.image_size={size} with data.{batch_key}={batch} needs at least {readable_bytes(needed)} "
            f"for {step} ({model.hparams.backbone}'s convolution outputs), more than the "
            f"{readable_bytes(available)} of {device.type} memory; lower image_size or {batch_key}"
        )


def check_writable(folder: Path, option: str = "--trainer.logger.init_args.save_dir") -> None:
    """Raise a one-line error naming ``folder`` (and the ``option`` that moves it) if it cannot be
    created or written: its nearest existing ancestor must be a writable folder."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        reason = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"{existing} is not writable"
    else:
        return
    raise InputError(f"output folder {folder} cannot be written ({reason}); choose a writable {option}")


def _check_new_file(path: str | None, key: str) -> None:
    if path is None:
        return
    if Path(path).exists():
        raise InputError(f"{key} {path} already exists; choose a new file (nothing is written over)")
    check_writable(Path(path).parent, f"--{key}")


def check_finite(checkpoint: dict[str, Any], path: Path, model: ImageClassifier) -> None:
    """The network's weights and statistics (metric states such as a running max may be -inf)."""
    network = [f"net.{key}" for key, value in model.net.state_dict().items() if value.is_floating_point()]
    broken = [key for key in network if not bool(checkpoint["state_dict"][key].isfinite().all())]
    if broken:
        more = f" (+{len(broken) - 1} more)" if len(broken) > 1 else ""
        raise InputError(
            f"checkpoint {path} holds non-finite weights ({broken[0]}{more}); it cannot be evaluated"
        )


def _check_monitors(trainer: Trainer, config: Namespace) -> None:
    allowed = monitorable_metrics()
    monitors = [
        (f"{type(cb).__name__}(monitor=...)", cb.monitor)
        for cb in trainer.callbacks
        if isinstance(cb, (ModelCheckpoint, EarlyStopping)) and cb.monitor is not None
    ]
    scheduler = config.get("lr_scheduler")
    if scheduler is not None and (scheduler.get("init_args") or {}).get("monitor") is not None:
        monitors.append(("lr_scheduler.init_args.monitor", scheduler.init_args.monitor))
    for where, name in monitors:
        if name not in allowed:
            raise InputError(
                f"{where} {name!r} is not a metric the model logs; choose one of: {', '.join(allowed)}"
            )


def _check_optimization(config: Namespace) -> None:
    """Build the configured optimizer and scheduler on a dummy parameter and step them through the epochs."""
    optimizer_init, scheduler_init = config.get("optimizer"), config.get("lr_scheduler")
    if optimizer_init is None:
        return
    dummy = [torch.nn.Parameter(torch.zeros(1))]
    name = f"optimizer {optimizer_init.class_path.rsplit('.', 1)[-1]}({_args(optimizer_init)})"
    try:
        optimizer = instantiate_class(dummy, optimizer_init)
    except (ValueError, TypeError) as err:
        raise InputError(f"{name} is not allowed: {err}") from None
    if scheduler_init is None:
        return
    name = f"lr_scheduler {scheduler_init.class_path.rsplit('.', 1)[-1]}({_args(scheduler_init)})"
    max_epochs = config.trainer.get("max_epochs")
    epochs = max_epochs if max_epochs and max_epochs > 0 else SCHEDULER_DRY_RUN_EPOCHS
    epoch = 0
    try:
        scheduler = instantiate_class(optimizer, scheduler_init)
        plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        while epoch < min(epochs, SCHEDULER_DRY_RUN_EPOCHS):
            epoch += 1
            optimizer.step()
            scheduler.step(0.0) if plateau else scheduler.step()
    except Exception as err:  # the scheduler's own arithmetic: ZeroDivisionError, ValueError, ...
        at = f" at epoch {epoch}" if epoch else ""
        raise InputError(f"{name} fails{at} ({type(err).__name__}: {err}); fix its arguments") from None


def _args(init: Namespace) -> str:
    values = vars(init.get("init_args") or Namespace())
    return ", ".join(f"{k}={v!r}" for k, v in values.items() if k != "optimizer")
