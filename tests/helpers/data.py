"""Data in the real on-disk formats, written small: CIFAR archives, image files and folders, random images."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset
from torchvision.datasets import CIFAR10, CIFAR100

from spe_lightning.data import CIFAR10DataModule


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@dataclass
class FakeCIFAR:
    """A tiny CIFAR archive in ``root`` and the images/labels it holds (HWC uint8, as torchvision yields)."""

    root: Path
    folder: Path
    archive: Path
    train_images: np.ndarray
    train_labels: list[int]
    test_images: np.ndarray
    test_labels: list[int]


def _batch(rng: np.random.Generator, n: int, num_classes: int, label_key: str) -> dict:
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)  # planar RGB rows, as the real files
    labels = [int(v) for v in rng.integers(0, num_classes, size=n)]
    batch = {"data": data, label_key: labels, "filenames": [f"img_{i}.png" for i in range(n)]}
    if label_key == "fine_labels":
        batch["coarse_labels"] = [label // 5 for label in labels]
    return batch


def _hwc(batches: list[dict]) -> np.ndarray:
    return np.vstack([b["data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def write_cifar(
    root: Path, dataset_cls: type[CIFAR10], monkeypatch: pytest.MonkeyPatch, per_file: int = 8
) -> FakeCIFAR:
    """Write ``dataset_cls``'s files with ``per_file`` random images each, pack the real archive name and
    point the class's MD5 checksums at the fake files, so torchvision's own checks and extraction run."""
    rng = np.random.default_rng(0)
    cifar100 = issubclass(dataset_cls, CIFAR100)
    num_classes, label_key = (100, "fine_labels") if cifar100 else (10, "labels")
    staging = root.parent / f"{root.name}_staging"
    folder = staging / dataset_cls.base_folder
    folder.mkdir(parents=True)
    batches = {name: _batch(rng, per_file, num_classes, label_key) for name, _ in dataset_cls.train_list}
    batches.update({name: _batch(rng, per_file, num_classes, label_key) for name, _ in dataset_cls.test_list})
    names = [f"class_{i}" for i in range(num_classes)]
    meta = (
        {"fine_label_names": names, "coarse_label_names": names[:20]} if cifar100 else {"label_names": names}
    )
    for name, content in [*batches.items(), (dataset_cls.meta["filename"], meta)]:
        (folder / name).write_bytes(pickle.dumps(content))
    root.mkdir(parents=True, exist_ok=True)
    archive = root / dataset_cls.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=dataset_cls.base_folder)
    monkeypatch.setattr(dataset_cls, "tgz_md5", md5(archive))
    for attr in ("train_list", "test_list"):
        files = [[name, md5(folder / name)] for name, _ in getattr(dataset_cls, attr)]
        monkeypatch.setattr(dataset_cls, attr, files)
    monkeypatch.setattr(
        dataset_cls, "meta", {**dataset_cls.meta, "md5": md5(folder / dataset_cls.meta["filename"])}
    )
    train = [batches[name] for name, _ in dataset_cls.train_list]
    test = [batches[name] for name, _ in dataset_cls.test_list]
    return FakeCIFAR(
        root=root,
        folder=root / dataset_cls.base_folder,
        archive=archive,
        train_images=_hwc(train),
        train_labels=[label for b in train for label in b[label_key]],
        test_images=_hwc(test),
        test_labels=[label for b in test for label in b[label_key]],
    )


def write_images(folder: Path, count: int, size: tuple[int, int] = (20, 24), mode: str = "RGB") -> list[Path]:
    """``count`` random PNG images of PIL ``mode`` and ``size`` (width, height) in ``folder``."""
    rng = np.random.default_rng(len(str(folder)))
    folder.mkdir(parents=True, exist_ok=True)
    channels = len(Image.new(mode, (1, 1)).getbands())  # L, RGB or RGBA (what fromarray infers)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
        path = folder / f"img_{i:02d}.png"
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(path)
        paths.append(path)
    return paths


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog"),
    splits: tuple[str, ...] = ("train", "val"),
    count: int = 3,
) -> Path:
    """An ImageNet-style tree ``root/<split>/<class>/img_XX.png`` with ``count`` RGB images per class."""
    for split in splits:
        for name in classes:
            write_images(root / split / name, count)
    return root


def normalized(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """HWC uint8 images -> normalised NCHW float, computed independently of torchvision."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


class RandomImages(LightningDataModule):
    """A few random 8x8 images, the same set for every split."""

    def __init__(self, num_classes: int = 3, n: int = 24) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(n, 3, 8, 8, generator=generator)
        self.data = TensorDataset(x, torch.randint(0, num_classes, (n,), generator=generator))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=8, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=8)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=8)


def cifar(
    fake: FakeCIFAR, module: type[CIFAR10DataModule] = CIFAR10DataModule, **kwargs
) -> CIFAR10DataModule:
    """A CIFAR datamodule over a fake archive: small batches, no workers, the archive's download step."""
    kwargs = {"download": True, "batch_size": 16, "eval_batch_size": 5, "num_workers": 0, **kwargs}
    return module(data_dir=str(fake.root), **kwargs)


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    """The raised error's message, checked to be one line."""
    message = str(excinfo.value)
    assert "\n" not in message
    return message
