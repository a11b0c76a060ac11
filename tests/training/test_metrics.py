"""Top-k accuracy without host syncs: torchmetrics' micro-averaged accuracy, with no ``.item()`` in update."""

from __future__ import annotations

import torch
from helpers.syncs import SyncCounter
from torchmetrics.classification import MulticlassAccuracy

from spe_lightning.training.metrics import TopKAccuracy


def test_sync_free_accuracy_equals_torchmetrics_multiclass_accuracy():
    torch.manual_seed(0)
    for num_classes, k in ((10, 1), (10, 5), (3, 5)):
        ours = TopKAccuracy(k)
        theirs = MulticlassAccuracy(num_classes, top_k=min(k, num_classes), average="micro")
        for _ in range(3):
            logits, target = torch.randn(17, num_classes), torch.randint(0, num_classes, (17,))
            ours.update(logits, target)
            theirs.update(logits, target)
        torch.testing.assert_close(ours.compute(), theirs.compute())
    with SyncCounter() as counter:
        TopKAccuracy(5).update(torch.randn(8, 10), torch.randint(0, 10, (8,)))
    assert counter.syncs == []
