"""SPEM's fused pool-and-gate kernels, run in Triton's CPU interpreter against the composite maths."""

from __future__ import annotations

import textwrap

import pytest
from helpers.processes import run_module

pytest.importorskip("triton")


INTERPRETED = textwrap.dedent(
    """
    import torch
    from spe_lightning.kernels import spem_gate_triton as kernels
    from spe_lightning.layers.spem import SPEM

    torch.manual_seed(0)
    for shape, channels_last in (((5, 70, 9, 7), False), ((3, 40, 11, 11), True), ((33, 8, 4, 4), False)):
        b, c, h, w = shape
        spem = SPEM(c)
        for param in (spem.reweight_weight, spem.excite_weight):
            param.data.normal_()
        spem.pool.p.data = torch.tensor([0.8, 0.35])
        x = torch.randn(shape)
        x[0, 1] = 0.5  # a constant channel: max and min at the same (first) position
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        x.requires_grad_()
        gate = spem.gate(x)  # the composite maths on CPU, autograd's gradients
        grad = torch.randn_like(gate)
        gate.backward(grad)
        params = tuple(t.detach().reshape(c) for t in (spem.reweight_weight, spem.reweight_bias,
                                                        spem.excite_weight, spem.excite_bias))
        p = spem.pool.p.detach()
        fused = torch.empty(b, c)
        stats = torch.empty(2, b, c)
        index = torch.empty(2, b, c, dtype=torch.int32)
        kernels.forward(x.detach(), params, p, fused, stats, index)
        torch.testing.assert_close(fused, gate.detach().view(b, c))
        grad_x = torch.zeros_like(x)
        grad_params = torch.empty(4 * c)
        partial = torch.empty(kernels.programs(c), 2)
        kernels.backward(grad.view(b, c).contiguous(), stats, index, params, p, grad_x, grad_params, partial)
        torch.testing.assert_close(grad_x, x.grad)
        assert grad_x.is_contiguous(memory_format=torch.channels_last) == channels_last
        expected = [t.grad.reshape(c) for t in (spem.reweight_weight, spem.reweight_bias,
                                                 spem.excite_weight, spem.excite_bias)]
        torch.testing.assert_close(grad_params, torch.cat(expected))
        torch.testing.assert_close(partial.sum(0), spem.pool.p.grad)
    print("ok")
    """
)


@pytest.mark.slow
def test_the_triton_kernels_compute_the_composite_gate_and_its_gradients():
    """Odd channel counts and map sizes (masked tiles), both memory formats, a tie; interpreted on CPU."""
    done = run_module("-c", INTERPRETED, TRITON_INTERPRET="1")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
