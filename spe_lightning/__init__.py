"""spe_lightning: image classifiers with pluggable channel attention and SPEM's learned max/min pooling.

The package is laid out by role; imports run one way, from the model library up to the tools:

- ``core``: errors, name registries, number checks (standard library only);
- ``kernels``, ``layers``, ``models``: the model library (torch only, no Lightning): compiled kernels,
  pools and attention modules, backbones that take any attention by name;
- ``data``: LightningDataModules; ``runs``: what a run folder holds and who may write it;
- ``analysis``: reading runs back and drawing them;
- ``training``: the LightningModule, its recipe, metrics, speed options, loggers and callbacks;
- ``cli``: LightningCLI, the checks before a run, the exit policy;
- ``tools`` and ``benchmarks``: grid, report, export, configs, summary; timing scripts.

``import spe_lightning`` loads the model library only; :class:`ImageClassifier` (Lightning) is imported
when first named.
"""

from typing import Any

from spe_lightning.layers import create_attention, create_pool
from spe_lightning.models import create_backbone, pooling_lambdas, pooling_regularization

__all__ = [
    "ImageClassifier",
    "create_attention",
    "create_backbone",
    "create_pool",
    "pooling_lambdas",
    "pooling_regularization",
]
__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    """``spe_lightning.ImageClassifier``, imported on first use (it brings Lightning)."""
    if name == "ImageClassifier":
        from spe_lightning.training.classifier import ImageClassifier

        return ImageClassifier
    raise AttributeError(f"module 'spe_lightning' has no attribute {name!r}")
