"""The 8x8 handwritten digits: the offline dataset, packaged with spe_lightning (no download).

``digits.npz`` (45 KB) holds the 1,797 images (uint8, 0-16) and labels of the UCI "Optical Recognition of
Handwritten Digits" test set (Alpaydin and Kaynak, 1998; CC BY 4.0), the copy scikit-learn ships as
``load_digits``, bit for bit: a 45 KB file instead of a dependency on scikit-learn (51 MB installed).
"""

from __future__ import annotations

from functools import cached_property
from importlib.resources import files
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset
from torchvision.transforms import v2

from spe_lightning.core.errors import InputError
from spe_lightning.core.validation import check_fraction
from spe_lightning.data.base import ImageDataModule, Split, seeded_split

DIGITS_FILE = "digits.npz"
DIGITS_COUNT = 1797
# Pixel statistics of all 1797 images scaled to [0, 1] (fixed, like the CIFAR constants).
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3761,)


def load_digit_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The packaged digits: images (1797, 8, 8) uint8 in 0-16, labels (1797,) uint8."""
    with np.load(files("spe_lightning.data") / DIGITS_FILE) as arrays:
        return arrays["images"], arrays["target"]


class DigitsDataModule(ImageDataModule):
    """1797 grayscale digits (10 classes), upsampled so that CIFAR ResNets accept them.

    Images are scaled to [0, 1] (ink bright, background 0), resized to ``image_size`` once in ``setup``,
    normalised and replicated to ``in_chans`` channels on the fly. A seeded ``test_split`` fraction is the
    test split; ``val_split`` of the rest validates, so train, val and test are disjoint (default about
    72/13/15 %). Train augmentation is a zero-padded RandomCrop (no flip: flipped digits are other shapes).

    Args:
        image_size: side of the square network input (e.g. 16 or 32).
        in_chans: channels of the network input, 3 (replicated gray) or 1.
        test_split: fraction of the data held out as test split with ``seed``.
        batch_size, eval_batch_size, num_workers, val_split, seed, pin_memory, drop_last, predict_path: as in
            :class:`ImageDataModule`; ``num_workers`` defaults to 0 because the data is a small in-memory
            tensor and worker start-up would cost more than it saves.

    Predict images (bright ink on dark background, any size, any mode: read by the rule of
    :mod:`~spe_lightning.data.images`, colour ones only if gray) are read as one channel;
    they are resized to ``image_size`` the same way as the data.
    """

    num_classes = 10
    predict_channels = 1

    def __init__(
        self,
        image_size: int = 32,
        in_chans: int = 3,
        test_split: float = 0.15,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int | None = 0,
        val_split: float = 0.15,
        seed: int = 42,
        pin_memory: bool | None = None,
        drop_last: bool = False,
        predict_path: str | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
            val_split=val_split, seed=seed, pin_memory=pin_memory, drop_last=drop_last,
            predict_path=predict_path,
        )  # fmt: skip
        if image_size < 8:
            raise InputError(f"image_size must be >= 8 (the digits are 8x8), got {image_size}")
        if in_chans not in (1, 3):
            raise InputError(f"in_chans must be 1 or 3, got {in_chans}")
        check_fraction("test_split", test_split, low_open=True)
        self.image_size = image_size
        self.in_chans = in_chans
        self.test_split = test_split
        self.classes = [str(digit) for digit in range(10)]
        self.mean, self.std = DIGITS_MEAN * in_chans, DIGITS_STD * in_chans  # gray, then replicated
        self._resize = v2.Resize([image_size, image_size], antialias=True)
        # Grayscale(num_output_channels=3) on a 1-channel image replicates it
        finish = [v2.Normalize(DIGITS_MEAN, DIGITS_STD), v2.Grayscale(num_output_channels=in_chans)]
        self.train_transform = v2.Compose([v2.RandomCrop(image_size, padding=image_size // 8), *finish])
        self.eval_transform = v2.Compose(finish)
        self.predict_transform = v2.Compose(
            [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), self._resize, *finish]
        )

    def memory_needed(self) -> int:
        """The digits resized once to ``image_size``, float32: 1797 x size x size x 4 bytes."""
        return DIGITS_COUNT * self.image_size**2 * 4

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "test_split": self.test_split}

    @cached_property
    def _digits(self) -> tuple[TensorDataset, list[int], list[int]]:
        """All images (N, 1, S, S) in [0, 1] with labels, and the seeded (train+val, test) indices."""
        images, target = load_digit_arrays()
        images = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0
        data = TensorDataset(self._resize(images), torch.as_tensor(target, dtype=torch.long))
        rest, test = seeded_split(len(data), self.test_split, self.seed, "test_split")
        return data, rest, test

    def _load_split(self, split: Split) -> Dataset:
        data, rest, test = self._digits
        return Subset(data, rest if split == "train" else test)
