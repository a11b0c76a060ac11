"""How runs are named and started: the run name a model config gives, the command line that runs a
fit, and the loggers whose folders are the run's."""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from spe_lightning.layers import pool_label
from spe_lightning.models import backbone_label
from spe_lightning.runs.layout import FILE_LOGGERS


def file_loggers(logger: Any) -> list[Namespace]:
    """The configured TensorBoard and CSV loggers (and their subclasses): the loggers that write into a
    folder of their own, which the run layer makes the run folder. Any other logger (W&B, MLflow, ...)
    keeps its own settings."""
    entries = logger if isinstance(logger, list) else [logger]
    return [
        entry
        for entry in entries
        if isinstance(entry, Namespace) and issubclass(_logger_class(entry.get("class_path")), FILE_LOGGERS)
    ]


def _logger_class(class_path: Any) -> type:
    """The class a parsed ``class_path`` names (the parser checked it imports); ``object`` for none."""
    if not isinstance(class_path, str) or "." not in class_path:
        return object
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name, object)


UNNAMED = (None, "lightning_logs")
"""Logger names that name no run: ours (null) and Lightning's default; the model names the run instead."""


def model_run_name(model: Any) -> str:
    """``<backbone>-<attention>-<pool>`` of a model config: ``cifar_resnet164-spem-learned``,
    ``resnet50-se-avg``, ``cifar_resnet20-none`` (the attention's own pool when the config names none), so
    runs compare side by side in TensorBoard."""
    parts = (model_label(model), attention_label(model), pool_label_of(model))
    return "-".join(part for part in parts if part is not None)


def name_unnamed_runs(config: Namespace) -> None:
    """Give every configured logger that names no run the model's name (:func:`model_run_name`)."""
    for entry in file_loggers(config.get("trainer", Namespace()).get("logger")):
        if entry.init_args.name in UNNAMED:
            entry.init_args.name = model_run_name(config.get("model") or Namespace())


def model_label(model: Any) -> str:
    """The backbone of a model config as users say it: ``cifar_resnet164``, ``resnet50``."""
    kwargs = model.get("backbone_kwargs") or {}
    return backbone_label(model.get("backbone") or "cifar_resnet", kwargs)


def attention_label(model: Any) -> str:
    """The attention of a model config: ``se``, ``spem``, ``none``."""
    return str(model.get("attention") or "none").lower()


def pool_label_of(model: Any) -> str | None:
    """The pool of a model config under its one name, the attention's own when the config names none
    (``cifar_resnet20-none`` has none)."""
    return pool_label(attention_label(model), model.get("pool"))


def dataset_label(class_path: str | None) -> str | None:
    """A datamodule's class path as the dataset it loads: ``spe_lightning.data.CIFAR100DataModule`` ->
    ``CIFAR100``."""
    if not class_path:
        return None
    return str(class_path).rsplit(".", 1)[-1].removesuffix("DataModule")


def fit_command(*args: str) -> list[str]:
    """The command line that runs ``python -m spe_lightning <args>`` with this interpreter."""
    return [sys.executable, "-m", "spe_lightning", *args]


def resume_command(args: list[str], last: Path) -> str:
    """``args`` (a fit's command line) with its ``--ckpt_path`` replaced by ``last``, as a shell line."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return shlex.join(fit_command(*kept, f"--ckpt_path={last}"))
