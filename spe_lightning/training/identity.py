"""A run's identity: what defines its experiment, recorded in every checkpoint it writes and checked whenever
a checkpoint is used again.

- ``data``: the datamodule, where its images come from, its seeds and splits, image size, channels,
  normalisation, the classes in their order, the batch size and ``drop_last`` (they fix which images a
  resumed epoch still has to see);
- ``network``: backbone and its arguments, attention, pool (by its one name), their arguments, classes
  and input channels;
- ``optimization``: the optimizer's and scheduler's classes and the parameter groups;
- ``loss``: the pooling regulariser's weight and label smoothing.

``fit --ckpt_path`` continues an experiment, so every entry must match; ``validate``, ``test`` and
``predict`` need the network and the class list only. What may change on resume (more epochs, devices,
workers, logging, precision, speed options) is not part of the identity. A checkpoint written before
identities were recorded (spe_lightning 0.1) is compared on what it holds: the model's and the
datamodule's hyperparameters and the optimizer's parameter groups.
"""

from __future__ import annotations

from typing import Any

from spe_lightning.layers import pool_label
from spe_lightning.training.recipe import PAPER_LR_SCHEDULER, PAPER_OPTIMIZER, build_optimizer

IDENTITY_KEY = "spe_lightning_identity"
"""Where a checkpoint holds its run's identity."""
EVALUATION_KEYS = ("network", "data.classes", "data.num_classes", "data.mean", "data.std")
"""What an evaluation or an export checks: the checkpoint must be for this network, this class list and this
input normalisation (another one gives other predictions, silently)."""
NOT_WEIGHTS = ("weights",)
"""Backbone arguments that only choose the starting weights of a fresh run."""
GROUP_KEYS = "group_keys"
"""Compared as a subset: a newer torch may add hyperparameters to the same optimizer's groups."""


def network_identity(hparams: dict[str, Any]) -> dict[str, Any]:
    """The network a classifier's hyperparameters build."""
    attention = str(hparams.get("attention") or "none").lower()
    kwargs = {k: v for k, v in (hparams.get("backbone_kwargs") or {}).items() if k not in NOT_WEIGHTS}
    return {
        "backbone": str(hparams.get("backbone", "cifar_resnet")).lower(),
        "backbone_kwargs": kwargs,
        "attention": attention,
        "pool": pool_label(attention, hparams.get("pool")),
        "attention_kwargs": hparams.get("attention_kwargs") or {},
        "num_classes": hparams.get("num_classes"),
        "in_chans": hparams.get("in_chans", 3),
    }


def loss_identity(hparams: dict[str, Any]) -> dict[str, Any]:
    return {
        "pool_alpha": hparams.get("pool_alpha", 0.1),
        "label_smoothing": hparams.get("label_smoothing", 0.0),
    }


def group_keys(groups: list[dict[str, Any]]) -> list[str]:
    """The hyperparameter names of the parameter groups: an optimizer's fingerprint (SGD's ``momentum`` is
    not Adam's ``betas``), for a checkpoint that does not name its optimizer's class."""
    return sorted({key for group in groups for key in group if key not in ("params", "initial_lr")})


def experiment_identity(
    hparams: dict[str, Any], groups: list[dict[str, Any]], datamodule: Any
) -> dict[str, Any]:
    """The identity of the classifier ``hparams`` describe, its optimizer over parameter ``groups``, trained
    on ``datamodule`` (None, or one without ``identity()``: the data is not recorded)."""
    optimizer_spec = _plain(hparams.get("optimizer") or PAPER_OPTIMIZER)
    scheduler = hparams.get("lr_scheduler", PAPER_LR_SCHEDULER)
    optimizer = build_optimizer(optimizer_spec, groups)
    identity = {
        "network": network_identity(hparams),
        "optimization": {
            "optimizer": optimizer_spec["class_path"],
            "lr_scheduler": _plain(scheduler)["class_path"] if scheduler else None,
            "parameter_groups": len(optimizer.param_groups),
            GROUP_KEYS: group_keys(optimizer.param_groups),
        },
        "loss": loss_identity(hparams),
    }
    if datamodule is not None and hasattr(datamodule, "identity"):
        identity["data"] = datamodule.identity()
    return identity


def _plain(spec: Any) -> dict[str, Any]:
    return spec.as_dict() if hasattr(spec, "as_dict") else dict(spec)


def recorded_identity(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The identity a checkpoint was written with; for an older checkpoint, what it holds of one."""
    if IDENTITY_KEY in checkpoint:
        return checkpoint[IDENTITY_KEY]
    identity: dict[str, Any] = {}
    hparams = checkpoint.get("hyper_parameters") or {}
    if hparams:  # a checkpoint without them (written by hand, or by another tool) is checked by its shapes
        identity.update(network=network_identity(hparams), loss=loss_identity(hparams))
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    known = ("seed", "val_split", "image_size", "in_chans", "batch_size", "drop_last", "test_split")
    if data:
        identity["data"] = {key: data[key] for key in known if key in data}
    optimizers = checkpoint.get("optimizer_states") or []
    if optimizers:
        groups = optimizers[0].get("param_groups", [])
        identity["optimization"] = {"parameter_groups": len(groups), GROUP_KEYS: group_keys(groups)}
    return identity


def flatten(identity: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data": {"seed": 1}}`` -> ``{"data.seed": 1}`` (arguments of a class stay one value)."""
    flat = {}
    for key, value in identity.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not name.endswith("_kwargs"):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def differences(recorded: dict[str, Any], current: dict[str, Any], only: tuple[str, ...] = ()) -> list[str]:
    """``key: recorded -> current`` for every entry both identities hold and that differs (within ``only``
    when given: exact keys or prefixes)."""
    old, new = flatten(recorded), flatten(current)
    keys = [key for key in old if key in new]
    if only:
        keys = [key for key in keys if any(key == k or key.startswith(f"{k}.") for k in only)]
    changed = []
    for key in keys:
        if key.endswith(f".{GROUP_KEYS}"):
            extra = sorted(set(old[key]) - set(new[key]))
            if extra:
                changed.append(f"optimization.optimizer: the checkpoint's optimizer has {', '.join(extra)}, "
                               f"which this config's does not")  # fmt: skip
        elif _normal(old[key]) != _normal(new[key]):
            changed.append(f"{key}={old[key]!r} (this config: {new[key]!r})")
    return changed


def _normal(value: Any) -> Any:
    """Tuples and lists, ints and floats compare by value (YAML and JSON round trips change them)."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value
