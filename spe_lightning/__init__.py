"""spe_lightning: image classifiers with pluggable channel attention and SPEM's learned max/min pooling."""

from spe_lightning.layers import create_attention, create_pool
from spe_lightning.models import create_backbone, pooling_lambdas, pooling_regularization

__all__ = ["create_attention", "create_backbone", "create_pool", "pooling_lambdas", "pooling_regularization"]
__version__ = "0.1.0"
