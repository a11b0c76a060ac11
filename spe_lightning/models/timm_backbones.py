"""timm's CNNs by name (``timm/<model name>``), for attention in their blocks' slots.

timm builds the network; :func:`~spe_lightning.models.attach.attach_attention` then puts our attention (with
any pool) in every block's slot, as it does for the other backbones. Families served: ResNet, ResNeXt,
Wide-ResNet, the ResNet-D variants and their SE/ECA cousins, RegNet, EfficientNet, MobileNetV2 and
MobileNetV3: every timm model whose blocks keep timm's ``se`` slot.

timm is an optional dependency (``pip install 'spe-lightning[timm]'``); this module imports it only when a
timm backbone is built, so the rest of the library works without it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spe_lightning.core.errors import InputError, MissingInput
from spe_lightning.core.optional import import_optional
from spe_lightning.models.attach import slot_blocks

PREFIX = "timm/"
PRETRAINED = "timm"
"""``weights: timm``: timm's default pretrained weights for the plain network (downloaded, then cached)."""
WEIGHT_FILES = (".pth", ".pt", ".bin", ".safetensors")


def is_timm_name(name: str) -> bool:
    return str(name).startswith(PREFIX)


def _timm() -> Any:
    return import_optional("timm", extra="timm", needed_by="timm backbones need")


def check_timm_model(name: str) -> str:
    """The timm model name of ``timm/<name>``; an unknown one is an InputError listing close matches."""
    timm = _timm()
    model = name.removeprefix(PREFIX)
    known = timm.list_models()
    if model not in known:
        close = difflib.get_close_matches(model, known, n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(PREFIX + c for c in close)}" if close else ""
        raise InputError(
            f"unknown timm model {model!r}{hint} (timm {timm.__version__} lists {len(known)} models: "
            "python -c \"import timm; print(timm.list_models('resnet*'))\")"
        )
    return model


def timm_backbone(name: str, num_classes: int, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """The plain timm network ``name`` (``timm/resnet50``) with ``num_classes`` outputs; ``kwargs`` go to
    ``timm.create_model`` (``drop_path_rate``, ``output_stride``, ...). A network without a slot for
    attention is an InputError: attention could not go anywhere in it."""
    model = check_timm_model(name)
    try:
        net = _timm().create_model(model, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as err:
        raise InputError(f"timm model {model!r} does not take these arguments: {err}") from None
    if not slot_blocks(net):  # the module tree says so: no probing forward (attach_attention runs one)
        raise InputError(
            f"timm model {model!r} has no attention slot (a block's `se`); timm families with one: "
            "ResNet, ResNeXt, Wide-ResNet, ResNet-D, SE/ECA-ResNets, RegNet, EfficientNet, MobileNetV2/V3"
        )
    return net


def check_timm_weights(name: str, weights: str) -> None:
    """``weights`` for a timm backbone: ``timm`` (timm's pretrained weights, fetched now into the cache, so a
    machine without them and without network fails here, before anything is written) or a local file."""
    if weights != PRETRAINED:
        path = Path(weights).expanduser()
        if path.suffix not in WEIGHT_FILES and not path.exists():
            raise InputError(
                f"weights {weights!r} for {name} is neither {PRETRAINED!r} (timm's pretrained weights) nor a "
                f"weights file ({', '.join(WEIGHT_FILES)})"
            )
        if not path.is_file():
            raise MissingInput(f"weights file {str(path)!r} does not exist")
        return
    timm_pretrained_state(name)


def timm_pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """The plain network's pretrained state dict from timm (its cache, else the Hugging Face hub)."""
    model = check_timm_model(name)
    try:
        return _timm().create_model(model, pretrained=True).state_dict()
    except (OSError, RuntimeError, ValueError) as err:  # no network, no cache, or no weights for it
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"timm's pretrained weights for {model} could not be loaded ({first}); on a machine without "
            f"network, fetch them elsewhere (timm.create_model({model!r}, pretrained=True)) into the cache, "
            "or save its state_dict and pass the file as weights"
        ) from None


def timm_weights_state(name: str, weights: str) -> dict[str, torch.Tensor]:
    """The state dict ``weights`` names for a timm backbone (see :func:`check_timm_weights`)."""
    if weights == PRETRAINED:
        return timm_pretrained_state(name)
    check_timm_weights(name, weights)
    path = Path(weights).expanduser()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state)
