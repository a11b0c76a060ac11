"""Training speed: images per second over the steady-state training batches, validation not counted."""

from __future__ import annotations

import time

import pytest
import torch
from helpers.models import LinearClassifier
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

from spe_lightning.training.callbacks.throughput import TrainingThroughput

BATCH, BATCHES, WARMUP = 4, 12, 2


class SlowValidation(LinearClassifier):
    """Training steps of about 10 ms; each validation batch sleeps 0.3 s."""

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        time.sleep(0.01)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        time.sleep(0.3)
        super().validation_step(batch, batch_idx)


def test_the_rate_counts_training_batches_after_the_warmup_and_not_validation(tmp_path):
    data = TensorDataset(torch.randn(BATCH * BATCHES, 4), torch.randint(0, 2, (BATCH * BATCHES,)))
    speed = TrainingThroughput(warmup=WARMUP)
    trainer = Trainer(
        max_epochs=1,
        val_check_interval=6,  # one validation inside the epoch, one at its end: 1.2 s of sleep in all
        limit_val_batches=2,
        num_sanity_val_steps=0,
        callbacks=[speed],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(SlowValidation(4, 2), DataLoader(data, batch_size=BATCH), DataLoader(data, batch_size=BATCH))
    assert speed.images == BATCH * (BATCHES - WARMUP)
    # counted: 10 steps of ~10 ms; were the 1.2 s of validation counted, the rate would be below 33 img/s
    assert speed.seconds < 0.9 and speed.rate == pytest.approx(speed.images / speed.seconds)
    assert speed.devices.startswith("1 x cpu: ")
    assert trainer.callback_metrics["train/img_per_s"] > 0
