"""SoftPool (Stergiou, Poppe, Kalliatakis, "Refining activation downsampling with SoftPool", ICCV 2021,
arXiv 2101.00440), over the whole map: ``sum_i softmax(x)_i * x_i``.

Each position weighs in by its exponential, so strong responses dominate as in max pooling, while every
position still receives gradient. Parameter-free; the softmax is computed stably (shifted by the maximum).
"""

from __future__ import annotations

from torch import Tensor

from spe_lightning.layers.pool import POOLS, GlobalPool


@POOLS.register("softpool")
class SoftPool(GlobalPool):
    """The softmax-weighted mean of every position, per channel."""

    def stats(self, x: Tensor) -> Tensor:
        flat = x.float().flatten(2)
        weights = flat.softmax(2)
        return (weights * flat).sum(2, keepdim=True).unsqueeze(-1).to(x.dtype)[None]
