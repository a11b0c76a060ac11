"""The controls for SPEM's initialisation: a constant gate equal to SPEM's starting one, and zero-initialised
residual branches, in every backbone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spe_lightning.core.errors import InputError
from spe_lightning.layers import create_attention
from spe_lightning.layers.constant_gate import spem_initial_gate
from spe_lightning.models import attention_modules, create_backbone
from spe_lightning.models.attach import LAST_NORM

BACKBONES = [
    ("cifar_resnet", {"depth": 8, "block": "basic"}),
    ("cifar_resnet", {"depth": 11, "block": "bottleneck"}),
    ("resnet18", {}),
]


def test_the_constant_gate_is_spems_starting_gate_and_learns_nothing():
    reference = torch.sigmoid(torch.tensor(-2.0)) * torch.sigmoid(torch.tensor(-1.0))  # the paper's init
    assert spem_initial_gate() == pytest.approx(float(reference))
    gate = create_attention("const_gate", 8)
    assert list(gate.parameters()) == []
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(gate(x), x * spem_initial_gate())
    with pytest.raises(InputError, match="ConstantGate has no pooling stage"):
        create_attention("const_gate", 8, pool="max")


@pytest.mark.parametrize(("name", "kwargs"), BACKBONES, ids=["basic", "bottleneck", "resnet18"])
def test_the_control_scales_every_residual_branch_as_spem_does_at_init_then_stays(name, kwargs):
    nets = {}
    for attention in ("spem", "const_gate"):
        torch.manual_seed(0)  # paired seeds: the same backbone weights in both
        nets[attention] = create_backbone(name, 5, attention=attention, **kwargs).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(nets["const_gate"](x), nets["spem"](x))  # every branch scaled alike
    for net in nets.values():  # one training step each
        net.train()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
        nn.functional.cross_entropy(net(x), torch.tensor([0, 1])).backward()
        optimizer.step()
    (_, constant), *_ = attention_modules(nets["const_gate"])
    assert torch.all(constant.constant == spem_initial_gate())  # never adapts
    (_, spem), *_ = attention_modules(nets["spem"])
    assert not torch.all(spem.reweight_bias == -1.0)  # SPEM's moved after one step


@pytest.mark.parametrize(("name", "kwargs"), BACKBONES, ids=["basic", "bottleneck", "resnet18"])
def test_zero_init_residual_makes_every_residual_branch_start_at_zero(name, kwargs):
    torch.manual_seed(0)
    net = create_backbone(name, 5, zero_init_residual=True, **kwargs)
    last_norms = [getattr(m, LAST_NORM[type(m)]) for m in net.modules() if type(m) in LAST_NORM]
    assert last_norms and all(torch.all(norm.weight == 0) for norm in last_norms)
    torch.manual_seed(0)
    plain = create_backbone(name, 5, **kwargs)
    assert all(torch.all(m.weight != 0) for m in plain.modules() if isinstance(m, nn.BatchNorm2d))
    x = torch.randn(2, 3, 16, 16)
    net(x).sum().backward()  # and it trains: the zeroed gammas get gradients
    assert all(norm.weight.grad.abs().sum() > 0 for norm in last_norms)
