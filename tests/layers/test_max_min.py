"""Global max and min pooling: one op with an index-based backward, deterministic, with and without the
compiled CPU kernel, and its native form (CUDA, torch.compile)."""

from __future__ import annotations

import pytest
import torch

from spe_lightning.kernels.cpu_max_min import ENV_VAR, cpu_max_min
from spe_lightning.layers import create_attention, global_max_min
from spe_lightning.layers.max_min import max_min_with_indices, native_max_min


@pytest.mark.parametrize("channels_last", [False, True])
def test_max_min_gradient_matches_autograd(channels_last):
    x = torch.randn(4, 6, 5, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(2, 4, 6, 1, 1)
    out = global_max_min(x1)
    torch.testing.assert_close(out, torch.stack((x.amax((2, 3), keepdim=True), x.amin((2, 3), keepdim=True))))
    out.backward(g)
    torch.stack((x2.amax((2, 3), keepdim=True), x2.amin((2, 3), keepdim=True))).backward(g)
    torch.testing.assert_close(x1.grad, x2.grad)


def test_max_min_ties_route_gradient_to_one_element():
    x = torch.zeros(1, 2, 3, 3, requires_grad=True)  # every element is both max and min
    global_max_min(x).backward(torch.tensor([1.0, 2.0, 10.0, 20.0]).view(2, 1, 2, 1, 1))
    flat = x.grad.flatten(2)
    assert torch.count_nonzero(flat, dim=2).tolist() == [[1, 1]]
    assert flat.sum(2).tolist() == [[11.0, 22.0]]  # max grad + min grad, per channel


def test_max_min_is_deterministic_under_deterministic_algorithms():
    torch.use_deterministic_algorithms(True)
    try:
        x = torch.randn(2, 3, 8, 8, requires_grad=True)
        global_max_min(x).sum().backward()
        first = x.grad.clone()
        x.grad = None
        global_max_min(x).sum().backward()
        assert torch.equal(first, x.grad)
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("hw", [(32, 32), (24, 40)])
def test_gradient_goes_to_the_first_extreme_on_large_maps_with_ties(hw):
    x = torch.randn(2, 3, *hw)
    x[0, 0] = 1.0  # ties: the first occurrence wins, as with a flat argmax
    x[1, 2, 5:, :] = 7.0
    xg = x.clone().requires_grad_()
    g = torch.randn(2, 2, 3, 1, 1)
    global_max_min(xg).backward(g)
    flat = x.flatten(2)
    expected = torch.zeros_like(flat)
    expected.scatter_(2, flat.argmax(2, keepdim=True), g[0, ..., 0])
    expected.scatter_add_(2, flat.argmin(2, keepdim=True), g[1, ..., 0])
    torch.testing.assert_close(xg.grad, expected.view_as(x))


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_pooling_with_and_without_the_kernel_agree(layout, monkeypatch, fresh_switch):
    """The kernel and the torch.max/torch.min path give the same values, indices and gradients."""
    x = torch.randn(3, 20, 7, 9)
    x[0, 0] = 1.0  # ties everywhere in one channel
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = torch.randn(3, 20, 7, 18)[..., ::2]
    grad = torch.randn(2, 3, 20, 1, 1)
    results = []
    for mode in ("1", "0"):
        monkeypatch.setenv(ENV_VAR, mode)
        cpu_max_min.cache_clear()
        assert (cpu_max_min() is None) == (mode == "0")
        xg = x.clone().requires_grad_()
        values, indices = max_min_with_indices(xg)
        global_max_min(xg).backward(grad)
        results.append((values.detach(), indices, xg.grad))
    (v1, i1, g1), (v0, i0, g0) = results
    assert torch.equal(v1, v0) and torch.equal(i1, i0) and torch.equal(g1, g0)
    flat = x.flatten(2)
    assert torch.equal(i1, torch.stack((flat.argmax(2), flat.argmin(2))))
    if layout == "channels_last":
        assert g1.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_spem_compiles_without_graph_breaks():
    """The pooling is one registered op: torch.compile neither breaks the graph at it nor builds kernels."""
    spem = create_attention("spem", 16)
    x = torch.randn(4, 16, 8, 8, requires_grad=True)
    explanation = torch._dynamo.explain(spem)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    expected = spem(x)
    expected.sum().backward()
    expected_grad, x.grad = x.grad, None
    compiled = torch.compile(spem)
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x.grad, expected_grad)


def test_the_native_path_gives_the_custom_ops_values_and_one_index_gradients():
    """CUDA and torch.compile use torch.max/min with autograd's backward: same values, same gradient."""
    x = torch.randn(3, 4, 5, 6)
    x[0, 0] = 1.0  # a constant map: max and min tie everywhere
    x[1, 1, 2, :] = x[1, 1].max() + 1  # a tied maximum along a row
    upstream = torch.randn(2, 3, 4, 1, 1)
    grads = []
    for pool in (lambda t: max_min_with_indices(t)[0][..., None, None], native_max_min):
        leaf = x.clone().requires_grad_(True)
        out = pool(leaf)
        (out * upstream).sum().backward()
        grads.append((out.detach(), leaf.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
    assert int((grads[1][1][1, 1] != 0).sum()) == 2  # one element for the max, one for the min
