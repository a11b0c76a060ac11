"""Where attention goes, and arguments for one stage's blocks only (FcaNet's per-stage DCT sizes)."""

from __future__ import annotations

import pytest
import torch
import yaml
from helpers.cli import CONFIG_DIR

from spe_lightning.core.errors import InputError
from spe_lightning.models import attention_modules, count_parameters, create_backbone

AUTHORS_SIZES = {"layer1": 56, "layer2": 28, "layer3": 14, "layer4": 7}


def fcanet(**attention_kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("resnet50", 1000, attention="fca", attention_kwargs=attention_kwargs).eval()


def test_the_fcanet_config_gives_each_stage_the_authors_dct_size_and_only_other_inputs_change():
    config = yaml.safe_load((CONFIG_DIR / "imagenet_resnet50_fca.yaml").read_text())
    authors, own = fcanet(**config["model"]["attention_kwargs"]), fcanet()
    assert {block: m.pool.size for block, m in attention_modules(authors)} == {
        f"{stage}.{i}": size
        for stage, size in AUTHORS_SIZES.items()
        for i in range({"layer1": 3, "layer2": 4, "layer3": 6, "layer4": 3}[stage])
    }
    with torch.no_grad():
        for side, differs in ((224, False), (112, True)):
            x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(side))
            relative = ((authors(x) - own(x)).norm() / own(x).norm()).item()
            assert (relative > 0.01) == differs, (side, relative)


def test_stage_arguments_merge_over_the_shared_ones_and_unknown_stages_are_named():
    stages = {"layer3": {"pool_kwargs": {"lam": 0.75}}}
    kwargs = {"reduction": 4, "pool_kwargs": {"lam": 0.25}, "stages": stages}
    net = create_backbone(
        "cifar_resnet", 10, depth=8, block="basic", attention="se", pool="maxmin", attention_kwargs=kwargs
    )
    placed = dict(attention_modules(net))
    assert [float(placed[f"layer{i}.0"].pool.lam) for i in (1, 2, 3)] == [0.25, 0.25, 0.75]
    assert placed["layer3.0"].fc1.out_channels == 64 // 4
    with pytest.raises(InputError, match=r"stages \['layer4'\] are not stages of this network; its stages: "):
        create_backbone(
            "cifar_resnet",
            10,
            depth=8,
            block="basic",
            attention="se",
            attention_kwargs={"stages": {"layer4": {}}},
        )


def test_gct_in_its_authors_placement_is_their_network_with_their_parameter_count():
    net = create_backbone("resnet50", 1000, attention="gct", attention_kwargs={"placement": "every_conv"})
    placed = dict(attention_modules(net))
    assert len(placed) == 53  # before every convolution, the stem's and the downsamples' included
    assert {"conv1", "layer1.0.downsample.0", "layer4.2.conv3"} <= set(placed)
    assert count_parameters(net) == 25_624_625  # GCT-ResNet-50 in the authors' paper and code
    conv, x = net.layer1[0].conv2, torch.randn(1, 64, 8, 8)
    with torch.no_grad():  # the attention gates the convolution's input
        conv.attn.gamma.normal_()  # off its identity start
        torch.testing.assert_close(conv(x), conv.conv(conv.attn(x)))
        assert not torch.allclose(conv(x), conv.conv(x))
    with pytest.raises(
        InputError, match=r"placement='everywhere' is not allowed; use one of \['block', 'every_conv'\]"
    ):
        create_backbone("resnet18", 10, attention="gct", attention_kwargs={"placement": "everywhere"})
