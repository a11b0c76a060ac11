"""The SPEM paper's CIFAR training recipe, written once: the classifier's defaults and the command line's.

SGD with lr 0.1, momentum 0.9 and weight decay 1e-4; the learning rate times 0.1 at epochs 81 and 122
(of 164). Each is a ``{class_path, init_args}`` mapping, the form a config file gives: the command line's
``optimizer:`` and ``lr_scheduler:`` sections are passed to :class:`~spe_lightning.training.ImageClassifier`
as they are, and the classifier builds them over its parameter groups.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import instantiate_class
from torch import nn
from torch.optim import Optimizer

ClassSpec = dict[str, Any]
"""``{"class_path": "torch.optim.SGD", "init_args": {...}}``."""

PAPER_OPTIMIZER: ClassSpec = {
    "class_path": "torch.optim.SGD",
    "init_args": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
}
PAPER_LR_SCHEDULER: ClassSpec = {
    "class_path": "torch.optim.lr_scheduler.MultiStepLR",
    "init_args": {"milestones": [81, 122], "gamma": 0.1},
}


def build_optimizer(spec: ClassSpec, params: Any) -> Optimizer:
    """The optimizer ``spec`` names, over ``params`` (parameters or parameter groups)."""
    return instantiate_class(params, dict(spec))


def build_lr_scheduler(spec: ClassSpec, optimizer: Optimizer) -> Any:
    """The scheduler ``spec`` names, stepping ``optimizer``."""
    return instantiate_class(optimizer, dict(spec))


def paper_sgd(net: nn.Module) -> Optimizer:
    """The recipe's optimizer over every parameter of ``net`` (the benchmarks' training step)."""
    return build_optimizer(PAPER_OPTIMIZER, net.parameters())
