"""Reading learned pooling out of a model: the lam of every block, the regulariser's terms, the values
the monitor logs."""

from __future__ import annotations

import pytest
import torch

from spe_lightning import create_backbone, pooling_lambdas, pooling_regularization
from spe_lightning.layers import create_pool
from spe_lightning.models import valued_pools


def test_pooling_terms_are_collected_per_block():
    net = create_backbone("cifar_resnet", 10, depth=164, block="bottleneck", attention="spem")
    lams = pooling_lambdas(net)
    assert len(lams) == 54
    assert lams[0][0] == "layer1.0" and lams[-1][0] == "layer3.17"
    assert all(lam.item() == pytest.approx(0.5) for _, lam in lams)
    assert pooling_regularization(net).item() == pytest.approx(54 * 0.5)
    assert (
        pooling_lambdas(create_backbone("resnet18", 10, attention="cbam", pool="learned"))[0][0] == "layer1.0"
    )


def test_learned_pool_values_are_found_for_logging():
    net = create_backbone("cifar_resnet", 3, depth=8, block="basic", attention="se", pool="gem")
    found = valued_pools(net)
    assert [name for name, _ in found] == ["layer1.0", "layer2.0", "layer3.0"]
    assert list(found[0][1].logged_values()) == ["gem_p"]
    lse = create_backbone("cifar_resnet", 3, depth=8, block="basic", attention="eca", pool="lse")
    assert {k for _, p in valued_pools(lse) for k in p.logged_values()} == {"lse_r"}
    assert list(create_pool("mixed").logged_values()) == ["mixed_a"]


def test_a_pool_is_named_by_the_block_its_attention_sits_in_whatever_the_slot():
    wrn = create_backbone("cifar_wrn", 3, depth=10, widen_factor=1, attention="spem")  # the block's own slot
    assert [name for name, _ in pooling_lambdas(wrn)] == ["layer1.0", "layer2.0", "layer3.0"]
    every_conv = create_backbone(
        "resnet18", 3, attention="spem", attention_kwargs={"placement": "every_conv"}
    )
    assert [name for name, _ in pooling_lambdas(every_conv)][:3] == [
        "conv1",
        "layer1.0.conv1",
        "layer1.0.conv2",
    ]
    # a pool outside any attached attention keeps its own path
    assert [name for name, _ in pooling_lambdas(torch.nn.Sequential(create_pool("learned")))] == ["0"]
