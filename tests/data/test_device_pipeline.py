"""The device-resident CIFAR pipeline, run on CPU tensors: torchvision's augmentation image by image, its
distribution, exact mid-epoch resume, DDP shards, and the CIFAR datamodule and Trainer using it."""

from __future__ import annotations

import torch
from helpers.data import FakeCIFAR
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from torchvision.transforms.v2 import functional as TF

from spe_lightning.data import CIFAR10DataModule
from spe_lightning.data.cifar import CIFAR_MEAN, CIFAR_STD
from spe_lightning.data.device_pipeline import PAD, DeviceAugmentedLoader


def loader(n: int = 50, batch_size: int = 8, seed: int = 3, **kwargs) -> DeviceAugmentedLoader:
    images = torch.randint(
        0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    return DeviceAugmentedLoader(
        images, torch.arange(n) % 10, batch_size, CIFAR_MEAN, CIFAR_STD, seed, **kwargs
    )


def test_each_image_is_torchvisions_pad_crop_flip_and_normalise():
    data = loader()
    order, rows, cols, flips = data.epoch_plan(0)
    (images, targets), *_ = data
    assert flips[:8].any() and not flips[:8].all()  # both paths taken in this batch
    for i in range(8):
        reference = TF.pad(data.images[order[i]], [PAD])
        reference = TF.crop(reference, int(rows[i]), int(cols[i]), 32, 32)
        if flips[i]:
            reference = TF.horizontal_flip(reference)
        reference = TF.normalize(TF.to_dtype(reference, torch.float32, scale=True), CIFAR_MEAN, CIFAR_STD)
        torch.testing.assert_close(images[i], reference, rtol=1e-5, atol=1e-5)
    assert targets.tolist() == (order[:8] % 10).tolist()


def test_crop_offsets_are_uniform_over_0_to_8_and_flips_half():
    counts, flips, n = torch.zeros(2, 9), 0, 0
    data = loader(n=2000)
    for epoch in range(5):
        _, rows, cols, flip = data.epoch_plan(epoch)
        counts[0] += torch.bincount(rows, minlength=9)
        counts[1] += torch.bincount(cols, minlength=9)
        flips, n = flips + int(flip.sum()), n + len(flip)
    expected = n / 9  # 1111 per offset value: a binomial sd of about 31
    assert ((counts - expected).abs() < 5 * 31).all(), counts
    assert abs(flips / n - 0.5) < 0.02
    assert int(rows.min()) == 0 and int(rows.max()) == 2 * PAD


def test_a_resumed_epoch_continues_with_exactly_the_same_batches():
    first = loader()
    first.sampler.set_epoch(2)
    batches = list(first)
    interrupted = loader()
    interrupted.sampler.set_epoch(2)
    seen = iter(interrupted)
    for _ in range(3):
        next(seen)
    state = interrupted.state_dict()
    assert state == {"seed": 3, "epoch": 2, "batches": 3}
    resumed = loader(seed=99)  # the seed comes from the checkpoint
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(batches) - 3 == 4
    for (x, y), (x0, y0) in zip(rest, batches[3:], strict=True):
        assert torch.equal(x, x0) and torch.equal(y, y0)
    resumed.sampler.set_epoch(3)
    assert not torch.equal(next(iter(resumed))[0], batches[0][0])  # a new epoch, a new permutation


def test_ddp_ranks_share_one_permutation_padded_like_distributed_sampler():
    shares = []
    for rank in range(3):
        data = loader(n=50)
        data.rank, data.world = rank, 3
        shares.append(data.epoch_plan(0)[0])
    assert [len(s) for s in shares] == [17, 17, 17]
    assert set(torch.cat(shares).tolist()) == set(range(50))
    assert len(loader(n=50, drop_last=True)) == 6 and len(loader(n=50)) == 7


class Tiny(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
        self.shapes: list[tuple[int, ...]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.shapes.append(tuple(x.shape))
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_cifar_datamodule_trains_through_lightning_with_the_device_pipeline(cifar10: FakeCIFAR):
    data = CIFAR10DataModule(
        data_dir=str(cifar10.root), download=True, batch_size=16, num_workers=0, device_pipeline=True
    )
    model = Tiny()
    trainer = Trainer(
        max_epochs=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, data)
    assert model.shapes == [(16, 3, 32, 32), (16, 3, 32, 32), (8, 3, 32, 32)] * 2  # 40 images, partial kept
    train = trainer.train_dataloader
    assert isinstance(train, DeviceAugmentedLoader) and train.sampler.epoch == 1  # Lightning's set_epoch
    images = torch.from_numpy(cifar10.train_images).permute(0, 3, 1, 2)
    assert torch.equal(train.images, images) and train.targets.tolist() == cifar10.train_labels


def test_pinned_memory_follows_the_accelerator_unless_set():
    from spe_lightning.data import DigitsDataModule

    assert DigitsDataModule().pins_memory() is False  # no trainer yet: nothing to copy to
    assert DigitsDataModule(pin_memory=True).pins_memory() is True
    data = DigitsDataModule()
    data.trainer = Trainer(accelerator="cpu", logger=False)
    assert data.pins_memory() is False
