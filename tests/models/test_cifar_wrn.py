"""CIFAR Wide-ResNets: the paper's sizes, attention in every block's slot, and impossible depths refused."""

from __future__ import annotations

import pytest
import torch

from spe_lightning.core.errors import InputError
from spe_lightning.models import attention_modules, count_parameters, create_backbone
from spe_lightning.models.cifar_wrn import CifarWideResNet


def test_wrn_28_10_and_16_8_have_their_papers_parameter_counts():
    with torch.device("meta"):  # sizes only: 36 M parameters need no memory
        assert count_parameters(CifarWideResNet(28, 10)) == 36_479_194  # "36.5M" in the WRN paper
        assert count_parameters(CifarWideResNet(16, 8)) == 10_961_370  # "11.0M"


def test_attention_goes_on_every_blocks_residual_output_before_the_shortcut():
    net = create_backbone("cifar_wrn", 10, attention="se", pool="max", depth=16, widen_factor=2)
    placed = dict(attention_modules(net))
    assert list(placed) == [f"layer{s}.{b}" for s in (1, 2, 3) for b in (0, 1)]
    assert [m.fc1.in_channels for m in placed.values()] == [32, 32, 64, 64, 128, 128]
    block = net.layer2[0]
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        net.eval()
        activated = block.relu(block.bn1(x))
        branch = block.conv2(block.relu(block.bn2(block.conv1(activated))))
        expected = block.se(branch) + block.shortcut(activated)
        torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"depth": 27}, "6n\\+4"), ({"drop_rate": 1.0}, "drop_rate=1.0")]
)
def test_impossible_wide_resnets_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        CifarWideResNet(**kwargs)
