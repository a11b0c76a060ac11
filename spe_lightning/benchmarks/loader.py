"""Training-loader throughput on CIFAR-shaped data: the PIL + transforms loader against the device pipeline.

    python -m spe_lightning.benchmarks.loader --images 10000 --workers '[0, 2]'

Both make the reference augmentation (RandomCrop(32, padding=4), flip, normalise) of random uint8 CIFAR
images, batch 128: the DataLoader from PIL images as torchvision's CIFAR10 hands them out, with
``workers`` processes; the device pipeline (:mod:`spe_lightning.data.device_pipeline`) on each device
given (CPU tensors, and CUDA when there is a GPU). One warm-up epoch each, then the best of ``rounds``
epochs; ratios are against the DataLoader with the first worker count, measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from spe_lightning.core.validation import check_int
from spe_lightning.data.base import TransformedSubset
from spe_lightning.data.cifar import CIFAR_MEAN, CIFAR_STD, CIFAR10DataModule
from spe_lightning.data.device_pipeline import DeviceAugmentedLoader
from spe_lightning.data.resumable import ResumableDataLoader


class PILImages(Dataset):
    """(PIL image, label) from an N x 32 x 32 x 3 uint8 array, as torchvision's CIFAR10 returns them."""

    def __init__(self, images: np.ndarray, labels: list[int]) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), self.labels[index]


def images_per_second(batches: Iterable, n: int, rounds: int, sync=lambda: None) -> float:
    for _ in batches:  # warm-up: workers start, kernels load
        pass
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in batches:
            pass
        sync()
        best = max(best, n / (time.perf_counter() - start))
    return best


def compare_loaders(
    images: int = 10000,
    workers: list[int] = [0, 2],  # noqa: B006  (jsonargparse reads the default)
    rounds: int = 2,
    batch_size: int = 128,
) -> dict[str, float]:
    """Print images/s of each loader and its ratio to the first DataLoader."""
    check_int("images", images)
    check_int("rounds", rounds)
    check_int("batch_size", batch_size)
    for count in workers:
        check_int("workers", count, minimum=0)
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, images)]
    transform = CIFAR10DataModule().train_transform
    results: dict[str, float] = {}
    for count in workers:
        dataset = TransformedSubset(PILImages(array, labels), transform)
        loader = ResumableDataLoader(
            dataset, seed=0, batch_size=batch_size, num_workers=count, persistent_workers=count > 0
        )
        results[f"DataLoader, {count} workers"] = images_per_second(loader, images, rounds)
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()
    for device in devices:
        loader = DeviceAugmentedLoader(
            tensor, labels, batch_size, CIFAR_MEAN, CIFAR_STD, seed=0, device=device
        )
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        results[f"device pipeline, {device}"] = images_per_second(loader, images, rounds, sync)
    base = next(iter(results.values()))
    print(f"{images} CIFAR-shaped images, batch {batch_size}, {torch.get_num_threads()} torch threads")
    for name, rate in results.items():
        print(f"{name:<28}{rate:>12.0f} img/s{rate / base:>8.2f}x")
    return results


if __name__ == "__main__":
    from spe_lightning.cli.parser import script_main  # not at the top: gpu_check imports this module

    script_main(compare_loaders)
