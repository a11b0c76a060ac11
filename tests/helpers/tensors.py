"""Inputs and checks for layers: random maps, formula checks of values and gradients, large activations."""

from __future__ import annotations

import torch
from torch import Tensor


def check(pool_or_module, formula, x: Tensor, params: tuple[str, ...] = ()) -> None:
    """Output and gradients (input and the named parameters) of the module against ``formula(x)``."""
    x = x.clone().requires_grad_(True)
    out = pool_or_module(x)
    expected = formula(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(out)
    tensors = [x] + [getattr(pool_or_module, name) for name in params]
    got = torch.autograd.grad(out, tensors, upstream)
    want = torch.autograd.grad(expected, tensors, upstream)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def maps(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def large_activations(dtype: torch.dtype) -> torch.Tensor:
    """Values near float16's limit (65504): any sum of a few of them overflows in float16."""
    return torch.empty(2, 4, 6, 6).uniform_(3e4, 6e4, generator=torch.Generator().manual_seed(0)).to(dtype)
