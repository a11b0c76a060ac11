"""The constant-gate control: SPEM's starting gate, fixed.

SPEM's gate starts at sigmoid(-2) * sigmoid(-1) = 0.032 for every channel, so each residual branch starts
scaled to about 3 %: close to a zero-initialised residual branch, a known gain on its own. This module holds
that starting gate as a fixed, non-learned buffer, with no pooling stage and no parameters: a network with
it is scaled as SPEM's starts but never adapts. A gain SPEM shows over this control comes from what SPEM
learns (its pooling and excitation), not from where it starts.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spe_lightning.layers.attention import ChannelAttention
from spe_lightning.layers.spem import SPEM


def spem_initial_gate() -> float:
    """The gate SPEM starts with: its excitation at initialisation (the same for any input), computed by
    SPEM itself so that the control follows SPEM's initialisation."""
    spem = SPEM(1)
    statistics = torch.zeros(len(spem.pool.stat_weights()), 1, 1, 1, 1)
    with torch.no_grad():
        return float(spem.excite(statistics).reshape(-1)[0])


class ConstantGate(ChannelAttention):
    """``x * g`` with a fixed per-channel ``g`` (SPEM's starting gate unless ``value`` is given)."""

    default_pool = None
    pooling = "none"

    def __init__(
        self, channels: int, value: float | None = None, pool: None = None, pool_kwargs: None = None
    ) -> None:
        super().__init__(channels, pool, pool_kwargs)
        value = spem_initial_gate() if value is None else value
        self.register_buffer("constant", torch.full((1, channels, 1, 1), float(value)))

    def excite(self, pooled: Tensor) -> Tensor:
        return self.constant.expand(pooled.shape[0], -1, -1, -1)
