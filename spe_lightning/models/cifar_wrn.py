"""CIFAR Wide-ResNets (Zagoruyko and Komodakis, "Wide Residual Networks", arXiv 1605.07146).

WRN-``depth``-``widen_factor``: a 3x3 stem of 16 channels, three stages of pre-activation basic blocks
(BN-ReLU-conv3x3, BN-ReLU-dropout-conv3x3) of 16k/32k/64k channels, a final BN-ReLU, global average pooling
and a linear head; depth is 6n+4. Shortcuts are identity, or a 1x1 convolution of the pre-activated input
where the shape changes, as in the authors' code. WRN-28-10 has 36.5 M parameters on CIFAR-10.

A pre-activation branch ends in a convolution, not a BN: attention goes on its output, before the shortcut
is added, through the block's attention slot ``se`` (the convention timm's blocks keep, which
:func:`~spe_lightning.models.attach.attach_attention` fills).
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import conv1x1, conv3x3

from spe_lightning.core.errors import InputError
from spe_lightning.core.validation import check_int
from spe_lightning.models.cifar_resnet import init_conv_weights

STAGES = ((16, 1), (32, 2), (64, 2))
"""(channels before widening, stride) of the three stages."""


class WideBasic(nn.Module):
    """A pre-activation basic block with dropout between its convolutions and an attention slot."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(drop_rate)
        self.conv2 = conv3x3(planes, planes)
        self.se: nn.Module | None = None
        """The attention slot: applied to the branch's output, before the shortcut."""
        self.shortcut = conv1x1(inplanes, planes, stride) if stride != 1 or inplanes != planes else None

    def forward(self, x: Tensor) -> Tensor:
        activated = self.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv2(self.dropout(self.relu(self.bn2(self.conv1(activated)))))
        if self.se is not None:
            out = self.se(out)
        return out + shortcut


class CifarWideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` (WRN-16-8, WRN-28-10) with dropout ``drop_rate`` in every block."""

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        drop_rate: float = 0.0,
        num_classes: int = 10,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        check_int("widen_factor", widen_factor)
        if depth < 10 or (depth - 4) % 6:
            raise InputError(
                f"depth={depth} is impossible for a Wide-ResNet; valid depths are 6n+4 for n >= 1 "
                "(10, 16, 22, 28, 40, ...)"
            )
        if not 0.0 <= drop_rate < 1.0:
            raise InputError(f"drop_rate={drop_rate} is not allowed; use a fraction in [0, 1)")
        n = (depth - 4) // 6
        self.conv1 = conv3x3(in_chans, 16)
        inplanes = 16
        for i, (planes, stride) in enumerate(STAGES, start=1):
            width = planes * widen_factor
            blocks = [WideBasic(inplanes if k == 0 else width, width, stride if k == 0 else 1, drop_rate)
                      for k in range(n)]  # fmt: skip
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            inplanes = width
        self.bn = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_conv_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(self.avgpool(self.relu(self.bn(x))).flatten(1))
