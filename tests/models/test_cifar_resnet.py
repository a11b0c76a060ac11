"""CIFAR ResNets of any depth: exact sizes (the paper's ResNet-164 counts), blocks per depth, bad depths."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.resnet import BasicBlock, Bottleneck

from spe_lightning.core.errors import InputError
from spe_lightning.models import NormAttention, count_parameters, create_backbone
from spe_lightning.models.cifar_resnet import check_fits_in_memory


@pytest.mark.parametrize(
    ("num_classes", "attention", "params"),
    [(10, None, 1_704_154), (10, "spem", 1_736_518), (100, None, 1_727_284), (100, "spem", 1_759_648)],
)
def test_resnet164_parameter_counts_match_the_paper(num_classes, attention, params):
    net = create_backbone("cifar_resnet", num_classes, depth=164, block="bottleneck", attention=attention)
    assert count_parameters(net) == params


@pytest.mark.parametrize(
    ("depth", "block", "blocks"), [(20, "basic", 9), (110, "basic", 54), (29, "bottleneck", 9)]
)
def test_cifar_depths_give_the_right_number_of_blocks(depth, block, blocks):
    net = create_backbone("cifar_resnet", 10, depth=depth, block=block, attention="se")
    assert sum(isinstance(m, BasicBlock | Bottleneck) for m in net.modules()) == blocks
    assert sum(isinstance(m, NormAttention) for m in net.modules()) == blocks


@pytest.mark.parametrize(
    ("depth", "block", "message"),
    [
        (21, "basic", "depth=21 is impossible for basic blocks; valid depths are 6n+2 for n >= 1 (8, 14, 20"),
        (
            21,
            "bottleneck",
            "depth=21 is impossible for bottleneck blocks; valid depths are 9n+2 for n >= 1 (11, 20, 29",
        ),
        (2, "basic", "depth=2 is impossible"),
        (20, "wide", "unknown block 'wide'; known blocks: basic, bottleneck"),
    ],
)
def test_impossible_depth_names_the_valid_depths(depth, block, message):
    with pytest.raises(InputError) as info:
        create_backbone("cifar_resnet", 10, depth=depth, block=block)
    assert message in str(info.value)


def test_checking_that_a_depth_fits_draws_nothing_from_the_generator():
    """A draw here would shift every run's initial weights (it once did: the check built real blocks)."""
    torch.manual_seed(0)
    state = torch.get_rng_state()
    check_fits_in_memory(164, Bottleneck, 18)
    assert torch.equal(torch.get_rng_state(), state)
