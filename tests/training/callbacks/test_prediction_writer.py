"""The CSV prediction writer: one row per image, streamed batch by batch."""

from __future__ import annotations

import csv

import pytest
import torch
from helpers.models import tiny_classifier
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from spe_lightning.training.callbacks.prediction_writer import CSVPredictionWriter


def test_prediction_writer_streams_rows_for_image_only_batches(tmp_path):
    model = tiny_classifier(attention="spem")
    images = DataLoader(torch.randn(10, 3, 8, 8), batch_size=4)  # batches are bare image tensors
    writer = CSVPredictionWriter(str(tmp_path / "out" / "pred.csv"))
    trainer = Trainer(callbacks=[writer], logger=False, enable_progress_bar=False, enable_model_summary=False)
    probs = torch.cat(trainer.predict(model, images))
    with open(tmp_path / "out" / "pred.csv") as f:
        rows = list(csv.DictReader(f))
    assert writer.rows == len(rows) == 10
    assert list(rows[0]) == ["index", "pred", "prob_0", "prob_1", "prob_2"]
    assert [int(r["index"]) for r in rows] == list(range(10))
    assert [int(r["pred"]) for r in rows] == probs.argmax(1).tolist()
    assert float(rows[3]["prob_1"]) == pytest.approx(probs[3, 1].item(), abs=1e-6)
