"""Backbones: exact sizes, attention placement, every attention in every backbone, weights loading."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.resnet import BasicBlock, Bottleneck

from spe_lightning import create_backbone, pooling_lambdas, pooling_regularization
from spe_lightning.layers import attention_names, attention_pools
from spe_lightning.models import NormAttention, backbone_names
from spe_lightning.summary import count_params, model_stats
from spe_lightning.summary import main as summary_main

ATTENTIONS = [a for a in attention_names() if a != "none"]


@pytest.mark.parametrize(
    ("num_classes", "attention", "params"),
    [(10, None, 1_704_154), (10, "spem", 1_736_518), (100, None, 1_727_284), (100, "spem", 1_759_648)],
)
def test_resnet164_parameter_counts_match_the_paper(num_classes, attention, params):
    net = create_backbone("cifar_resnet", num_classes, depth=164, block="bottleneck", attention=attention)
    assert count_params(net) == params


@pytest.mark.parametrize(
    ("depth", "block", "blocks"), [(20, "basic", 9), (110, "basic", 54), (29, "bottleneck", 9)]
)
def test_cifar_depths_give_the_right_number_of_blocks(depth, block, blocks):
    net = create_backbone("cifar_resnet", 10, depth=depth, block=block, attention="se")
    assert sum(isinstance(m, BasicBlock | Bottleneck) for m in net.modules()) == blocks
    assert sum(isinstance(m, NormAttention) for m in net.modules()) == blocks


@pytest.mark.parametrize(
    ("depth", "block", "message"),
    [
        (21, "basic", "depth=21 is impossible for basic blocks; valid depths are 6n+2 for n >= 1 (8, 14, 20"),
        (
            21,
            "bottleneck",
            "depth=21 is impossible for bottleneck blocks; valid depths are 9n+2 for n >= 1 (11, 20, 29",
        ),
        (2, "basic", "depth=2 is impossible"),
        (20, "wide", "unknown block 'wide'; known blocks: basic, bottleneck"),
    ],
)
def test_impossible_depth_names_the_valid_depths(depth, block, message):
    with pytest.raises(ValueError) as info:
        create_backbone("cifar_resnet", 10, depth=depth, block=block)
    assert message in str(info.value)


def test_unknown_backbone_and_bad_arguments():
    with pytest.raises(
        ValueError, match="unknown backbone 'vgg16'; known backbones: cifar_resnet, resnet101"
    ):
        create_backbone("vgg16", 10)
    with pytest.raises(ValueError, match="does not take these arguments"):
        create_backbone("resnet18", 10, depth=18)
    with pytest.raises(ValueError, match="num_classes=0 is not allowed"):
        create_backbone("cifar_resnet", 0)
    with pytest.raises(ValueError, match="without an attention"):
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


def test_pooling_terms_are_collected_per_block():
    net = create_backbone("cifar_resnet", 10, depth=164, block="bottleneck", attention="spem")
    lams = pooling_lambdas(net)
    assert len(lams) == 54
    assert lams[0][0] == "layer1.0" and lams[-1][0] == "layer3.17"
    assert all(lam.item() == pytest.approx(0.5) for _, lam in lams)
    assert pooling_regularization(net).item() == pytest.approx(54 * 0.5)
    assert (
        pooling_lambdas(create_backbone("resnet18", 10, attention="cbam", pool="learned"))[0][0] == "layer1.0"
    )


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


@pytest.mark.parametrize(("attention", "pool"), [(a, p) for a in ATTENTIONS for p in attention_pools(a)])
def test_every_attention_and_pool_in_the_cifar_resnet(attention, pool):
    for block, depth in (("basic", 8), ("bottleneck", 11)):
        net = create_backbone("cifar_resnet", 5, depth=depth, block=block, attention=attention, pool=pool)
        for bf16 in (False, True):
            net.zero_grad()
            assert _forward_backward(net, torch.randn(2, 3, 12, 12), bf16).shape == (2, 5)


@pytest.mark.parametrize(
    ("backbone", "pool", "attention"),
    [("resnet18", p, a) for a in ATTENTIONS for p in attention_pools(a)]
    + [("resnet50", None, a) for a in ATTENTIONS],
)
def test_every_attention_in_the_torchvision_resnets(backbone, pool, attention):
    # batch 4 at 32x32: BatchNorm over 2 values per channel of a 1x1 map is degenerate in bf16, with or
    # without attention
    torch.manual_seed(0)
    net = create_backbone(backbone, 7, attention=attention, pool=pool)
    for bf16 in (False, True):
        net.zero_grad()
        assert _forward_backward(net, torch.randn(4, 3, 32, 32), bf16).shape == (4, 7)


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


def test_torchvision_weights_load_into_the_backbone_and_attention_stays_initialised(tmp_path, caplog):
    torch.manual_seed(0)
    plain = create_backbone("resnet18", 1000)
    path = tmp_path / "resnet18_plain.pth"
    torch.save(plain.state_dict(), path)
    net = create_backbone("resnet18", 10, attention="spem", weights=str(path))
    torch.testing.assert_close(net.conv1.weight, plain.conv1.weight)
    torch.testing.assert_close(net.layer4[1].bn2.norm.running_var, plain.layer4[1].bn2.running_var)
    torch.testing.assert_close(net.layer2[0].bn2.norm.weight, plain.layer2[0].bn2.weight)
    missing = net.pretrained_missing_keys
    assert "fc.weight" in missing and "layer1.0.bn2.attn.pool.p" in missing
    assert all(".attn." in k or k.startswith("fc.") for k in missing)
    assert len([k for k in missing if ".attn." in k]) == 8 * 5  # 8 blocks x (4 SPEM tensors + p)
    assert torch.all(net.layer1[0].bn2.attn.reweight_bias == -1)


def test_bad_weights_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        create_backbone("resnet18", 10, weights=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="unknown weights 'IMAGENET9K' for resnet18; known: DEFAULT"):
        create_backbone("resnet18", 10, weights="IMAGENET9K")
    with pytest.raises(ValueError, match="only available for the torchvision ResNets"):
        create_backbone("cifar_resnet", 10, depth=8, block="basic", weights="DEFAULT")


def test_summary_counts_params_and_flops_with_units(capsys):
    plain = model_stats("cifar_resnet", 10, None, depth=20, block="basic")
    spem = model_stats("cifar_resnet", 10, "spem", depth=20, block="basic")
    assert spem.params - plain.params == sum(4 * c + 2 for c in [16] * 3 + [32] * 3 + [64] * 3)
    assert spem.flops == plain.flops > 0  # SPEM adds no conv or matmul work
    rows = summary_main(attentions=["none", "se", "spem"], depth=20, block="basic")
    out = capsys.readouterr().out
    assert "2 x multiply-accumulates" in out and "MFLOPs" in out
    assert [r.attention for r in rows] == ["none", "se", "spem"]
    assert rows[1].flops > rows[0].flops


def test_backbone_registry_names():
    assert backbone_names() == ["cifar_resnet", "resnet101", "resnet18", "resnet34", "resnet50"]
