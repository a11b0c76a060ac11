"""Backbones that take any attention by name, readers of their learned pooling, their cost; torch only."""

from spe_lightning.models.attach import NormAttention, attach_attention, attention_modules
from spe_lightning.models.cifar_resnet import CifarResNet, blocks_per_stage
from spe_lightning.models.cifar_resnext import CifarResNeXt
from spe_lightning.models.cifar_wrn import CifarWideResNet
from spe_lightning.models.complexity import convolution_outputs, count_flops, count_parameters
from spe_lightning.models.factory import (
    BACKBONES,
    backbone_label,
    backbone_names,
    check_pretrained,
    create_backbone,
    load_backbone_weights,
)
from spe_lightning.models.learned_pooling import (
    learned_pools,
    pooling_lambdas,
    pooling_parameters,
    pooling_regularization,
    valued_pools,
)
from spe_lightning.models.torchvision_resnet import load_pretrained, pretrained_state_dict
from spe_lightning.models.weight_decay import no_decay_parameters

__all__ = [
    "BACKBONES",
    "CifarResNeXt",
    "CifarResNet",
    "CifarWideResNet",
    "NormAttention",
    "attach_attention",
    "attention_modules",
    "backbone_label",
    "backbone_names",
    "blocks_per_stage",
    "check_pretrained",
    "convolution_outputs",
    "count_flops",
    "count_parameters",
    "create_backbone",
    "learned_pools",
    "load_backbone_weights",
    "load_pretrained",
    "no_decay_parameters",
    "pooling_lambdas",
    "pooling_parameters",
    "pooling_regularization",
    "pretrained_state_dict",
    "valued_pools",
]
