"""FcaNet (Qin, Zhang, Wu, Li, "FcaNet: Frequency Channel Attention Networks", ICCV 2021, arXiv 2012.11879):
SE whose squeeze is the multi-spectral DCT pooling (:mod:`spe_lightning.layers.dct`), with the
authors' bias-free excitation MLP."""

from __future__ import annotations

from typing import Any

from spe_lightning.layers.pool import GlobalPool
from spe_lightning.layers.squeeze_excite import SqueezeExcite


class FcaNet(SqueezeExcite):
    """SE with ``dct`` pooling (top16 frequencies) and no biases in its two fully connected layers."""

    default_pool = "dct"

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        pool: str | GlobalPool | None = None,
        pool_kwargs: dict[str, Any] | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__(channels, reduction, pool, pool_kwargs, bias)
