"""timm's CNNs with our attention in their slots: faithful to timm's own attention networks, every family
with every attention, and one-line errors for what cannot be built."""

from __future__ import annotations

import importlib.util

import pytest
import timm
import torch
from helpers.cli import cli_error, run_cli, tiny_args
from helpers.processes import run_module
from torch import nn

from spe_lightning.__main__ import dispatch
from spe_lightning.core.errors import InputError
from spe_lightning.layers import ATTENTIONS, attention_names, is_attention
from spe_lightning.models import attention_modules, count_parameters, create_backbone
from spe_lightning.models.timm_backbones import check_timm_weights


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter and BN statistic drawn at random, in float64: nothing left at a special value (zero
    biases, unit gammas) that would hide a mistake."""
    g = torch.Generator().manual_seed(seed)
    net = net.double()
    with torch.no_grad():
        for tensor in [*net.parameters(), *(b for b in net.buffers() if b.is_floating_point())]:
            tensor.copy_(torch.rand(tensor.shape, generator=g, dtype=torch.float64) * 0.4 + 0.1)
    return net


TIMM_NAMES = {".se.fc1.": ".se.conv_reduce.", ".se.fc2.": ".se.conv_expand."}
"""Our SE's layers under the names EfficientNet's SE gives them (timm's SEModule shares ours)."""


def timm_name(key: str, theirs: dict) -> str:
    if key in theirs:
        return key
    for mine, their in TIMM_NAMES.items():
        key = key.replace(mine, their)
    return key


def copy_across(source: nn.Module, target: nn.Module) -> None:
    """``source``'s state into ``target``, every tensor, under our names."""
    theirs, ours = source.state_dict(), target.state_dict()
    assert {timm_name(k, theirs) for k in ours} == set(theirs)
    target.load_state_dict({k: theirs[timm_name(k, theirs)] for k in ours})


@pytest.mark.parametrize(
    ("ours", "theirs", "attention", "pool"),
    [
        ("resnet50", "seresnet50", "se", "avg"),
        ("resnet50d", "ecaresnet50d", "eca", None),
        ("efficientnet_b0", "efficientnet_b0", "se", "avg"),
    ],
)
def test_our_attention_in_timms_slot_equals_timms_own_network(ours, theirs, attention, pool):
    reference = randomize(timm.create_model(theirs)).eval()
    net = create_backbone(f"timm/{ours}", 1000, attention=attention, pool=pool).double().eval()
    assert count_parameters(net) == count_parameters(reference)
    copy_across(reference, net)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out, expected = net(x), reference(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out.backward(upstream)
    expected.backward(upstream)
    theirs = dict(reference.named_parameters())
    for name, mine in net.named_parameters():
        torch.testing.assert_close(mine.grad, theirs[timm_name(name, theirs)].grad, rtol=1e-10, atol=1e-12)


def test_in_a_network_designed_with_se_our_se_keeps_its_width_and_activation_and_not_timms_rounding():
    # EfficientNet's SE: a quarter of the block's input channels and SiLU, where ours would use C/16, ReLU
    (_, se), *_ = attention_modules(create_backbone("timm/efficientnet_b0", 10, attention="se"))
    assert (se.fc1.out_channels, type(se.act)) == (8, nn.SiLU)  # block 0: 32 channels in, 8 = 32 / 4
    # in a plain network, our SE keeps the SE paper's C // 16 and ReLU; timm's SE rounds the width up to a
    # multiple of 8 (seresnet18's first stage: 8, ours 4)
    plain = dict(attention_modules(create_backbone("timm/resnet18", 10, attention="se")))
    assert (plain["layer1.0"].fc1.out_channels, type(plain["layer1.0"].act)) == (4, nn.ReLU)
    assert timm.create_model("seresnet18").layer1[0].se.fc1.out_channels == 8


FAMILIES = {
    "resnet10t": 4,  # ResNet, basic blocks, deep stem
    "seresnext26d_32x4d": 8,  # ResNeXt, ResNet-D, with timm's SE replaced
    "ecaresnet26t": 8,  # ECA cousin
    "regnety_002": 13,  # RegNet with SE
    "regnetx_002": 13,  # RegNet without
    "efficientnet_b0": 16,
    "mobilenetv2_050": 17,
    "mobilenetv3_small_050": 11,
}
"""Model -> its blocks: each one's slot must get the attention."""


@pytest.mark.slow
@pytest.mark.parametrize("model", FAMILIES)
def test_every_family_takes_every_attention_and_pools_in_every_block(model):
    runs = [(a, None) for a in attention_names() if is_attention(a)] + [
        ("se", pool) for pool in ("max", "maxmin@0.25", "gem")
    ]
    for attention, pool in runs:
        torch.manual_seed(0)
        net = create_backbone(f"timm/{model}", 5, attention=attention, pool=pool)
        placed = attention_modules(net)
        assert len(placed) == FAMILIES[model], (attention, pool)
        out = net(torch.randn(2, 3, 32, 32))
        out.sum().backward()
        assert out.shape == (2, 5)
        assert all(p.grad is not None for _, module in placed for p in module.parameters()), (attention, pool)


def test_wide_resnet_and_the_plain_resnet_families_take_attention_too():
    for model, blocks in (("wide_resnet50_2", 16), ("resnet18", 8)):
        assert len(attention_modules(create_backbone(f"timm/{model}", 10, attention="spem"))) == blocks


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("timm/resnet5O", "unknown timm model 'resnet5O'; close matches: timm/resnet50"),
        ("timm/vgg11", "timm model 'vgg11' has no attention slot (a block's `se`)"),
    ],
)
def test_a_timm_name_that_cannot_take_attention_is_one_error_naming_it(name, message):
    with pytest.raises(InputError, match=None) as error:
        create_backbone(name, 10, attention="se")
    assert message in str(error.value)


def test_without_timm_installed_a_timm_name_says_how_to_install_it(monkeypatch):
    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "timm" else found(name, *a)
    )
    with pytest.raises(InputError) as error:
        create_backbone("timm/resnet18", 10)
    assert "pip install 'spe-lightning[timm]'" in str(error.value)


def test_weights_must_be_timms_or_an_existing_file(tmp_path):
    with pytest.raises(InputError, match="neither 'timm'"):
        check_timm_weights("timm/resnet18", "imagenet")
    with pytest.raises(InputError, match="does not exist"):
        check_timm_weights("timm/resnet18", str(tmp_path / "missing.pth"))
    saved = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), saved)
    check_timm_weights("timm/resnet18", str(saved))
    net = create_backbone("timm/resnet18", 1000, attention="se", weights=str(saved))
    assert sorted(net.pretrained_missing_keys) == sorted(
        k for k in net.state_dict() if ".se." in k
    )  # the attention's own parameters start from their own initialisation


TIMM_ON_DIGITS = ["--model.backbone=timm/resnet10t", "--model.backbone_kwargs={}", "--model.attention=spem"]


@pytest.mark.slow
def test_a_timm_network_fits_validates_and_exports_through_the_cli(tmp_path):
    args = tiny_args(tmp_path, *TIMM_ON_DIGITS)
    fitted, _ = run_cli("fit", *args)
    assert len(attention_modules(fitted.model.net)) == 4
    validated, _ = run_cli("validate", *args, "--ckpt_path=last")
    assert "val/acc1" in validated.trainer.callback_metrics
    meta = dispatch(["export", *args, "--ckpt_path=last", "--format=onnx"])
    assert meta["verified"]["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model.backbone=timm/resnet5O"], "close matches: timm/resnet50"),
        (["--model.backbone=timm/vgg11"], "timm model 'vgg11' has no attention slot"),
        (["--model.backbone_kwargs={weights: imagenet}"], "neither 'timm'"),
    ],
    ids=["unknown name", "no slot", "weights neither timm nor a file"],
)
def test_timm_bad_input_is_one_error_line_exit_2_before_anything_is_written(capsys, tmp_path, flags, message):
    base = (
        [f for f in TIMM_ON_DIGITS if not f.startswith("--model.backbone=")]
        if "backbone=" in flags[0]
        else []
    )
    args = tiny_args(tmp_path, *(base or TIMM_ON_DIGITS), *flags)
    assert message in cli_error(capsys, "fit", *args)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_timm_pretrained_weights_asked_for_offline_are_one_error_line(tmp_path):
    done = run_module(
        "fit",
        *tiny_args(tmp_path, *TIMM_ON_DIGITS, "--model.backbone_kwargs={weights: timm}"),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "empty_cache"),
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-2000:]
    assert "timm's pretrained weights for resnet10t could not be loaded" in errors[0]
    assert "Traceback" not in done.stderr and not (tmp_path / "quickstart").exists()


@pytest.mark.parametrize("name", ["se", "spem", "cbam", "coord"])
def test_our_modules_drop_into_timm_as_its_attn_layer(name):
    """timm's blocks build ``attn_layer(channels, device=..., dtype=...)``: our classes take both keywords."""
    cls = ATTENTIONS.get(name)
    net = timm.create_model("resnet10t", num_classes=3, block_args={"attn_layer": cls}, dtype=torch.float64)
    assert sum(isinstance(m, cls) for m in net.modules()) == 4  # one per block
    assert net(torch.randn(2, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64
