"""FcaNet's multi-spectral pooling (Qin, Zhang, Wu, Li, "FcaNet: Frequency Channel Attention Networks",
ICCV 2021, arXiv 2012.11879).

The channels are split into F consecutive groups and group i is pooled with one 2-D DCT basis function
(u_i, v_i): ``sum_hw x[c, h, w] * B(u_i, h, H) * B(v_i, w, W)`` with the orthonormal DCT-II basis
``B(u, t, T) = cos(pi * u * (t + 0.5) / T) / sqrt(T)`` (times sqrt(2) for u > 0). The frequencies are
chosen by the paper's names, ``top16`` (the default: the 16 best single frequencies of its ablation),
``low16`` (the lowest) or ``bot16`` (the worst), with 1, 2, 4, 8, 16 or 32 frequencies, given on a 7 x 7
grid and scaled to the filter's size (``size // 7``), as the authors' code does.

The filter is ``size`` x ``size``; a map of another size is resized to it with adaptive average pooling,
as the authors do (folded into the filter: :meth:`DCTPool.filters`). ``size=None`` (the default) takes
the largest multiple of 7 not above the map's side (at least 7): FcaNet's ImageNet sizes 56/28/14/7
exactly, 28/14/7 for CIFAR's 32/16/8.

The lowest frequency (0, 0) is average pooling times ``size`` (the orthonormal scale); ``scale="mean"``
divides every filter by ``size`` so that it is the average exactly.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from spe_lightning.core.errors import InputError
from spe_lightning.layers.pool import POOLS, GlobalPool

GRID = 7
"""The paper gives its frequencies on a 7 x 7 DCT grid."""
FREQUENCIES = {  # (u, v) on the 7 x 7 grid, best first, from the paper's single-frequency ablation
    "top": (
        (0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1),
        (0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3),
    ),
    "low": (
        (0, 0, 1, 1, 0, 2, 2, 1, 2, 0, 3, 4, 0, 1, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4),
        (0, 1, 0, 1, 2, 0, 1, 2, 2, 3, 0, 0, 4, 3, 1, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3),
    ),
    "bot": (
        (6, 1, 3, 3, 2, 4, 1, 2, 4, 4, 5, 1, 4, 6, 2, 5, 6, 1, 6, 2, 2, 4, 3, 3, 5, 5, 6, 2, 5, 5, 3, 6),
        (6, 4, 4, 6, 6, 3, 1, 4, 4, 5, 6, 5, 2, 2, 5, 1, 4, 3, 5, 0, 3, 1, 1, 2, 4, 2, 1, 1, 5, 3, 3, 3),
    ),
}
COUNTS = (1, 2, 4, 8, 16, 32)


def frequency_names() -> list[str]:
    return [f"{kind}{n}" for kind in FREQUENCIES for n in COUNTS]


def select_frequencies(name: str) -> list[tuple[int, int]]:
    """``"top16"`` -> the paper's 16 (u, v) pairs on the 7 x 7 grid."""
    kind, count = name[:3], name[3:]
    if kind not in FREQUENCIES or not count.isdigit() or int(count) not in COUNTS:
        raise InputError(f"dct pool frequencies={name!r} is not allowed; choose one of {frequency_names()}")
    us, vs = FREQUENCIES[kind]
    return list(zip(us[: int(count)], vs[: int(count)], strict=True))


def dct_basis(u: int, size: int) -> Tensor:
    """The orthonormal DCT-II basis function of frequency u over ``size`` positions (float64)."""
    t = torch.arange(size, dtype=torch.float64)
    basis = torch.cos(math.pi * u * (t + 0.5) / size) / math.sqrt(size)
    return basis * math.sqrt(2) if u else basis


def filter_size(side: int) -> int:
    return max(GRID, side // GRID * GRID)


@POOLS.register("dct")
class DCTPool(GlobalPool):
    """Per channel group, the map's component at one DCT frequency."""

    directional = False

    def __init__(
        self,
        channels: int | None = None,
        frequencies: str = "top16",
        size: int | None = None,
        scale: Literal["orthonormal", "mean"] = "orthonormal",
    ) -> None:
        if channels is None:
            raise InputError("dct pool needs channels: build it through an attention (channels come from it)")
        if size is not None and (not isinstance(size, int) or size < GRID):
            raise InputError(f"dct pool size={size!r} is not allowed; use None or an integer >= {GRID}")
        if scale not in ("orthonormal", "mean"):
            raise InputError(f"dct pool scale={scale!r} is not allowed; use orthonormal or mean")
        super().__init__()
        self.frequencies = select_frequencies(frequencies)
        self.frequency_set = frequencies
        self.channels, self.size, self.scale = channels, size, scale
        # channel c uses frequency c * F // C: F equal consecutive groups when F divides C, as the paper
        self.register_buffer(
            "group", torch.arange(channels) * len(self.frequencies) // channels, persistent=False
        )
        self._filters: dict[tuple[int, int, torch.device], Tensor] = {}

    def settings(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "frequencies": self.frequency_set,
            "size": self.size,
            "scale": self.scale,
        }

    def filters(self, h: int, w: int, device: torch.device) -> Tensor:
        """C x h x w float32 filters for an h x w map, cached per map size (fixed, as the paper's default).

        The authors resize the map to the filter's size (adaptive average pooling), then take the DCT
        component. Both are linear, so their composition is one filter on the map itself: the DCT basis
        taken through the transpose of the resize, ``R_h^T B R_w``. Same values, and the step pools the
        map once instead of resizing it (the resize alone cost 0.9 of this pool's time).
        """
        key = (h, w, device)
        if key not in self._filters:
            size = self.size or filter_size(min(h, w))
            resize_h, resize_w = resize_matrix(h, size), resize_matrix(w, size)
            step = size // GRID
            planes = torch.stack(
                [
                    torch.outer(
                        resize_h.T @ dct_basis(u * step, size), resize_w.T @ dct_basis(v * step, size)
                    )
                    for u, v in self.frequencies
                ]
            )
            if self.scale == "mean":
                planes = planes / size
            self._filters[key] = planes[self.group.cpu()].to(device=device, dtype=torch.float32)
        return self._filters[key]

    def stats(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.channels:
            raise ValueError(f"dct pool built for {self.channels} channels got a map with {x.shape[1]}")
        filters = self.filters(x.shape[2], x.shape[3], x.device)
        pooled = (x.float() * filters).sum((2, 3), keepdim=True)
        return pooled.to(x.dtype)[None]


def resize_matrix(side: int, size: int) -> Tensor:
    """``size`` x ``side`` float64 matrix of 1-D adaptive average pooling from ``side`` to ``size``
    positions (output i averages inputs floor(i * side / size) .. ceil((i + 1) * side / size) - 1)."""
    matrix = torch.zeros(size, side, dtype=torch.float64)
    for i in range(size):
        start, end = (i * side) // size, -((-(i + 1) * side) // size)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix
