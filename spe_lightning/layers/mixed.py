"""Learned mixes of max and average pooling (Lee, Gallagher, Tu, "Generalizing Pooling Functions in
Convolutional Neural Networks: Mixed, Gated, and Tree", AISTATS 2016, arXiv 1509.08985), over the whole
map, as the squeeze of an attention module.

- ``mixed``: ``a * max + (1 - a) * avg`` with a in [0, 1] learned, one per block (the paper's "per layer")
  or one per channel (``per_channel=True``). a starts at 0.5 and is clamped to [0, 1] where it is used:
  past a bound its gradient stops, and weight decay (which pulls a towards 0) brings it back.
- ``gated``: the mix is computed from the input, ``g = sigmoid(w . x)`` per channel, with a gating mask w
  shared by the channels and learned (init 0, so g starts at 0.5). The paper's mask covers its pooling
  region; a global region has no fixed size, so the map is average-pooled to a ``grid`` x ``grid`` region
  first (default 4: a 4 x 4 mask).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spe_lightning.core.errors import InputError
from spe_lightning.layers.pool import POOLS, GlobalPool, avg_and_max


@POOLS.register("mixed")
class MixedPool(GlobalPool):
    """``a * max + (1 - a) * avg``, a learned."""

    num_stats = 2  # avg, max
    shorthand = "a"

    def __init__(self, a: float = 0.5, per_channel: bool = False, channels: int | None = None) -> None:
        if not 0.0 <= a <= 1.0:
            raise InputError(f"mixed pool a={a!r} is outside the allowed range [0, 1]")
        if per_channel and channels is None:
            raise InputError("mixed pool per_channel=True needs channels: build it through an attention")
        super().__init__()
        self.directional = not per_channel
        self.a = nn.Parameter(torch.full((channels,) if per_channel else (), float(a)))

    def stats(self, x: Tensor) -> Tensor:
        return avg_and_max(x)

    def stat_weights(self) -> Tensor:
        a = self.a.float().clamp(0.0, 1.0)
        return torch.stack((1.0 - a, a))  # (avg, max)

    def logged_values(self) -> dict[str, Tensor]:
        return {"mixed_a": self.a.float().clamp(0.0, 1.0).mean()}

    def settings(self) -> dict[str, Any]:
        return {"per_channel": self.a.dim() > 0}


@POOLS.register("gated")
class GatedPool(GlobalPool):
    """``g * max + (1 - g) * avg`` with g = sigmoid(w . x) computed per image and channel."""

    directional = False

    def __init__(self, grid: int = 4) -> None:
        if not isinstance(grid, int) or grid < 1:
            raise InputError(f"gated pool grid={grid!r} is not allowed; use a positive integer")
        super().__init__()
        self.grid = grid
        self.mask = nn.Parameter(torch.zeros(grid * grid))

    def settings(self) -> dict[str, Any]:
        return {"grid": self.grid}

    def gate(self, x: Tensor) -> Tensor:
        region = F.adaptive_avg_pool2d(x.float(), self.grid).flatten(2)  # B x C x grid^2
        return torch.sigmoid(region @ self.mask.float())[..., None, None]  # B x C x 1 x 1

    def stats(self, x: Tensor) -> Tensor:
        mean, top = avg_and_max(x).float()
        g = self.gate(x)
        return (g * top + (1.0 - g) * mean).to(x.dtype)[None]
