"""The offline digits: shapes, normalisation, seeded disjoint splits, augmentation, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from spe_lightning.core.errors import InputError
from spe_lightning.data import (
    DigitsDataModule,
)
from spe_lightning.data.digits import DIGITS_MEAN, DIGITS_STD, load_digit_arrays


def test_digits_shapes_and_normalisation() -> None:
    dm = DigitsDataModule()
    assert (dm.num_classes, dm.in_chans, dm.image_size, dm.batch_size) == (10, 3, 32, 64)
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (64, 3, 32, 32) and labels.dtype == torch.long
    assert torch.equal(images[:, 0], images[:, 2])  # grayscale replicated
    test = torch.cat([batch[0] for batch in dm.test_dataloader()])
    assert test.shape == (270, 3, 32, 32)
    assert abs(test.mean().item()) < 0.05 and 0.7 < test.std().item() < 1.0
    small = DigitsDataModule(image_size=16, in_chans=1)
    small.setup("fit")
    assert small.train_set[0][0].shape == (1, 16, 16)


def test_digits_constants_are_the_data_statistics() -> None:
    pixels = torch.as_tensor(load_digits().images) / 16
    assert pixels.mean().item() == pytest.approx(DIGITS_MEAN[0], abs=1e-4)
    assert pixels.std().item() == pytest.approx(DIGITS_STD[0], abs=1e-4)


def test_digits_splits_are_seeded_and_disjoint() -> None:
    def indices(dm: DigitsDataModule) -> tuple[set[int], set[int], set[int]]:
        dm.setup()
        rest = dm.train_set.dataset.indices  # train+val pool -> indices into the 1797 digits
        train = {rest[i] for i in dm.train_set.indices}
        val = {rest[i] for i in dm.val_set.indices}
        return train, val, set(dm.test_set.dataset.indices)

    train, val, test = indices(DigitsDataModule())
    assert (len(train), len(val), len(test)) == (1298, 229, 270)
    assert not (train & val or train & test or val & test) and len(train | val | test) == 1797
    assert indices(DigitsDataModule()) == (train, val, test)
    other = indices(DigitsDataModule(seed=1))
    assert other[1] != val and other[2] != test
    # val_split 0 validates on the test split, as the CIFAR recipe
    dm = DigitsDataModule(val_split=0.0)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (1527, 270)


def test_digits_train_augmentation_keeps_background() -> None:
    dm = DigitsDataModule(image_size=16, in_chans=1)
    dm.setup("fit")
    background = -DIGITS_MEAN[0] / DIGITS_STD[0]
    torch.manual_seed(0)
    views = torch.stack([dm.train_set[0][0] for _ in range(10)])
    assert views.min().item() == pytest.approx(background)  # zero padding is blank paper, not grey
    assert not all(torch.equal(v, views[0]) for v in views)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 4}, "image_size must be >= 8"),
        ({"in_chans": 2}, "in_chans must be 1 or 3, got 2"),
        ({"test_split": 0.0}, r"test_split=0.0 is not allowed; it must be in \(0, 1\)"),
    ],
)
def test_digits_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        DigitsDataModule(**kwargs)


def test_the_packaged_digits_are_scikit_learns_bit_for_bit() -> None:
    images, target = load_digit_arrays()
    reference = load_digits()
    assert images.dtype == target.dtype == np.uint8
    np.testing.assert_array_equal(images, reference.images)
    np.testing.assert_array_equal(target, reference.target)
