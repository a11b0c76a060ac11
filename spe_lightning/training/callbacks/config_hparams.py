"""TensorBoard's HParams view of a run: the whole resolved config, flattened, with its result columns.

A LightningCLI ``SaveConfigCallback`` (its documented ``save_config`` extension point): it already holds
the parsed config, so the HParams view shows what ran, with the optimizer, scheduler, data and trainer
settings next to the model's, not only the LightningModule's ``hparams``.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2

from spe_lightning.runs.layout import run_folder, run_of_checkpoint
from spe_lightning.runs.log_names import ABOVE_HALF, VAL_ACC1, VAL_ACC1_BEST, VAL_LOSS, is_summary
from spe_lightning.runs.naming import pool_label_of
from spe_lightning.training.callbacks.pooling_monitor import final_value_tags

SECTIONS = ("model", "data", "optimizer", "lr_scheduler")
"""Config sections shown whole (a class as its name, its ``init_args`` as ``<section>.<argument>``)."""
TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "precision",
    "accelerator",
    "devices",
    "num_nodes",
    "accumulate_grad_batches",
    "gradient_clip_val",
)
"""The trainer settings that change a result (the rest is logging, paths and progress bars)."""
METRICS = (VAL_ACC1_BEST, VAL_ACC1, VAL_LOSS)
HEADLINE = ("model.backbone", "model.attention", "model.pool", "optimizer.lr", "seed")
"""The settings this project's studies vary. TensorBoard opens the HParams view with five columns ticked,
those marked as differing between runs first: these are marked so (the view cannot know before runs are
compared), every other setting is one tick away."""
HParam = bool | int | float | str
KEEP_NULLS = (
    {"skip_unset": False}
    if tuple(int(part) for part in version("jsonargparse").split(".")[:2]) >= (4, 49)
    else {"skip_none": False}
)
"""``config.yaml`` keeps the settings that are null (``model.pool: null``): jsonargparse 4.49 renamed the
argument that says so, and the floor, 4.39, has the old name only."""
CONFIG_KEY = "config"
"""The key the flattened config is logged under for loggers other than TensorBoard (``config/optimizer``)."""


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, HParam]]:
    """``(name, value)`` pairs: dicts recurse with dotted names, a ``class_path`` is shown by its class name,
    lists as their YAML flow form, None as ``null``; bools, numbers and strings as themselves."""
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, dict) and "class_path" in value:
        yield prefix, str(value["class_path"]).rpartition(".")[2]
        yield from _flatten(prefix, value.get("init_args") or {})
    elif isinstance(value, dict):
        for key, inner in value.items():
            if not key.startswith("_"):
                yield from _flatten(f"{prefix}.{key}", inner)
    elif value is None:
        yield prefix, "null"
    elif isinstance(value, (bool, int, float, str)):
        yield prefix, value
    else:  # lists (milestones), tuples
        yield prefix, "[" + ", ".join(str(v) for v in value) + "]"


def flatten_config(config: Namespace) -> dict[str, HParam]:
    """The settings that make a run, with readable names: ``model.attention``, ``data.batch_size``,
    ``optimizer`` (``SGD``), ``optimizer.lr``, ``lr_scheduler.milestones``, ``trainer.max_epochs``,
    ``seed``."""
    params: dict[str, HParam] = {}
    for section in SECTIONS:
        if config.get(section) is not None:
            params.update(_flatten(section, config[section]))
    for linked in SECTIONS:  # the optimizer and scheduler sections, passed into the model: shown once
        params = {
            k: v for k, v in params.items() if k != f"model.{linked}" and not k.startswith(f"model.{linked}.")
        }
    trainer = config.get("trainer") or Namespace()
    for key in TRAINER_KEYS:
        if key in trainer:
            params.update(_flatten(f"trainer.{key}", trainer[key]))
    params.update(_flatten("seed", config.get("seed_everything")))
    if params.get("model.pool") == "null":  # the attention's own pool, by its name (SPEM: learned)
        params["model.pool"] = pool_label_of(config.model) or "null"
    return params


class ConfigHParams(SaveConfigCallback):
    """Saves ``config.yaml`` in the run folder (:func:`~spe_lightning.runs.layout.run_folder`, whatever the
    loggers: Lightning's ``trainer.log_dir`` is the store of a W&B or MLflow logger, shared by every run),
    and gives every logger the flattened config (:func:`flatten_config`): TensorBoard as the run's HParams,
    with ``val/acc1_best``, ``val/acc1``, ``val/loss`` and every stage's final lam summaries
    (:func:`~spe_lightning.training.callbacks.pooling_monitor.final_value_tags`) as metric columns
    (:func:`metric_columns`); any other
    logger through ``log_hyperparams``, under ``config``. Fit runs only; a run resumed in its own folder
    keeps the HParams its first start wrote."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "save_to_log_dir": False})  # save_config writes it

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        path = run_folder(trainer) / self.config_filename
        if path.exists() and not self.overwrite:
            raise RuntimeError(f"{path} exists: a run's config is never written over")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(
            self.config, str(path), **KEEP_NULLS, overwrite=self.overwrite, multifile=self.multifile
        )
        if stage != "fit":
            return
        params = flatten_config(self.config)
        metrics = metric_columns(final_value_tags(pl_module))
        ckpt = trainer.ckpt_path
        if ckpt is not None and run_of_checkpoint(Path(ckpt)).folder.absolute() == path.parent.absolute():
            return  # resumed in place
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                write_hparams(logger, params, metrics)
            else:  # under one key: Lightning logs the model's own hparams (``optimizer/class_path``) beside
                logger.log_hyperparams({CONFIG_KEY: params})


def _data_type(value: HParam) -> int:
    if isinstance(value, bool):
        return api_pb2.DATA_TYPE_BOOL
    return api_pb2.DATA_TYPE_STRING if isinstance(value, str) else api_pb2.DATA_TYPE_FLOAT64


def metric_columns(final_values: list[str]) -> list[str]:
    """The HParams metric columns, in the order that puts the headline among the five that TensorBoard
    (2.21) ticks when it opens the view: the best validation top-1 and each stage's count of blocks above
    0.5 (how its lams split between max and min, which a mean hides), then the other validation figures and
    the stages' mean, min and max."""
    split = [tag for tag in final_values if is_summary(tag, ABOVE_HALF)]
    return list(dict.fromkeys([VAL_ACC1_BEST, *split, *METRICS, *final_values]))


def write_hparams(logger: TensorBoardLogger, params: dict[str, HParam], metrics: list[str]) -> None:
    """One HParams session (``params``) and its experiment (the columns, ``metrics`` last) in the run.

    Written with TensorBoard's own protos, which keep booleans as booleans; the metric columns read the
    last value of those scalar tags, so no placeholder value is logged.
    """
    experiment = api_pb2.Experiment(
        hparam_infos=[
            api_pb2.HParamInfo(name=name, type=_data_type(value), differs=name in HEADLINE)
            for name, value in params.items()
        ],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metrics],
    )
    data = plugin_data_pb2.HParamsPluginData(experiment=experiment, version=metadata.PLUGIN_DATA_VERSION)
    summary = Summary(
        value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=metadata.create_summary_metadata(data))]
    )
    writer = logger.experiment.file_writer
    writer.add_summary(summary)
    writer.add_summary(summary_v2.hparams_pb(params))
    writer.flush()
