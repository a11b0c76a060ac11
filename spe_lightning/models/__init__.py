"""Backbones that take any attention by name, and readers of their learned pooling."""

from spe_lightning.models.attach import NormAttention, attach_attention
from spe_lightning.models.cifar_resnet import CifarResNet, blocks_per_stage
from spe_lightning.models.factory import (
    backbone_label,
    backbone_names,
    check_pretrained,
    create_backbone,
    load_backbone_weights,
)
from spe_lightning.models.inspect import (
    learned_pools,
    pooling_lambdas,
    pooling_parameters,
    pooling_regularization,
    valued_pools,
)
from spe_lightning.models.torchvision_resnet import load_pretrained, pretrained_state_dict

__all__ = [
    "CifarResNet",
    "NormAttention",
    "attach_attention",
    "backbone_label",
    "backbone_names",
    "blocks_per_stage",
    "check_pretrained",
    "create_backbone",
    "learned_pools",
    "load_backbone_weights",
    "load_pretrained",
    "pooling_lambdas",
    "pooling_parameters",
    "pooling_regularization",
    "pretrained_state_dict",
    "valued_pools",
]
