"""SPEM's pool and gate (stages 1 and 2) as one registered op: one Triton kernel forward, one backward, CUDA.

Eager autograd dispatches global max/min pooling and SPEM's gate maths as ~45 ops per block and step, each
a kernel launch of a few microseconds on a GPU: a ResNet-164 step launches more kernels for its 54 gates
than for its convolutions. ``spe_lightning::spem_pool_gate`` does the same maths
(:mod:`spe_lightning.kernels.spem_gate_triton`) in one launch forward (plus allocations) and three backward
(the zeroed input gradient, the kernel, the sum of p's per-program partials). Stage 3, ``x * gate``, stays a
torch op.

Where it runs: eager CUDA with Triton installed, for the reference SPEM (sigmoid on each branch) over the
paper's learned max/min mix. On the meta device too, which stands in for a GPU when ops are counted. CPU
keeps the composite maths (measured faster there: no launches to save), and so do torch.compile (which
fuses the composite itself, while a custom op would be opaque to it) and export (standard ops only).
"""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType

import torch
from torch import Tensor


@functools.cache
def _kernels() -> ModuleType | None:
    """The Triton kernels, or None where Triton is not installed (imported on first CUDA use only)."""
    if importlib.util.find_spec("triton") is None:
        return None
    from spe_lightning.kernels import spem_gate_triton

    return spem_gate_triton


def fused_gate_runs_on(x: Tensor) -> bool:
    """Whether the fused op computes the gate of ``x``: eager CUDA with Triton, or the meta device."""
    if torch.compiler.is_compiling():
        return False
    return x.device.type == "meta" or (x.device.type == "cuda" and _kernels() is not None)


Params = tuple[Tensor, Tensor, Tensor, Tensor]
Outputs = tuple[Tensor, Tensor, Tensor]


@torch.library.custom_op("spe_lightning::spem_pool_gate", mutates_args=(), device_types="cuda")
def spem_pool_gate(
    x: Tensor, w_rew: Tensor, b_rew: Tensor, w_exc: Tensor, b_exc: Tensor, p: Tensor
) -> Outputs:
    """The B x C float32 gate of ``x`` (B x C x H x W), with the 2 x B x C max and min it pooled and their
    int32 positions (for the backward); parameters of C values, p of 2."""
    b, c = x.shape[:2]
    gate = torch.empty(b, c, dtype=torch.float32, device=x.device)
    stats = torch.empty(2, b, c, dtype=torch.float32, device=x.device)
    index = torch.empty(2, b, c, dtype=torch.int32, device=x.device)
    _kernels().forward(x, (w_rew, b_rew, w_exc, b_exc), p, gate, stats, index)
    return gate, stats, index


@spem_pool_gate.register_fake
def _(x: Tensor, w_rew: Tensor, b_rew: Tensor, w_exc: Tensor, b_exc: Tensor, p: Tensor) -> Outputs:
    b, c = x.shape[:2]
    stats = x.new_empty(2, b, c, dtype=torch.float32)
    return x.new_empty(b, c, dtype=torch.float32), stats, torch.empty_like(stats, dtype=torch.int32)


Grads = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


@torch.library.custom_op("spe_lightning::spem_pool_gate_backward", mutates_args=(), device_types="cuda")
def spem_pool_gate_backward(
    grad: Tensor,
    x: Tensor,
    stats: Tensor,
    index: Tensor,
    w_rew: Tensor,
    b_rew: Tensor,
    w_exc: Tensor,
    b_exc: Tensor,
    p: Tensor,
) -> Grads:
    """Gradients of x (zero but at each channel's max and min), the four parameters and p."""
    kernels = _kernels()
    c = x.shape[1]
    grad_x = torch.zeros_like(x)  # x's memory format
    grad_params = torch.empty(4 * c, dtype=torch.float32, device=x.device)
    partial = torch.empty(kernels.programs(c), 2, dtype=torch.float32, device=x.device)
    params = (w_rew, b_rew, w_exc, b_exc)
    kernels.backward(grad.contiguous(), stats, index, params, p, grad_x, grad_params, partial)
    # outputs of a custom op must not alias each other
    return grad_x, *(g.clone() for g in grad_params.split(c)), partial.sum(0)


@spem_pool_gate_backward.register_fake
def _(grad: Tensor, x: Tensor, stats: Tensor, index: Tensor, *params: Tensor) -> Grads:
    # the op's signature above; params: the four SPEM parameters, then p
    return torch.empty_like(x), *(torch.empty_like(param) for param in params)


def _setup_context(ctx, inputs: tuple[Tensor, ...], output: Outputs) -> None:
    x, *params = inputs
    _, stats, index = output
    ctx.mark_non_differentiable(stats, index)
    ctx.set_materialize_grads(False)  # no zero gradients made for the two auxiliary outputs
    ctx.save_for_backward(x, stats, index, *params)


def _backward(ctx, grad: Tensor, _grad_stats: Tensor | None, _grad_index: Tensor | None) -> Grads:
    return spem_pool_gate_backward(grad, *ctx.saved_tensors)


spem_pool_gate.register_autograd(_backward, setup_context=_setup_context)


def fused_spem_gate(x: Tensor, params: Params, p: Tensor) -> Tensor:
    """SPEM's B x C x 1 x 1 gate of ``x``, pooled and gated by the fused op; ``params`` are SPEM's
    (1, C, 1, 1) w_rew, b_rew, w_exc, b_exc, ``p`` the learned max/min mix's."""
    b, c = x.shape[:2]
    gate, _, _ = spem_pool_gate(x, *(param.reshape(c) for param in params), p)
    return gate.view(b, c, 1, 1)
