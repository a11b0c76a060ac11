"""FcaNet's multi-spectral DCT pooling against the DCT written out, and FcaNet as SE with that squeeze."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from helpers.tensors import check, maps
from torch import Tensor

from spe_lightning.layers import create_attention, create_pool


def dct_reference(x: Tensor, frequencies: list[tuple[int, int]]) -> Tensor:
    """FcaNet's pooling written out: channel group i, DCT-II basis (u_i, v_i), orthonormal scale."""
    b, c, h, w = x.shape

    def basis(freq: int, pos: int, size: int) -> float:
        value = math.cos(math.pi * freq * (pos + 0.5) / size) / math.sqrt(size)
        return value * math.sqrt(2) if freq else value

    per_group = c // len(frequencies)
    out = torch.zeros(b, c, 1, 1)
    for ch in range(c):
        u, v = frequencies[ch // per_group]
        weights = torch.tensor([[basis(u, i, h) * basis(v, j, w) for j in range(w)] for i in range(h)])
        out[:, ch, 0, 0] = (x[:, ch] * weights).sum((1, 2))
    return out


def test_dct_pools_each_channel_group_at_its_frequency():
    top4 = [(0, 0), (0, 1), (6, 0), (0, 5)]  # the paper's four best frequencies
    pool = create_pool("dct", channels=8, frequencies="top4")
    check(pool, lambda x: dct_reference(x, top4), maps(2, 8, 7, 7))
    # a 14 x 14 map: the filter is 14 x 14 with the 7 x 7 frequencies doubled, as the authors scale them
    check(pool, lambda x: dct_reference(x, [(2 * u, 2 * v) for u, v in top4]), maps(2, 8, 14, 14))
    # a 32 x 32 map is average-pooled to the 28 x 28 filter first
    check(pool, lambda x: dct_reference(F.adaptive_avg_pool2d(x, 28), [(4 * u, 4 * v) for u, v in top4]),
          maps(1, 8, 32, 32))  # fmt: skip


def test_dct_lowest_frequency_alone_is_average_pooling():
    x = maps(2, 6, 14, 14)
    mean = x.mean((2, 3), keepdim=True)
    torch.testing.assert_close(create_pool("dct", channels=6, frequencies="top1", scale="mean")(x), mean)
    torch.testing.assert_close(create_pool("dct", channels=6, frequencies="low1")(x), 14 * mean)


def test_fca_is_se_with_dct_squeeze_and_no_biases():
    m = create_attention("fca", 32)
    assert m.fc1.bias is None and m.fc2.bias is None and type(m.pool).__name__ == "DCTPool"

    def formula(x: Tensor) -> Tensor:
        z = dct_reference(
            F.adaptive_avg_pool2d(x, 7),
            [
                (0, 0),
                (0, 1),
                (6, 0),
                (0, 5),
                (0, 2),
                (1, 0),
                (1, 2),
                (4, 0),
                (5, 0),
                (1, 6),
                (3, 0),
                (0, 4),
                (0, 6),
                (0, 3),
                (3, 5),
                (2, 2),
            ],
        )
        hidden = F.relu(F.conv2d(z, m.fc1.weight))
        return x * torch.sigmoid(F.conv2d(hidden, m.fc2.weight))

    check(m, formula, maps(2, 32, 8, 8))
