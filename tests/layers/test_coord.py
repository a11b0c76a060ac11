"""Coordinate attention against its paper's equations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers.tensors import check, maps
from torch import Tensor

from spe_lightning.layers import create_attention


def test_coordinate_attention_follows_the_papers_equations():
    m = create_attention("coord", 16).train()
    x = maps(2, 16, 5, 7)

    def formula(x: Tensor) -> Tensor:
        z_h, z_w = x.mean(3, keepdim=True), x.mean(2, keepdim=True).permute(0, 1, 3, 2)
        y = torch.cat((z_h, z_w), 2)
        y = F.conv2d(y, m.conv1.weight, m.conv1.bias)
        y = F.batch_norm(y, None, None, m.bn.weight, m.bn.bias, training=True, eps=m.bn.eps)
        y = y * F.relu6(y + 3) / 6
        y_h, y_w = y[:, :, :5], y[:, :, 5:].permute(0, 1, 3, 2)
        a_h = torch.sigmoid(F.conv2d(y_h, m.conv_h.weight, m.conv_h.bias))
        a_w = torch.sigmoid(F.conv2d(y_w, m.conv_w.weight, m.conv_w.bias))
        return x * a_w * a_h

    check(m, formula, x)
    assert m.conv1.out_channels == 8  # max(8, 16 // 32)
    assert create_attention("coord", 512).conv1.out_channels == 16
