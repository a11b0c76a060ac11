"""The resumable training loader: the same augmentation with any worker count and after a resume, the
saved place in the epoch, and Lightning's overfit mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.data import FakeCIFAR, cifar
from helpers.models import LinearClassifier
from lightning.pytorch import Trainer

from spe_lightning.data import (
    DigitsDataModule,
)
from spe_lightning.data.resumable import (
    ResumableDataLoader,
    SampleKey,
    SeededSamples,
    augmentation_seeds,
)


def augmented_epoch(dataset, workers: int, epoch: int, skip: int = 0) -> torch.Tensor:
    loader = ResumableDataLoader(dataset, seed=3, batch_size=8, num_workers=workers)
    if skip:
        loader.load_state_dict({"seed": 3, "epoch": epoch, "batches": skip})
    loader.sampler.set_epoch(epoch)
    return torch.cat([images for images, _ in loader])


def test_augmentation_is_the_same_with_any_worker_count_and_after_a_resume(cifar10: FakeCIFAR) -> None:
    dm = cifar(cifar10)
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    main_rng = torch.get_rng_state()
    serial = augmented_epoch(dm.train_set, workers=0, epoch=1)
    assert torch.equal(torch.get_rng_state(), main_rng)  # loading drew nothing from the main process's RNG
    assert torch.equal(augmented_epoch(dm.train_set, workers=2, epoch=1), serial)
    assert torch.equal(augmented_epoch(dm.train_set, workers=2, epoch=1, skip=2), serial[16:])
    assert not torch.equal(augmented_epoch(dm.train_set, workers=0, epoch=2), serial)
    # one image, one seed: one augmentation; the seeds of an image differ between epochs
    seeded = SeededSamples(dm.train_set)
    assert torch.equal(seeded[SampleKey(0, 7)][0], seeded[SampleKey(0, 7)][0])
    crops = {seeded[SampleKey(0, seed)][0].numpy().tobytes() for seed in range(8)}
    assert len(crops) >= 4  # of 162 crop offsets x flips, 8 seeds land on a few
    assert augmentation_seeds(3, 1, 4).tolist() != augmentation_seeds(3, 2, 4).tolist()


def test_resumable_loader_continues_the_saved_epoch_and_starts_the_next_one_afresh():
    data = torch.utils.data.TensorDataset(torch.arange(10))

    def epoch(loader: ResumableDataLoader) -> list[list[int]]:
        return [batch[0].tolist() for batch in loader]

    loader = ResumableDataLoader(data, seed=5, batch_size=3)
    loader.sampler.set_epoch(2)
    full = epoch(loader)
    batches = iter(loader)
    seen = [next(batches)[0].tolist(), next(batches)[0].tolist()]
    state = loader.state_dict()
    assert state == {"seed": 5, "epoch": 2, "batches": 2}

    resumed = ResumableDataLoader(data, seed=0, batch_size=3)  # the seed comes from the checkpoint
    resumed.load_state_dict(state)
    assert seen + epoch(resumed) == full
    # a checkpoint taken after an epoch's last batch resumes into the next epoch, from its start
    later = ResumableDataLoader(data, seed=0, batch_size=3)
    later.load_state_dict(state)
    later.sampler.set_epoch(3)
    loader.sampler.set_epoch(3)
    assert epoch(later) == epoch(loader) != full
    assert sorted(index for batch in full for index in batch) == list(range(10))


def test_overfit_batches_reads_the_first_batches_in_order_every_epoch(tmp_path: Path) -> None:
    dm = DigitsDataModule(image_size=8, in_chans=1, batch_size=16)
    seen: list[torch.Tensor] = []

    class Record(LinearClassifier):
        def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
            seen.append(batch[1])
            return super().training_step(batch, batch_idx)

    trainer = Trainer(
        accelerator="cpu", max_epochs=2, overfit_batches=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(Record(8 * 8, dm.num_classes), datamodule=dm)
    targets = torch.stack([dm.train_set[i][1] for i in range(32)])
    assert (
        len(seen) == 4
        and torch.equal(torch.cat(seen[:2]), targets)
        and torch.equal(torch.cat(seen[2:]), targets)
    )
    with pytest.raises(ValueError, match="makes its own sampler; got RandomSampler"):
        ResumableDataLoader(dm.train_set, sampler=torch.utils.data.RandomSampler(dm.train_set))
