"""Parameters and FLOPs as the papers count them: ResNet-164 with each attention, SPEM's zero FLOPs."""

from __future__ import annotations

import pytest

from spe_lightning.models import count_flops, count_parameters, create_backbone


def _blocks(depth: int = 164) -> list[int]:
    """Output channels of ResNet-164's 54 bottleneck blocks: 18 per stage of 64, 128 and 256."""
    n = (depth - 2) // 9
    return [64] * n + [128] * n + [256] * n


@pytest.mark.parametrize(
    ("attention", "extra"),
    [
        ("fca", lambda c: 2 * c * (c // 16)),  # two bias-free fc layers
        ("gct", lambda c: 3 * c),  # alpha, gamma, beta
        # conv1 (+bias), BatchNorm (2), conv_h and conv_w (+bias), hidden = max(8, c // 32)
        ("coord", lambda c: (c + 1) * max(8, c // 32) + 2 * max(8, c // 32) + 2 * (max(8, c // 32) + 1) * c),
    ],
)
def test_resnet164_parameter_counts_with_the_newer_attentions(attention, extra):
    plain = count_parameters(create_backbone("cifar_resnet", 10, depth=164, block="bottleneck"))
    params = count_parameters(
        create_backbone("cifar_resnet", 10, depth=164, block="bottleneck", attention=attention)
    )
    assert params - plain == sum(extra(c) for c in _blocks())
    assert params == {"fca": 1_897_690, "gct": 1_728_346, "coord": 1_915_114}[attention]


def test_flops_count_convolutions_and_matmuls_only():
    plain = create_backbone("cifar_resnet", 10, depth=20, block="basic")
    spem = create_backbone("cifar_resnet", 10, depth=20, block="basic", attention="spem")
    se = create_backbone("cifar_resnet", 10, depth=20, block="basic", attention="se")
    assert count_parameters(spem) - count_parameters(plain) == sum(
        4 * c + 2 for c in [16] * 3 + [32] * 3 + [64] * 3
    )
    flops = [count_flops(net, (3, 32, 32)) for net in (plain, spem, se)]
    assert flops[1] == flops[0] > 0  # SPEM adds no conv or matmul work
    assert flops[2] > flops[0]  # SE's two 1x1 convolutions
    assert spem.training  # counted in eval mode, handed back as it was
