"""SPEM's fused pool-and-gate op: the ops an eager training step dispatches on the GPU path (the meta
device) against SE's, and the composite maths where the op does not run (CPU, export)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from spe_lightning.layers import SPEM
from spe_lightning.layers.max_min import standard_ops
from spe_lightning.models import create_backbone, pooling_parameters, pooling_regularization

pytest.importorskip("triton")


class OpCount(TorchDispatchMode):
    """Non-view ATen (and custom) ops dispatched: on a GPU each is a kernel launch (views launch none)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.ops[str(func)] = self.ops.get(str(func), 0) + 1
        return func(*args, **(kwargs or {}))


def ops_per_step(attention: str, device: str, depth: int = 164) -> dict[str, int]:
    """One eager training step of a CIFAR ResNet (forward, the paper's loss, backward, foreach SGD as on
    CUDA), counted after a first step has made the optimizer's state."""
    torch.manual_seed(0)
    net = create_backbone("cifar_resnet", 10, depth=depth, block="bottleneck", attention=attention).to(device)
    params = pooling_parameters(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True)
    x = torch.randn(2, 3, 32, 32, device=device)
    y = torch.zeros(2, dtype=torch.long, device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y) + 0.1 * pooling_regularization(net, params)
        loss.backward()
        optimizer.step()

    step()
    with OpCount() as count:
        step()
    return count.ops


@pytest.mark.slow
def test_an_eager_resnet164_spem_step_dispatches_fewer_ops_than_se_on_the_gpu_path():
    totals = {
        attention: sum(ops_per_step(attention, "meta").values()) for attention in ("none", "se", "spem")
    }
    # measured: plain 1452, SE 2316, SPEM 1890 (4428 with the composite gate: 55 more per block than plain)
    assert totals["spem"] <= totals["se"]
    assert totals["spem"] - totals["none"] <= 9 * 54  # at most 9 ops per block for pool, gate, recalibrate
    spem = ops_per_step("spem", "meta")
    assert (
        spem["spe_lightning.spem_pool_gate.default"]
        == spem["spe_lightning.spem_pool_gate_backward.default"]
        == 54
    )


def test_cpu_and_export_keep_the_composite_gate():
    assert not [op for op in ops_per_step("spem", "cpu", depth=11) if op.startswith("spe_lightning.spem")]
    spem = SPEM(8).to("meta")
    with standard_ops(), OpCount() as count:
        spem(torch.empty(2, 8, 4, 4, device="meta"))
    assert not [op for op in count.ops if op.startswith("spe_lightning")]
