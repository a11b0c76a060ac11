"""Published results that a grid can reproduce, printed beside ours with the protocol that produced them.

The SPEM paper (Mix-Pooling Strategy for Attention Mechanism, arXiv 2208.10322) reports single runs of
ResNet-164 (bottleneck) with its CIFAR recipe, each the best test top-1 over the epochs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PAPER_PROTOCOL = "best-on-test (paper protocol)"
"""Selection on the split that is reported: the reference code's ``is_best`` on test accuracy."""

PUBLISHED: dict[tuple[str, str, int, str], tuple[float, str]] = {
    ("CIFAR10", "cifar_resnet", 164, "none"): (0.9339, "SPEM paper, single run, " + PAPER_PROTOCOL),
    ("CIFAR10", "cifar_resnet", 164, "spem"): (0.9480, "SPEM paper, single run, " + PAPER_PROTOCOL),
    ("CIFAR100", "cifar_resnet", 164, "none"): (0.7430, "SPEM paper, single run, " + PAPER_PROTOCOL),
    ("CIFAR100", "cifar_resnet", 164, "spem"): (0.7631, "SPEM paper, single run, " + PAPER_PROTOCOL),
}
"""(dataset, backbone, depth, attention) -> (top-1, where it comes from and how it was chosen)."""


def published_result(settings: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[float, str] | None:
    """The published top-1 for a group of runs, if one exists for the same experiment: its settings
    (dataset, backbone, depth, attention with its default pool) and its flattened config (bottleneck blocks,
    no zero-initialised branches, the recipe's 164 epochs)."""
    same_network = (
        config.get("model.backbone_kwargs.block") == "bottleneck"
        and not config.get("model.backbone_kwargs.zero_init_residual")
        and config.get("trainer.max_epochs") == 164
        and settings.get("pool") in ("-", None, "learned")
    )
    try:
        depth = int(settings.get("depth"))
    except (TypeError, ValueError):
        return None
    key = (settings.get("dataset"), settings.get("backbone"), depth, settings.get("attention"))
    return PUBLISHED.get(key) if same_network else None
