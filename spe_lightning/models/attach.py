"""Put attention where SE goes in every block: the output of the residual branch's last norm, before the
shortcut is added (or, in a mobile block, after the depthwise convolution).

Two kinds of blocks have that place:

- torchvision's BasicBlock / Bottleneck (the CIFAR ResNets, WRNs and ResNeXts, torchvision's ResNets): the
  branch's last norm is wrapped, not subclassed, so ``SyncBatchNorm.convert_sync_batchnorm`` still finds
  (and converts) it;
- timm's blocks, which hold an attention *slot*: an ``se`` attribute that the block applies at that place
  (``None`` or ``nn.Identity()`` when the network has no attention there, timm's own SE module when it has).
  A slot's channels are read from one forward pass with the slot recording its input, so any timm family
  whose blocks keep that convention is served, without naming its block classes.

Where a slot held timm's own squeeze-excitation (EfficientNet, MobileNetV3, RegNetY, SE-ResNets), a module
that takes ``hidden`` and ``act_layer`` (our SE) keeps that network's SE width and activation: ``se`` in
``efficientnet_b0`` is EfficientNet's SE. Every other module keeps its own paper's design.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from spe_lightning.core.errors import InputError
from spe_lightning.layers import ATTENTIONS, channel_attention_class, create_attention

LAST_NORM = {BasicBlock: "bn2", Bottleneck: "bn3"}
"""The norm that ends each kind of residual branch: where attention goes, and what zero-init zeroes."""


class NormAttention(nn.Module):
    """A block's last norm followed by attention: ``attn(norm(x))``."""

    def __init__(self, norm: nn.Module, attn: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.attn = attn

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(self.norm(x))


STAGES_KEY = "stages"
"""``attention_kwargs: {stages: {layer1: {...}, ...}}``: arguments for the blocks of one stage only."""
PLACEMENT_KEY = "placement"
PLACEMENTS = ("block", "every_conv")
"""``attention_kwargs: {placement: ...}``: ``block`` (where SE goes, the default) or ``every_conv``: before
every convolution, stem and downsample included (GCT's authors' network: 53 in a ResNet-50)."""


class ConvAttention(nn.Module):
    """Attention on a convolution's input: ``conv(attn(x))``."""

    def __init__(self, attn: nn.Module, conv: nn.Conv2d) -> None:
        super().__init__()
        self.attn = attn
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.attn(x))


def attach_before_convolutions(net: nn.Module, attention: str, pool: str | None, kwargs: dict) -> list[str]:
    """Attention on the input of every convolution of ``net``; the wrapped convolutions' paths."""
    wrapped = []
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d):
                attn = create_attention(attention, child.in_channels, pool=pool, **kwargs)
                setattr(module, child_name, ConvAttention(attn, child))
                wrapped.append(f"{name}.{child_name}".lstrip("."))
    return wrapped


def attach_attention(
    net: nn.Module, attention: str, pool: str | None = None, attention_kwargs: dict[str, Any] | None = None
) -> list[str]:
    """Put ``attention`` in every block of ``net`` (torchvision blocks' last norm, timm blocks' slot), or
    before every convolution (``placement: every_conv``); return the paths of the places it went.

    ``attention_kwargs`` go to every module; its ``stages`` entry maps a stage (a block's parent module:
    ``layer1``) to arguments for that stage's blocks only, merged over the others (``pool_kwargs`` key by
    key): FcaNet's per-stage DCT sizes, ``{stages: {layer1: {pool_kwargs: {size: 56}}, ...}}``.
    """
    channel_attention_class(attention)  # an unknown name is that, not a block it cannot fill
    shared = dict(attention_kwargs or {})
    stages = shared.pop(STAGES_KEY, None) or {}
    placement = shared.pop(PLACEMENT_KEY, "block")
    if placement not in PLACEMENTS:
        raise InputError(
            f"attention_kwargs placement={placement!r} is not allowed; use one of {list(PLACEMENTS)}"
        )
    if placement == "every_conv":
        if stages:
            raise InputError("attention_kwargs stages apply to blocks; with placement every_conv give none")
        return attach_before_convolutions(net, attention, pool, shared)
    places = []
    for name, block in list(net.named_modules()):
        norm_name = LAST_NORM.get(type(block))
        if norm_name is not None:
            places.append((name, block, getattr(block, norm_name).num_features, None, norm_name))
    places += [
        (name, block, channels, held, SLOT) for name, (block, channels, held) in slot_channels(net).items()
    ]
    known = sorted({name.rpartition(".")[0] for name, *_ in places})
    unknown = sorted(set(stages) - set(known))
    if unknown:
        raise InputError(
            f"attention_kwargs stages {unknown} are not stages of this network; its stages: {known}"
        )
    wrapped = []
    for name, block, channels, held, attr in places:
        own = stages.get(name.rpartition(".")[0], {})
        kwargs = {**slot_design(attention, held), **shared, **own}
        if "pool_kwargs" in shared or "pool_kwargs" in own:
            kwargs["pool_kwargs"] = {**shared.get("pool_kwargs", {}), **own.get("pool_kwargs", {})}
        try:
            attn = create_attention(attention, channels, pool=pool, **kwargs)
        except InputError as err:
            raise InputError(f"attention {attention!r} cannot fill block {name}: {err}") from None
        if attr == SLOT:
            block.se = attn
        else:
            setattr(block, attr, NormAttention(getattr(block, attr), attn))
        wrapped.append(f"{name}.{attr}")
    return wrapped


SLOT = "se"
"""The attribute of a timm block that holds its attention (timm's name for it in every family)."""


class _SlotProbe(nn.Identity):
    """Stands in a slot for one forward pass and records the channels that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.channels: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        self.channels = x.shape[1]
        return x


def slot_blocks(net: nn.Module) -> dict[str, nn.Module]:
    """Each block of ``net`` that holds an attention slot (``se``: empty, or a module), by path; read from the
    module tree alone."""
    return {
        name: module
        for name, module in net.named_modules()
        if hasattr(module, SLOT) and not isinstance(module, NormAttention)
        and (getattr(module, SLOT) is None or isinstance(getattr(module, SLOT), nn.Module))
    }  # fmt: skip


def slot_channels(net: nn.Module, size: int = 64) -> dict[str, tuple[nn.Module, int, nn.Module | None]]:
    """Each block with a slot that the forward pass reaches: its path -> (block, channels at the slot, what
    the slot held: timm's SE, or None). One no-grad forward in eval mode on a ``size`` x ``size`` input."""
    blocks = slot_blocks(net)
    if not blocks:
        return {}
    held = {name: getattr(block, SLOT) for name, block in blocks.items()}
    probes = {name: _SlotProbe() for name in blocks}
    for name, block in blocks.items():
        setattr(block, SLOT, probes[name])
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    mode = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, first.in_channels, size, size, device=first.weight.device))
    finally:
        net.train(mode)
        for name, block in blocks.items():
            setattr(block, SLOT, held[name])
    return {
        name: (block, probes[name].channels, held[name] if _has_weights(held[name]) else None)
        for name, block in blocks.items()
        if probes[name].channels is not None
    }


def _has_weights(module: nn.Module | None) -> bool:
    return module is not None and any(True for _ in module.parameters())


def slot_design(attention: str, held: nn.Module | None) -> dict[str, Any]:
    """The network's SE design, for a module that takes it: the reduced width (the first convolution's
    outputs) and the activation of the SE the slot held; nothing where it held none."""
    if held is None:
        return {}
    accepts = inspect.signature(channel_attention_class(attention)).parameters
    if not {"hidden", "act_layer"} <= set(accepts):
        return {}
    convs = [m for m in held.children() if isinstance(m, nn.Conv2d)]
    acts = [m for m in held.children() if not isinstance(m, (nn.Conv2d, nn.Identity, nn.BatchNorm2d))]
    return {"hidden": convs[0].out_channels, "act_layer": type(acts[0])} if convs and acts else {}


def attention_modules(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """(block path, attention module) for every attention :func:`attach_attention` placed in ``net``."""
    found = []
    for name, module in net.named_modules():
        if isinstance(module, NormAttention):
            found.append((name.rpartition(".")[0], module.attn))
        elif isinstance(module, ConvAttention):
            found.append((name, module.attn))
        elif name.rpartition(".")[2] == SLOT and is_attention_module(module):
            found.append((name.rpartition(".")[0], module))
    return found


def is_attention_module(module: nn.Module) -> bool:
    """Whether ``module`` is one of this library's attention modules."""
    return isinstance(module, tuple(ATTENTIONS.get(name) for name in ATTENTIONS.names()))
