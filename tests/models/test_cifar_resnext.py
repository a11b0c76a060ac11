"""CIFAR ResNeXt-29: the paper's sizes, and attention on every block's last BN."""

from __future__ import annotations

import pytest
import torch

from spe_lightning.core.errors import InputError
from spe_lightning.models import attention_modules, count_parameters, create_backbone
from spe_lightning.models.cifar_resnext import CifarResNeXt


def test_resnext_29_has_its_papers_parameter_counts():
    with torch.device("meta"):
        assert count_parameters(CifarResNeXt(29, 8, 64)) == 34_426_698  # "34.4M" in the ResNeXt paper
        assert count_parameters(CifarResNeXt(29, 16, 64)) == 68_155_210  # "68.1M"
        net = CifarResNeXt(29, 8, 64)
    assert [
        net.layer1[0].conv2.groups,
        net.layer1[0].conv2.out_channels,
        net.layer3[0].conv3.out_channels,
    ] == [
        8,
        512,
        1024,
    ]


def test_attention_goes_on_every_blocks_last_bn():
    net = create_backbone("cifar_resnext", 10, attention="eca", depth=11, cardinality=2, width=4)
    assert [name for name, _ in attention_modules(net)] == ["layer1.0", "layer2.0", "layer3.0"]
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_impossible_depths_are_refused():
    with pytest.raises(InputError, match="9n\\+2"):
        CifarResNeXt(depth=30)
