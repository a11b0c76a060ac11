"""SPEM's fused pool-and-gate op: the ops an eager training step dispatches on the GPU path (the meta
device) against SE's, and the composite maths where the op does not run (CPU, export)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from spe_lightning.core.errors import InputError
from spe_lightning.layers import SPEM, spem_fused
from spe_lightning.layers import spem as spem_module
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


class StandInOp:
    """The fused op as a test controls it, on CPU: the composite gate plus ``error``, or a failure."""

    def __init__(self, error: float = 0.0, fails: bool = False) -> None:
        self.error, self.fails, self.calls = error, fails, 0

    def __call__(self, x: torch.Tensor, params: tuple, p: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fails:
            raise RuntimeError("PassManager::run failed")
        owner = self.owners[id(params[0])]  # the SPEM module whose parameters these are
        return super(SPEM, owner).gate(x).float() + self.error


@pytest.fixture
def stand_in(monkeypatch):
    """Put a :class:`StandInOp` where the fused op runs (CPU counts as a GPU) and forget earlier checks."""

    def install(op: StandInOp, mode: str | None = None) -> StandInOp:
        monkeypatch.setattr(spem_module, "fused_gate_runs_on", lambda x: True)
        for module in (spem_module, spem_fused):
            monkeypatch.setattr(module, "fused_spem_gate", op)
        monkeypatch.setattr(spem_fused, "_checked", {})
        if mode is None:
            monkeypatch.delenv(spem_fused.ENV_VAR, raising=False)
        else:
            monkeypatch.setenv(spem_fused.ENV_VAR, mode)
        return op

    return install


def train_steps(net: torch.nn.Module, steps: int = 3) -> torch.Tensor:
    """A sanity-check forward in inference mode (as Lightning's first), then SGD steps; the last logits."""
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    with torch.inference_mode():
        net(x)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    return net(x).detach()


def tiny_spem_net(**attention_kwargs) -> torch.nn.Module:
    torch.manual_seed(1)
    net = create_backbone(
        "cifar_resnet", 3, depth=8, block="basic", attention="spem", attention_kwargs=attention_kwargs
    )
    with torch.no_grad():  # SPEM's gate starts flat: random weights make a wrong gate show
        for module in net.modules():
            if isinstance(module, SPEM):
                for param in (module.reweight_weight, module.excite_weight):
                    param.normal_()
    return net


def bind(op: StandInOp, net: torch.nn.Module) -> StandInOp:
    op.owners = {id(m.reweight_weight): m for m in net.modules() if isinstance(m, SPEM)}
    return op


@pytest.mark.parametrize(
    ("op", "said"),
    [
        (StandInOp(error=0.01), "its gate differs from the composite maths by 0.01"),
        (StandInOp(fails=True), "it failed (RuntimeError: PassManager::run failed)"),
    ],
)
def test_a_fused_gate_that_disagrees_or_fails_is_turned_off_with_one_warning(stand_in, op, said):
    composite = train_steps(tiny_spem_net(fused_gate=False))
    net = tiny_spem_net()
    stand_in(bind(op, net))
    with pytest.warns(spem_fused.FusedGateFallback) as warned:
        trained = train_steps(net)
    assert (
        len(warned) == 1
        and said in str(warned[0].message)
        and "on cpu at torch.float32" in str(warned[0].message)
    )
    assert op.calls == 1  # the check only: the training never used it
    assert torch.equal(trained, composite)


def test_a_fused_gate_that_agrees_is_used_after_one_check(stand_in, recwarn):
    net = tiny_spem_net()
    op = stand_in(bind(StandInOp(), net))
    train_steps(net, steps=2)
    assert not [w for w in recwarn if issubclass(w.category, spem_fused.FusedGateFallback)]
    # the check (1), then every SPEM gate of every forward: the sanity forward, 2 steps and the last one
    blocks = sum(isinstance(m, SPEM) for m in net.modules())
    assert op.calls == 1 + 4 * blocks


def test_the_switch_turns_the_fused_gate_off_or_makes_a_failed_check_an_error(stand_in):
    net = tiny_spem_net()
    op = stand_in(bind(StandInOp(), net), mode="0")
    train_steps(net, steps=1)
    assert op.calls == 0
    assert tiny_spem_net(fused_gate=False).get_submodule("layer1.0.bn2.attn").fusable is False
    stand_in(bind(StandInOp(error=0.5), net), mode="1")
    with pytest.raises(RuntimeError, match="SPE_LIGHTNING_FUSED_GATE=1 requires it"):
        train_steps(net, steps=1)
    stand_in(bind(StandInOp(), net), mode="sometimes")
    with pytest.raises(
        InputError, match="SPE_LIGHTNING_FUSED_GATE='sometimes' is not allowed; use one of auto, 1, 0"
    ):
        train_steps(net, steps=1)
