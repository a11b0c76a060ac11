"""CIFAR ResNeXt-29 (Xie et al., "Aggregated Residual Transformations", arXiv 1611.05431 section 5.3).

A 3x3 stem of 64 channels, three stages of bottleneck blocks with ``cardinality`` groups of ``width``
channels in the first stage (doubling per stage) and outputs of 256/512/1024, global average pooling and a
linear head. Depth is 9n+2 (ResNeXt-29: n = 3). The blocks are torchvision's Bottleneck (grouped 3x3,
stride on the 3x3 as in the authors' code), so attention goes on each branch's last BN like every other
ResNet here. ResNeXt-29 8x64d has 34.4 M parameters on CIFAR-10, as its paper prints.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck, conv3x3

from spe_lightning.core.validation import check_int
from spe_lightning.models.cifar_resnet import blocks_per_stage, init_conv_weights, make_stage

STAGES = ((64, 1), (128, 2), (256, 2))
"""(planes, stride) of the three stages: torchvision's bottleneck widens planes x width / 64 x groups."""


class CifarResNeXt(nn.Module):
    """ResNeXt for small images: ``depth`` 9n+2, ``cardinality`` x ``width``d (8x64d, 16x64d)."""

    def __init__(
        self, depth: int = 29, cardinality: int = 8, width: int = 64, num_classes: int = 10, in_chans: int = 3
    ) -> None:
        super().__init__()
        n = blocks_per_stage(depth, "bottleneck")
        check_int("cardinality", cardinality)
        check_int("width", width)
        self.conv1 = conv3x3(in_chans, 64)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 64
        for i, (planes, stride) in enumerate(STAGES, start=1):
            stage = make_stage(Bottleneck, inplanes, planes, n, stride, groups=cardinality, base_width=width)
            self.add_module(f"layer{i}", stage)
            inplanes = planes * Bottleneck.expansion
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_conv_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))
