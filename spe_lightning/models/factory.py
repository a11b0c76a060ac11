"""``create_backbone``: every network with any attention, by name (torchvision-builder style)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from spe_lightning.core.errors import InputError
from spe_lightning.core.registry import Registry, build
from spe_lightning.core.validation import check_int
from spe_lightning.layers import is_attention
from spe_lightning.models.attach import attach_attention
from spe_lightning.models.cifar_resnet import CifarResNet
from spe_lightning.models.cifar_resnext import CifarResNeXt
from spe_lightning.models.cifar_wrn import CifarWideResNet
from spe_lightning.models.timm_backbones import (
    PREFIX,
    check_timm_weights,
    is_timm_name,
    timm_backbone,
    timm_weights_state,
)
from spe_lightning.models.torchvision_resnet import (
    RESNETS,
    check_weights,
    load_pretrained,
    pretrained_state_dict,
    torchvision_resnet,
)

log = logging.getLogger(__name__)


BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone", also=f"{PREFIX}<model name>")
"""Backbone builders by name; each is called with ``num_classes`` and the backbone's own keywords."""
BACKBONES.add("cifar_resnet", CifarResNet)
BACKBONES.add("cifar_wrn", CifarWideResNet)
BACKBONES.add("cifar_resnext", CifarResNeXt)
for _arch in RESNETS:
    BACKBONES.add(_arch, partial(torchvision_resnet, _arch))


def backbone_names() -> list[str]:
    """The registered names, and timm's models as ``timm/<model name>``."""
    return [*BACKBONES.names(), f"{PREFIX}<model name>"]


LABELS = {
    "cifar_resnet": (CifarResNet, "cifar_resnet{depth}"),
    "cifar_wrn": (CifarWideResNet, "cifar_wrn{depth}-{widen_factor}"),
    "cifar_resnext": (CifarResNeXt, "cifar_resnext{depth}-{cardinality}x{width}d"),
}
"""Backbones whose size is in their arguments -> (builder, label pattern of those arguments)."""


def backbone_label(name: str, kwargs: dict[str, Any] | None = None) -> str:
    """A backbone as its users say it, for run names: ``cifar_resnet`` of depth 164 is ``cifar_resnet164``,
    ``cifar_wrn`` ``cifar_wrn28-10`` (defaults where not given); torchvision's names already carry their size
    (``resnet50``), and ``timm/resnet50`` is ``timm_resnet50`` (one folder name)."""
    key = name.lower()
    if key not in LABELS:
        return key.replace("/", "_")
    builder, pattern = LABELS[key]
    defaults = {k: v.default for k, v in inspect.signature(builder).parameters.items()}
    given = kwargs.as_dict() if hasattr(kwargs, "as_dict") else dict(kwargs or {})
    return pattern.format(**{**defaults, **{k: v for k, v in given.items() if v is not None}})


def create_backbone(
    name: str,
    num_classes: int,
    attention: str | None = None,
    pool: str | None = None,
    attention_kwargs: dict[str, Any] | None = None,
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a backbone, put ``attention`` (with ``pool``) in every residual block, load ``weights``.

    ``name``: a registered backbone (:func:`backbone_names`) or ``timm/<model name>``. ``weights``
    (torchvision ResNets and timm models) names pretrained weights of the plain network (a torchvision
    weights name, or ``timm``) or a local state-dict file; the attention parameters stay initialised and are
    logged as missing. Extra keyword arguments go to the backbone (``depth``, ``block``, ``in_chans`` for
    ``cifar_resnet``; ``timm.create_model``'s for timm).
    """
    check_int("num_classes", num_classes)
    builder = partial(timm_backbone, name) if is_timm_name(name) else BACKBONES.get(name)
    net = build(builder, f"backbone {name!r}", num_classes=num_classes, **kwargs)
    if is_attention(attention):
        with torch.random.fork_rng(devices=[]):  # paired seeds: see attention_seed
            torch.manual_seed(attention_seed())
            attach_attention(net, attention, pool, attention_kwargs)
    elif pool is not None or attention_kwargs:
        raise InputError(f"pool={pool!r} / attention_kwargs given without an attention; choose an attention")
    if weights is not None:
        check_pretrained(name, weights)
        load_backbone_weights(net, name, weights)
    return net


ATTENTION_STREAM = 0x5BE4
"""Mixed with the process's seed into the seed of the attention's own generator."""


def attention_seed() -> int:
    """The seed attention and pool parameters are drawn with: derived from ``torch.initial_seed()``, never
    drawn from the generator the backbone uses. So after ``torch.manual_seed(k)``, every attention and pool
    gives the same backbone weights and leaves the generator where the plain network leaves it (the same
    data order and augmentation after it): the arms of a grid differ by their attention only."""
    return int(np.random.SeedSequence([torch.initial_seed(), ATTENTION_STREAM]).generate_state(1)[0])


def check_pretrained(name: str, weights: str, must_exist: bool = True) -> None:
    """Check that backbone ``name`` has ``weights`` (a name or file) without loading or downloading them
    (timm's pretrained weights are fetched into timm's cache here: without network this is the error)."""
    if is_timm_name(name):
        if must_exist:
            check_timm_weights(name, weights)
        return
    if name not in RESNETS:
        raise InputError(
            f"weights are only available for the torchvision ResNets {', '.join(RESNETS)} and timm models "
            f"({PREFIX}<model name>)"
        )
    check_weights(name, weights, must_exist)


def load_backbone_weights(net: nn.Module, name: str, weights: str) -> None:
    """Load plain-backbone ``weights`` into ``net`` (attention parameters stay initialised)."""
    state = timm_weights_state(name, weights) if is_timm_name(name) else pretrained_state_dict(name, weights)
    missing, _ = load_pretrained(net, state)
    net.pretrained_missing_keys = missing
