"""torchvision's ResNets from torchvision weights (a local file offline): the plain network loads, the
attention stays initialised; bad weights are one-line errors."""

from __future__ import annotations

import pytest
import torch

from spe_lightning import create_backbone
from spe_lightning.core.errors import InputError


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
    with pytest.raises(InputError, match="unknown weights 'IMAGENET9K' for resnet18; known: DEFAULT"):
        create_backbone("resnet18", 10, weights="IMAGENET9K")
    with pytest.raises(InputError, match="only available for the torchvision ResNets"):
        create_backbone("cifar_resnet", 10, depth=8, block="basic", weights="DEFAULT")
