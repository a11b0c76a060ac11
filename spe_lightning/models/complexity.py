"""What a network costs: its parameters, the FLOPs of one forward (counted the way the papers count) and the
activations a training step keeps.

FLOPs come from ``torch.utils.flop_counter`` for one image: 2 FLOPs per multiply-accumulate of
convolutions and matrix products. Pooling, gating and other elementwise work is not counted, which is
also how the SE, ECA and SPEM papers count. Some papers (ECA's) report "GFLOPs" that are
multiply-accumulates, or divide by 1024: MACs are FLOPs / 2, both in decimal units.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(net: nn.Module) -> int:
    """Every parameter, trainable or not (each tensor once)."""
    return sum(p.numel() for p in net.parameters())


def count_flops(net: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one eval-mode forward on a single input of ``input_shape`` (C, H, W)."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, *input_shape))
    finally:
        net.train(was_training)
    return counter.get_total_flops()


def convolution_outputs(net: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(all, the largest) convolution and linear output elements of one eval-mode forward on a single input
    of ``input_shape`` (C, H, W): what a training step at least keeps for its backward pass, per image."""
    sizes: list[int] = []
    hooks = [
        module.register_forward_hook(lambda module, args, out: sizes.append(out.numel()))
        for module in net.modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    return sum(sizes), max(sizes, default=0)
