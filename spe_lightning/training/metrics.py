"""Top-k accuracy that never reads the device: a torchmetrics ``Metric`` whose update is tensor ops only.

torchmetrics' ``MulticlassAccuracy`` reads to the host in every update (its argument checks, and the
``bincount`` of its statistics), which stalls a GPU training step twice per metric. The micro-averaged
top-k accuracy papers report is a ratio of two counts; summing them on the device and reducing them
across ranks once, at ``compute``, is all it needs.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from spe_lightning.core.validation import check_int


class TopKAccuracy(Metric):
    """The fraction of samples whose target is among the ``top_k`` highest logits (micro average)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, top_k: int = 1) -> None:
        check_int("top_k", top_k)
        super().__init__()
        self.top_k = top_k
        self.add_state("correct", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        top = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1).indices
        self.correct += (top == target.unsqueeze(-1)).any(-1).sum()
        self.total += target.numel()

    def compute(self) -> Tensor:
        return self.correct.float() / self.total.clamp(min=1)
