"""SPEM's pool and gate (stages 1 and 2) as one Triton kernel forward and one backward, for CUDA; the
tests run them in Triton's CPU interpreter (``TRITON_INTERPRET=1``).

Eager autograd runs global max and min pooling and SPEM's gate maths as ~45 small kernels per block and
step. Here the forward is one kernel: every program takes one image and a block of channels, finds each
channel's max and min (and their first positions) over the feature map, and computes the reference
code's gate from them, in float32 whatever the input dtype::

    a = w_rew * max + b_rew        b = w_rew * min + b_rew        lam = p0^2 / (p0^2 + p1^2)
    gate = sigmoid(a + b) * sigmoid(w_exc * (lam * a + (1 - lam) * b) + b_exc)

The backward is one kernel too: one program per block of channels walks every image, writes the pooled
values' gradients into the input's gradient at the max and min positions (the one-index backward of
:mod:`spe_lightning.layers.max_min`), and reduces the parameters' gradients over the batch; p's gradient
is one partial per program, summed by torch: deterministic, no atomics.

Feature maps are read through strides, ``offset = b * stride_b + c * stride_c + i * stride_w`` for flat
position ``i``, which holds for contiguous and channels_last tensors alike (``stride_h = W * stride_w``).
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

BLOCK_B = 32
BLOCK_C = 32
BLOCK_HW = 64


@triton.jit
def _lam(p_ptr):
    p0 = tl.load(p_ptr).to(tl.float32)
    p1 = tl.load(p_ptr + 1).to(tl.float32)
    return p0, p1, p0 * p0 / (p0 * p0 + p1 * p1)


@triton.jit
def _param(ptr, cols, in_c):
    return tl.load(ptr + cols, mask=in_c, other=0.0).to(tl.float32)


@triton.jit
def _forward(
    x_ptr, w_rew_ptr, b_rew_ptr, w_exc_ptr, b_exc_ptr, p_ptr, gate_ptr, stats_ptr, index_ptr,
    B, C, HW, stride_b, stride_c, stride_w,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):  # fmt: skip
    image = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    in_c = cols < C
    top = tl.full((BLOCK_C,), float("-inf"), tl.float32)
    bottom = tl.full((BLOCK_C,), float("inf"), tl.float32)
    top_at = tl.zeros((BLOCK_C,), tl.int32)
    bottom_at = tl.zeros((BLOCK_C,), tl.int32)
    row = x_ptr + image * stride_b + cols[:, None] * stride_c
    for start in range(0, HW, BLOCK_HW):
        positions = start + tl.arange(0, BLOCK_HW)
        mask = in_c[:, None] & (positions[None, :] < HW)
        tile = tl.load(row + positions[None, :] * stride_w, mask=mask, other=0.0).to(tl.float32)
        high, high_at = tl.max(tl.where(mask, tile, float("-inf")), axis=1, return_indices=True)
        low, low_at = tl.min(tl.where(mask, tile, float("inf")), axis=1, return_indices=True)
        higher = high > top  # strictly: the first position wins a tie, as torch.max's index
        lower = low < bottom
        top_at = tl.where(higher, start + high_at, top_at)
        bottom_at = tl.where(lower, start + low_at, bottom_at)
        top = tl.where(higher, high, top)
        bottom = tl.where(lower, low, bottom)
    w_rew = _param(w_rew_ptr, cols, in_c)
    b_rew = _param(b_rew_ptr, cols, in_c)
    _, _, lam = _lam(p_ptr)
    a = w_rew * top + b_rew
    b = w_rew * bottom + b_rew
    mixed = _param(w_exc_ptr, cols, in_c) * (lam * a + (1.0 - lam) * b) + _param(b_exc_ptr, cols, in_c)
    at = image * C + cols
    tl.store(gate_ptr + at, tl.sigmoid(a + b) * tl.sigmoid(mixed), mask=in_c)
    tl.store(stats_ptr + at, top, mask=in_c)
    tl.store(stats_ptr + B * C + at, bottom, mask=in_c)
    tl.store(index_ptr + at, top_at, mask=in_c)
    tl.store(index_ptr + B * C + at, bottom_at, mask=in_c)


@triton.jit
def _backward(
    grad_ptr, stats_ptr, index_ptr, w_rew_ptr, b_rew_ptr, w_exc_ptr, b_exc_ptr, p_ptr,
    grad_x_ptr, params_ptr, partial_ptr,
    B, C, stride_b, stride_c, stride_w,
    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """``grad_x``: zeros but at each channel's max and min; ``params``: grads of w_rew, b_rew, w_exc,
    b_exc (C each); ``partial``: this program's share of grad p (2 values)."""
    pid = tl.program_id(0)
    cols = pid * BLOCK_C + tl.arange(0, BLOCK_C)
    in_c = cols < C
    w_rew = _param(w_rew_ptr, cols, in_c)[None, :]
    b_rew = _param(b_rew_ptr, cols, in_c)[None, :]
    w_exc = _param(w_exc_ptr, cols, in_c)[None, :]
    b_exc = _param(b_exc_ptr, cols, in_c)[None, :]
    p0, p1, lam = _lam(p_ptr)
    g_w_rew = tl.zeros((BLOCK_C,), tl.float32)
    g_b_rew = tl.zeros((BLOCK_C,), tl.float32)
    g_w_exc = tl.zeros((BLOCK_C,), tl.float32)
    g_b_exc = tl.zeros((BLOCK_C,), tl.float32)
    g_lam = tl.zeros((BLOCK_C,), tl.float32)
    for start in range(0, B, BLOCK_B):
        rows = start + tl.arange(0, BLOCK_B)
        mask = (rows[:, None] < B) & in_c[None, :]
        at = rows[:, None] * C + cols[None, :]
        grad = tl.load(grad_ptr + at, mask=mask, other=0.0).to(tl.float32)
        top = tl.load(stats_ptr + at, mask=mask, other=0.0)
        bottom = tl.load(stats_ptr + B * C + at, mask=mask, other=0.0)
        a = w_rew * top + b_rew
        b = w_rew * bottom + b_rew
        mix = lam * a + (1.0 - lam) * b
        s_sum = tl.sigmoid(a + b)
        s_exc = tl.sigmoid(w_exc * mix + b_exc)
        d_sum = grad * s_exc * s_sum * (1.0 - s_sum)
        d_exc = grad * s_sum * s_exc * (1.0 - s_exc)
        d_mix = d_exc * w_exc
        d_a = d_sum + d_mix * lam
        d_b = d_sum + d_mix * (1.0 - lam)
        top_at = tl.load(index_ptr + at, mask=mask, other=0)
        bottom_at = tl.load(index_ptr + B * C + at, mask=mask, other=0)
        same = top_at == bottom_at  # a constant channel: both gradients land on one element
        base = grad_x_ptr + rows[:, None] * stride_b + cols[None, :] * stride_c
        d_top = d_a * w_rew
        d_bottom = d_b * w_rew
        tl.store(base + top_at * stride_w, d_top + tl.where(same, d_bottom, 0.0), mask=mask)
        tl.store(base + bottom_at * stride_w, d_bottom, mask=mask & ~same)
        g_w_rew += tl.sum(d_a * top + d_b * bottom, axis=0)
        g_b_rew += tl.sum(d_a + d_b, axis=0)
        g_w_exc += tl.sum(d_exc * mix, axis=0)
        g_b_exc += tl.sum(d_exc, axis=0)
        g_lam += tl.sum(d_mix * (a - b), axis=0)
    tl.store(params_ptr + cols, g_w_rew, mask=in_c)
    tl.store(params_ptr + C + cols, g_b_rew, mask=in_c)
    tl.store(params_ptr + 2 * C + cols, g_w_exc, mask=in_c)
    tl.store(params_ptr + 3 * C + cols, g_b_exc, mask=in_c)
    # dlam/dp = 2 p0 p1 / s^2 * (p1, -p0), s = p0^2 + p1^2
    total = tl.sum(g_lam, axis=0)
    s = p0 * p0 + p1 * p1
    scale = 2.0 * p0 * p1 / (s * s)
    tl.store(partial_ptr + 2 * pid, total * scale * p1)
    tl.store(partial_ptr + 2 * pid + 1, -total * scale * p0)


def _strides(x: Tensor) -> tuple[int, int, int]:
    """(batch, channel, flat position) strides of a contiguous or channels_last B x C x H x W tensor."""
    stride_b, stride_c, stride_h, stride_w = x.stride()
    if stride_h != x.shape[3] * stride_w:
        raise ValueError(f"feature map strides {x.stride()} are neither contiguous nor channels_last")
    return stride_b, stride_c, stride_w


def forward(
    x: Tensor, params: tuple[Tensor, ...], p: Tensor, gate: Tensor, stats: Tensor, index: Tensor
) -> None:
    """Write the B x C gate, the 2 x B x C float32 max and min, and their int32 positions."""
    b, c, h, w = x.shape
    grid = (b, triton.cdiv(c, BLOCK_C))
    _forward[grid](
        x, *params, p, gate, stats, index, b, c, h * w, *_strides(x), BLOCK_C=BLOCK_C, BLOCK_HW=BLOCK_HW
    )


def programs(channels: int) -> int:
    """Programs of the backward: one per block of channels, each with its partial of grad p."""
    return triton.cdiv(channels, BLOCK_C)


def backward(
    grad: Tensor,
    stats: Tensor,
    index: Tensor,
    params: tuple[Tensor, ...],
    p: Tensor,
    grad_x: Tensor,
    grad_params: Tensor,
    partial: Tensor,
) -> None:
    """Write the input's gradient (into zeros ``grad_x``), the parameters' (``grad_params``, 4 C) and each
    program's share of p's (``partial``, ``programs(C)`` x 2)."""
    _, b, c = stats.shape
    _backward[(programs(c),)](
        grad, stats, index, *params, p, grad_x, grad_params, partial, b, c, *_strides(grad_x),
        BLOCK_B=BLOCK_B, BLOCK_C=BLOCK_C,
    )  # fmt: skip
