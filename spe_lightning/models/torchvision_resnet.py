"""torchvision's ImageNet ResNets with attention in every block, optionally from torchvision weights."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from spe_lightning.core.errors import InputError, MissingInput
from spe_lightning.models.attach import ConvAttention, NormAttention

log = logging.getLogger(__name__)
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


def check_weights(arch: str, weights: str, must_exist: bool = True) -> Path | None:
    """Check a weights name or file without loading or downloading anything; the file's path, if one.

    Lets a model config with ``weights`` be validated offline; ``must_exist=False`` accepts a file that is
    not there (a checkpoint of the model is rebuilt without it).
    """
    path = Path(weights).expanduser()
    if path.suffix in {".pth", ".pt", ".bin"} or path.exists():
        if must_exist and not path.is_file():
            raise MissingInput(f"weights file {str(path)!r} does not exist")
        return path
    enum = tvm.get_model_weights(arch)
    if weights not in enum.__members__ and weights != "DEFAULT":
        known = ", ".join(["DEFAULT", *enum.__members__])
        raise InputError(f"unknown weights {weights!r} for {arch}; known: {known}, or a .pth file")
    return None


def pretrained_state_dict(arch: str, weights: str) -> dict[str, torch.Tensor]:
    """A torchvision weights name ("DEFAULT", "IMAGENET1K_V2", ...) or a local state-dict file.

    Local files load with ``weights_only=True``: no code in them is executed.
    """
    path = check_weights(arch, weights)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return state.get("state_dict", state)
    try:
        return tvm.get_model_weights(arch)[weights].get_state_dict(progress=True)
    except OSError as err:  # no network: say what to do instead
        raise RuntimeError(
            f"could not download {arch} weights {weights!r} ({err}); download them elsewhere "
            "and pass the .pth file path as weights"
        ) from None


def load_pretrained(net: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Load a plain-backbone state dict into a network with attention.

    Keys of wrapped norms and convolutions are renamed into their wrapper, a head of another size is left
    initialised. Returns (missing, skipped): the parameters that stay initialised (the
    attention's, and the head's if skipped) and the checkpoint keys not used.
    """
    own = net.state_dict()
    inner = {ConvAttention: "conv", NormAttention: "norm"}
    wrapped = {name: inner[type(m)] for name, m in net.named_modules() if type(m) in inner}
    renamed, skipped = {}, []
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        target = f"{owner}.{wrapped[owner]}.{leaf}" if owner in wrapped else key
        if target in own and own[target].shape == value.shape:
            renamed[target] = value
        else:
            skipped.append(key)
    missing = sorted(set(own) - set(renamed))
    net.load_state_dict(renamed, strict=False)
    log.info("loaded %d tensors; %d stay initialised: %s", len(renamed), len(missing), missing)
    if skipped:
        log.info("checkpoint keys not used (absent or of another shape): %s", skipped)
    return missing, skipped


def torchvision_resnet(arch: str, num_classes: int = 1000, zero_init_residual: bool = False) -> nn.Module:
    """The plain torchvision network; attention and weights are added by the factory.
    ``zero_init_residual``: torchvision's own option, each residual branch's last BN gamma at 0 (a
    control for attention that starts by scaling the branch down)."""
    return tvm.get_model(arch, weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
