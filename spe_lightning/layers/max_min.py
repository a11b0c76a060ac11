"""Global max and min pooling in one op with an index-based backward.

Autograd's own ``amax``/``amin`` backward compares every element with the result to
spread the gradient over ties; on CPU that costs ~9x the forward of a whole ResNet
block's pooling. The reference implementation (AdaptiveMaxPool2d and chained ``min``)
routes the gradient to a single element per channel instead; we do the same: the
forward finds each channel's max and min together with their first index, and the
backward scatter-adds into zeros, which is deterministic on every device (at most two
terms per element).

On CPU the forward runs the compiled kernel of :mod:`spe_lightning.kernels` (one
vectorised pass for both extremes and both indices); elsewhere, or where that kernel is
disabled, ``torch.max``/``torch.min`` over the flattened map give the same values and
indices.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from spe_lightning.kernels.cpu_max_min import cpu_max_min

_KERNEL_MAX_COLUMN = 1 << 24  # channels_last positions are counted in float lanes: exact below 2^24


def _is_channels_last(x: Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


# A registered op rather than an autograd.Function: torch.compile treats it as one opaque
# node (no graph break), and the choice of kernel happens when it runs, not when traced.
@torch.library.custom_op("spe_lightning::max_min", mutates_args=())
def max_min_with_indices(x: Tensor) -> tuple[Tensor, Tensor]:
    """Spatial max and min of a B x C x H x W tensor with their first flat indices.

    Returns ``values`` and ``indices``, each 2 x B x C (the max plane, then the min
    plane); NaN counts as the extreme, as in ``torch.max``.
    """
    b, c, h, w = x.shape
    kernel = cpu_max_min() if x.device.type == "cpu" else None
    if kernel is None:
        flat = x.flatten(2)
        top, top_index = flat.max(2)
        bottom, bottom_index = flat.min(2)
        return torch.stack((top, bottom)), torch.stack((top_index, bottom_index))
    if _is_channels_last(x) and h * w < _KERNEL_MAX_COLUMN:
        values, indices = kernel(x.permute(0, 2, 3, 1).reshape(b, h * w, c))
    else:
        values, indices = kernel(x.reshape(b * c, h * w, 1))
    return values.view(2, b, c), indices.view(2, b, c)


@max_min_with_indices.register_fake
def _(x: Tensor) -> tuple[Tensor, Tensor]:
    b, c = x.shape[:2]
    return x.new_empty(2, b, c), x.new_empty(2, b, c, dtype=torch.long)


def _setup_context(ctx, inputs: tuple[Tensor], output: tuple[Tensor, Tensor]) -> None:
    (x,) = inputs
    ctx.save_for_backward(output[1])
    ctx.shape = x.shape
    ctx.memory_format = torch.channels_last if _is_channels_last(x) else torch.contiguous_format


def _backward(ctx, grad_values: Tensor, _grad_indices: Tensor | None) -> Tensor:
    (indices,) = ctx.saved_tensors
    like = {"dtype": grad_values.dtype, "device": grad_values.device, "memory_format": ctx.memory_format}
    grad_x = torch.empty(ctx.shape, **like).zero_()
    # Max and min share an index where a channel is constant: the add sums both, and
    # with at most two terms onto zero the order of the adds cannot change the result.
    # grad_x.view(B, C, H * W) is a view in both memory formats.
    grad_x.view(*ctx.shape[:2], -1).scatter_add_(2, indices.permute(1, 2, 0), grad_values.permute(1, 2, 0))
    return grad_x


max_min_with_indices.register_autograd(_backward, setup_context=_setup_context)


_standard_ops = False


@contextmanager
def standard_ops() -> Iterator[None]:
    """Max/min pooling as ``amax``/``amin`` while exporting: no indices are needed without a backward,
    and the exported graph then holds no custom op (ONNX ReduceMax/ReduceMin, torch.export's aten ops)."""
    global _standard_ops
    previous, _standard_ops = _standard_ops, True
    try:
        yield
    finally:
        _standard_ops = previous


def standard_ops_only() -> bool:
    """Whether an export is tracing (:func:`standard_ops`): layers then use no custom op."""
    return _standard_ops


def native_max_min(x: Tensor) -> Tensor:
    """``torch.max``/``torch.min`` over the flattened map, with autograd's own backward, which also routes
    the gradient to the one returned index: the custom op's values and gradients, in ops that inductor
    can fuse and that cost no custom-op dispatch (about 100 us of host time per block on CUDA)."""
    flat = x.flatten(2)
    return torch.stack((flat.max(2).values, flat.min(2).values))[..., None, None]


def global_max_min(x: Tensor) -> Tensor:
    """Per-channel spatial max and min of a B x C x H x W tensor, stacked as 2 x B x C x 1 x 1.

    The compiled kernel's custom op where it wins, eager CPU; native reductions on other devices and
    while torch.compile traces.
    """
    if standard_ops_only():
        return torch.stack((x.amax((2, 3), keepdim=True), x.amin((2, 3), keepdim=True)))
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return native_max_min(x)
    return max_min_with_indices(x)[0][..., None, None]
