"""``create_backbone``: every attention in every backbone (where it sits, that it trains), the registry,
plain networks, any input size, deterministic gradients."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.resnet import BasicBlock, Bottleneck

from spe_lightning import create_backbone, pooling_lambdas, pooling_regularization
from spe_lightning.core.errors import InputError
from spe_lightning.layers import attention_names, attention_pools
from spe_lightning.models import NormAttention, attention_modules, backbone_names

ATTENTIONS = [a for a in attention_names() if a != "none"]


def test_unknown_backbone_and_bad_arguments():
    with pytest.raises(
        InputError,
        match="unknown backbone 'vgg16'; known backbones: cifar_resnet, cifar_resnext, cifar_wrn, resnet101, "
        "resnet18, resnet34, resnet50, timm/<model name>",
    ):
        create_backbone("vgg16", 10)
    with pytest.raises(InputError, match="backbone 'resnet18' does not take depth; it takes: num_classes"):
        create_backbone("resnet18", 10, depth=18)
    with pytest.raises(InputError, match="num_classes=0 is not allowed"):
        create_backbone("cifar_resnet", 0)
    with pytest.raises(InputError, match="without an attention"):
        create_backbone("cifar_resnet", 10, depth=8, block="basic", pool="max")


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_attention_sits_after_the_last_norm_before_the_shortcut(block):
    """The attention input is the last BN's output; the block adds the shortcut afterwards."""
    net = create_backbone(
        "cifar_resnet", 10, depth=8 if block == "basic" else 11, block=block, attention="spem"
    )
    first = net.layer1[0]
    last_norm = first.bn2 if block == "basic" else first.bn3
    assert isinstance(last_norm, NormAttention)
    seen = {}
    # clones: the block adds the shortcut in place right after the attention
    last_norm.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("bn", o.clone()))
    last_norm.attn.register_forward_hook(lambda m, i, o: seen.__setitem__("attn", (i[0].clone(), o.clone())))
    net.eval()(torch.randn(2, 3, 16, 16))
    attn_in, attn_out = seen["attn"]
    assert torch.equal(attn_in, seen["bn"])
    assert attn_out.shape[1] == last_norm.norm.num_features
    torch.testing.assert_close(attn_out, attn_in * last_norm.attn.gate(attn_in))


def test_plain_network_has_no_attention_and_no_pool_terms():
    net = create_backbone("cifar_resnet", 10, depth=8, block="basic")
    assert not any(isinstance(m, NormAttention) for m in net.modules())
    assert pooling_regularization(net).item() == 0.0
    assert pooling_lambdas(net) == []


def _forward_backward(net, x, bf16):
    net.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = net(x)
        loss = out.float().logsumexp(1).mean() + 0.1 * pooling_regularization(net)
    loss.backward()
    assert torch.isfinite(out.float()).all()
    learned = [p for p in net.parameters() if p.requires_grad]  # LSE's r is fixed by default
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in learned)
    return out


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_every_attention_in_the_cifar_resnets(attention):
    """Attaching attention does not depend on the pool (every pair is checked once, in the layer's tests):
    one pool per attention, in basic and bottleneck blocks, fp32 and bf16."""
    for block, depth in (("basic", 8), ("bottleneck", 11)):
        net = create_backbone("cifar_resnet", 5, depth=depth, block=block, attention=attention)
        assert len(attention_modules(net)) == 3
        for bf16 in (False, True):
            net.zero_grad()
            assert _forward_backward(net, torch.randn(2, 3, 12, 12), bf16).shape == (2, 5)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_every_attention_in_the_torchvision_resnets(attention):
    # batch 4 at 32x32: BatchNorm over 2 values per channel of a 1x1 map is degenerate in bf16, with or
    # without attention
    torch.manual_seed(0)
    net = create_backbone("resnet18", 7, attention=attention, pool=(attention_pools(attention) or [None])[-1])
    assert len(attention_modules(net)) == 8
    for bf16 in (False, True):
        net.zero_grad()
        assert _forward_backward(net, torch.randn(4, 3, 32, 32), bf16).shape == (4, 7)


def test_attention_fills_every_bottleneck_of_resnet50():
    net = create_backbone("resnet50", 7, attention="spem")
    blocks = [m for m in net.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16 and all(isinstance(block.bn3, NormAttention) for block in blocks)
    assert _forward_backward(net, torch.randn(2, 3, 32, 32), bf16=False).shape == (2, 7)


@pytest.mark.parametrize("backbone", ["resnet34", "resnet101"])
def test_deep_torchvision_resnets_build_with_spem(backbone):
    net = create_backbone(backbone, 10, attention="spem")
    blocks = sum(isinstance(m, BasicBlock | Bottleneck) for m in net.modules())
    assert len(pooling_lambdas(net)) == blocks == {"resnet34": 16, "resnet101": 33}[backbone]


def test_batch_one_eval_any_input_size_and_grayscale_stem():
    net = create_backbone("cifar_resnet", 3, depth=8, block="basic", attention="spem", in_chans=1).eval()
    with torch.no_grad():
        for hw in ((8, 8), (17, 23), (40, 40)):
            assert net(torch.randn(1, 1, *hw)).shape == (1, 3)


def test_deterministic_algorithms_give_identical_gradients():
    torch.use_deterministic_algorithms(True)
    try:
        grads = []
        for _ in range(2):
            torch.manual_seed(0)
            net = create_backbone("cifar_resnet", 10, depth=8, block="basic", attention="spem")
            _forward_backward(net, torch.randn(4, 3, 16, 16), bf16=False)
            grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
        assert torch.equal(grads[0], grads[1])
    finally:
        torch.use_deterministic_algorithms(False)


def test_backbone_registry_names():
    assert backbone_names() == [
        "cifar_resnet",
        "cifar_resnext",
        "cifar_wrn",
        "resnet101",
        "resnet18",
        "resnet34",
        "resnet50",
        "timm/<model name>",
    ]


def plain_weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's own weights, named as in the plain network (attention and its wrapper left out)."""
    return {
        name.replace(".norm.", "."): value for name, value in net.state_dict().items() if ".attn." not in name
    }


@pytest.mark.parametrize("backbone", [{"name": "cifar_resnet", "depth": 11}, {"name": "resnet18"}])
def test_one_seed_gives_every_arm_the_same_backbone_and_the_same_stream_after_it(backbone):
    """Paired seeds: the arms of a grid differ by their attention only, not by its draws."""
    arms = {}
    for attention, pool in ((None, None), ("se", None), ("se", "learned"), ("cbam", "max"), ("srm", None)):
        torch.manual_seed(7)
        net = create_backbone(num_classes=10, attention=attention, pool=pool, **backbone)
        arms[attention, pool] = plain_weights(net), torch.rand(4)  # what is drawn next: data order, say
    (plain, after), *others = arms.values()
    for weights, drawn in others:
        assert weights.keys() == plain.keys()
        assert all(torch.equal(weights[name], plain[name]) for name in plain)
        assert torch.equal(drawn, after)
    # and the attention's own weights still follow the seed
    torch.manual_seed(8)
    other_seed = plain_weights(create_backbone(num_classes=10, attention="se", **backbone))
    assert not all(torch.equal(other_seed[name], plain[name]) for name in plain)
