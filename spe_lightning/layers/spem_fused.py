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

It is trusted only once checked (:func:`fused_gate_trusted`): the first time it runs on a device at a
dtype, its gate and gradients are compared with the composite maths on that very input. A mismatch, or a
kernel that fails to compile, turns it off there with one warning, and the composite maths carries on.
``SPE_LIGHTNING_FUSED_GATE`` switches it: ``auto`` (default) as above, ``0`` never, ``1`` always, where a
failed check is an error; ``attention_kwargs: {fused_gate: false}`` turns it off for a model's SPEM modules.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor

from spe_lightning.core.errors import InputError

ENV_VAR = "SPE_LIGHTNING_FUSED_GATE"
_MODES = ("auto", "1", "0")
TOLERANCE = 1e-4
"""Largest difference allowed between the fused and composite gates (in [0, 1]) and gradients (relative to
the largest gradient): both compute the gate in float32 from the same pooled values."""


PARAMETER_NAMES = ("reweight_weight", "reweight_bias", "excite_weight", "excite_bias", "p")
"""The op's parameters after x, by SPEM's names (p: the learned mix's)."""


class FusedGateFallback(UserWarning):
    """The fused gate disagreed with the composite maths, or failed, on a device: it is off there."""


def fused_gate_mode() -> str:
    """``SPE_LIGHTNING_FUSED_GATE``: ``auto``, ``1`` or ``0``; anything else is an InputError."""
    mode = os.environ.get(ENV_VAR, "auto").strip().lower()
    if mode not in _MODES:
        raise InputError(f"{ENV_VAR}={mode!r} is not allowed; use one of {', '.join(_MODES)}")
    return mode


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


_checked: dict[tuple[str, torch.dtype], bool] = {}
"""(device, dtype) -> whether the fused gate agreed with the composite maths there."""


def fused_gate_checks() -> dict[tuple[str, torch.dtype], bool]:
    """What the checks found so far: (device, dtype) -> whether the fused gate is used there."""
    return dict(_checked)


def fused_gate_trusted(x: Tensor, params: Params, p: Tensor, composite: Callable[[Tensor], Tensor]) -> bool:
    """Whether to compute ``x``'s gate with the fused op: not switched off, and checked against ``composite``
    (the same gate in torch ops) the first time it runs on ``x``'s device at ``x``'s dtype."""
    mode = fused_gate_mode()
    if mode == "0":
        return False
    key = (str(x.device), x.dtype)
    if key not in _checked:
        problem = _disagreement(x, params, p, composite) if x.device.type != "meta" else None
        _checked[key] = problem is None
        if problem is not None:
            message = f"the fused SPEM gate is off on {key[0]} at {key[1]}: {problem}"
            if mode == "1":
                raise RuntimeError(f"{message} ({ENV_VAR}=1 requires it)")
            warnings.warn(
                f"{message}; the composite maths computes it instead", FusedGateFallback, stacklevel=2
            )
    return _checked[key]


def _disagreement(x: Tensor, params: Params, p: Tensor, composite: Callable[[Tensor], Tensor]) -> str | None:
    """None where the fused op's gate and gradients (of x, the parameters and p) match ``composite``'s on a
    copy of ``x``, else what differed. Runs with autograd on even under ``no_grad`` or inference mode (the
    first use may be Lightning's sanity check), and leaves no gradient behind."""
    with torch.inference_mode(False), torch.enable_grad():
        probe = x.detach().clone().requires_grad_()
        named = zip(PARAMETER_NAMES, (*params, p), strict=True)
        leaves = dict([("x", probe), *((name, t) for name, t in named if t.requires_grad)])
        try:
            fused = fused_spem_gate(probe, params, p)
        except Exception as error:  # a kernel that does not compile or launch on this device
            return f"it failed ({type(error).__name__}: {error})"
        reference = composite(probe).float()
        gap = (fused - reference).abs().max().item()
        if not gap <= TOLERANCE:
            return f"its gate differs from the composite maths by {gap:.3g} (allowed {TOLERANCE:g})"
        weights = torch.rand(reference.shape, generator=torch.Generator().manual_seed(0)).to(fused.device)
        for name, got, want in zip(
            leaves,
            torch.autograd.grad((fused * weights).sum(), list(leaves.values())),
            torch.autograd.grad((reference * weights).sum(), list(leaves.values())),
            strict=True,
        ):
            scale = want.abs().max().item() or 1.0
            gap = (got.float() - want.float()).abs().max().item() / scale
            if not gap <= TOLERANCE:
                return f"its gradient of {name} differs by {gap:.3g} relative (allowed {TOLERANCE:g})"
    return None
