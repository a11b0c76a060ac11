"""CIFAR ResNets (He et al., arXiv 1512.03385 section 4.2) of any depth, built from torchvision's blocks.

A 3x3 stem of 16 channels, three stages of 16/32/64 planes (x4 for bottlenecks) and a
linear head. Depth is 6n+2 with basic blocks and 9n+2 with bottlenecks (ResNet-164:
n = 18). Shortcuts are identity, or 1x1 conv + BN where the shape changes, as in the
code the SPEM paper trains with.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1, conv3x3

from spe_lightning.core.errors import InputError
from spe_lightning.core.resources import host_memory, readable_bytes
from spe_lightning.models.attach import LAST_NORM

_BLOCKS: dict[str, tuple[type[BasicBlock | Bottleneck], int]] = {
    "basic": (BasicBlock, 2),  # conv layers per block
    "bottleneck": (Bottleneck, 3),
}


def blocks_per_stage(depth: int, block: str) -> int:
    """n for a depth of (layers per block * 3) n + 2, or an InputError naming valid depths."""
    if block not in _BLOCKS:
        raise InputError(f"unknown block {block!r}; known blocks: {', '.join(sorted(_BLOCKS))}")
    per_stage = 3 * _BLOCKS[block][1]
    if depth < per_stage + 2 or (depth - 2) % per_stage:
        examples = ", ".join(str(per_stage * n + 2) for n in (1, 2, 3, 6, 18))
        raise InputError(
            f"depth={depth} is impossible for {block} blocks; valid depths are {per_stage}n+2 "
            f"for n >= 1 ({examples}, ...)"
        )
    return (depth - 2) // per_stage


STAGES = ((16, 1), (32, 2), (64, 2))
"""(planes, stride) of the three stages."""


def check_fits_in_memory(depth: int, block: type[BasicBlock | Bottleneck], n: int) -> None:
    """Refuse a depth whose weights alone would not fit in this machine's memory, before building it. The
    blocks are counted on the meta device: no memory, and no draw from the generator the network's own
    weights come from (a draw here would change every run's initial weights)."""
    with torch.device("meta"):
        blocks = [block(planes * block.expansion, planes) for planes, _ in STAGES]
    per_block = sum(p.numel() for b in blocks for p in b.parameters())
    needed = 4 * n * per_block  # float32 weights; training needs about three times as much
    if needed > host_memory():
        raise InputError(
            f"depth={depth} builds {3 * n:,} blocks with about {n * per_block:,} parameters, "
            f"{readable_bytes(needed)} of weights alone, more than the {readable_bytes(host_memory())} of "
            "memory this machine has; choose a smaller depth"
        )


def init_conv_weights(net: nn.Module) -> None:
    """He (fan-out) initialisation of every convolution: the CIFAR ResNet, WRN and ResNeXt papers' own."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def make_stage(
    block: type[BasicBlock | Bottleneck],
    inplanes: int,
    planes: int,
    num_blocks: int,
    stride: int,
    **block_kwargs: int,
) -> nn.Sequential:
    """A stage of torchvision blocks; the first one downsamples and widens the shortcut. ``block_kwargs``:
    the bottleneck's ``groups`` and ``base_width`` (ResNeXt)."""
    out = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
    layers = [block(inplanes, planes, stride, downsample, **block_kwargs)]
    layers += [block(out, planes, **block_kwargs) for _ in range(num_blocks - 1)]
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """Post-activation ResNet for small images; any input size (global average pooling).
    ``zero_init_residual`` sets the last BN gamma of every residual branch to 0 (torchvision's option)."""

    def __init__(
        self,
        depth: int = 164,
        block: str = "bottleneck",
        num_classes: int = 10,
        in_chans: int = 3,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        n = blocks_per_stage(depth, block)
        block_cls = _BLOCKS[block][0]
        check_fits_in_memory(depth, block_cls, n)
        self.conv1 = conv3x3(in_chans, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 16
        for i, (planes, stride) in enumerate(STAGES, start=1):
            self.add_module(f"layer{i}", make_stage(block_cls, inplanes, planes, n, stride))
            inplanes = planes * block_cls.expansion
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_conv_weights(self)
        if zero_init_residual:  # torchvision's option: every residual branch starts as zero (the identity)
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(getattr(m, LAST_NORM[type(m)]).weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))
