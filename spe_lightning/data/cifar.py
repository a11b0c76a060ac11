"""CIFAR-10 / CIFAR-100 with the reference recipe's augmentation and clear errors for missing or bad files."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import check_integrity, download_url, extract_archive
from torchvision.transforms import v2

from spe_lightning.core.errors import InputError, MissingInput, summarize
from spe_lightning.data.base import ImageDataModule, Split, to_normalized_tensor
from spe_lightning.data.device_pipeline import DeviceAugmentedLoader

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
HINT = "set download: true (--data.download=true) to fetch it"


def _unpickle_error(path: Path) -> str | None:
    try:
        with open(path, "rb") as file:
            pickle.load(file, encoding="latin1")
    except Exception as err:
        return summarize(err, with_type=True)
    return None


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 from ``data_dir/cifar-10-batches-py``, as torchvision stores it.

    Args:
        data_dir: folder holding the extracted ``cifar-10-batches-py`` (``cifar-100-python``) folder, or
            its archive, or where to download it.
        download: fetch and extract the archive in ``prepare_data`` when the files are missing or damaged.
        device_pipeline: keep the training images on the accelerator and augment whole batches there
            (:class:`~spe_lightning.data.device_pipeline.DeviceAugmentedLoader`: the same augmentation
            distribution, no worker processes); the GPU configs turn it on.
        **kwargs: the shared loader/split arguments of :class:`ImageDataModule`.

    Train: RandomCrop(32, padding=4) + horizontal flip + normalise; eval: normalise only. Predict images
    of any size are resized and centre-cropped to 32x32 first.
    """

    dataset_cls: type[CIFAR10] = CIFAR10
    num_classes = 10
    image_size = 32
    mean, std = CIFAR_MEAN, CIFAR_STD

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        device_pipeline: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.download = download
        self.device_pipeline = device_pipeline
        normalize = to_normalized_tensor(CIFAR_MEAN, CIFAR_STD)
        self.train_transform = v2.Compose(
            [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), *normalize]
        )
        self.eval_transform = v2.Compose(normalize)
        self.predict_transform = v2.Compose([v2.Resize(32), v2.CenterCrop(32), *normalize])

    @property
    def root(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def source(self) -> str:
        return str(self.root)

    @property
    def folder(self) -> Path:
        """Where the extracted batch files are expected."""
        return self.root / self.dataset_cls.base_folder

    def _files(self) -> list[tuple[str, str]]:
        """(file name, MD5) of every file torchvision reads, batches and metadata."""
        cls = self.dataset_cls
        files = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
        return [(name, md5) for name, md5 in files]

    def _intact(self) -> bool:
        return all(check_integrity(self.folder / name, md5) for name, md5 in self._files())

    def prepare_data(self) -> None:
        """Download and extract the archive when ``download`` is set and the files are not all intact."""
        if not self.download or self._intact():
            return
        cls = self.dataset_cls
        archive = self.root / cls.filename
        stale = archive.is_file() and not check_integrity(archive, cls.tgz_md5)
        try:
            download_url(cls.url, self.root, cls.filename, cls.tgz_md5)
        except Exception as err:
            found = f"{archive} failed its MD5 check (corrupt or truncated) and " if stale else ""
            raise InputError(
                f"{found}downloading {cls.url} to {archive} failed ({summarize(err, with_type=True)}); "
                f"without network, place {cls.filename} or the extracted {cls.base_folder}/ in {self.root}"
            ) from err
        try:
            extract_archive(archive, self.root)
        except Exception as err:
            raise InputError(
                f"cannot extract {archive}, it is corrupt or truncated ({summarize(err, with_type=True)}); "
                "delete it and download again"
            ) from err

    def train_dataloader(self) -> DeviceAugmentedLoader | DataLoader:
        if not self.device_pipeline:
            return super().train_dataloader()
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before train_dataloader()")
        source = self._source("train")
        images = torch.from_numpy(source.data).permute(0, 3, 1, 2)  # N x 32 x 32 x 3 uint8 -> N x 3 x 32 x 32
        targets = torch.as_tensor(source.targets)
        if self.train_indices is not None:
            images, targets = images[self.train_indices], targets[self.train_indices]
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        return DeviceAugmentedLoader(
            images.contiguous(), targets, self.batch_size, CIFAR_MEAN, CIFAR_STD, device=device,
            drop_last=self.drop_last,
        )  # fmt: skip

    def _load_split(self, split: Split) -> Dataset:
        try:
            dataset = self.dataset_cls(self.root, train=split == "train")
        except Exception as err:
            raise self._explain(err) from err
        self.classes = dataset.classes
        return dataset

    def _explain(self, err: Exception) -> InputError:
        """Turn torchvision's load failure into a one-line error naming the missing or damaged file."""
        name, files = self.dataset_cls.__name__, self._files()
        missing = [file for file, _ in files if not (self.folder / file).is_file()]
        if len(missing) == len(files):
            return MissingInput(
                f"{name} not found: expected {self.folder}; {HINT}, or place {self.dataset_cls.base_folder} "
                f"(extracted from {self.dataset_cls.filename}) in {self.root}"
            )
        if missing:
            return MissingInput(
                f"{name} is incomplete: {', '.join(missing)} missing in {self.folder}; {HINT} again"
            )
        for file, md5 in files:
            path = self.folder / file
            problem = "MD5 mismatch" if not check_integrity(path, md5) else _unpickle_error(path)
            if problem:
                return InputError(
                    f"{name} file {path} is corrupt or truncated ({problem}); "
                    f"delete {self.folder} and {HINT} again"
                )
        return InputError(
            f"cannot read {name} from {self.folder} ({summarize(err, with_type=True)}); {HINT} again"
        )


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (fine labels) from ``data_dir/cifar-100-python``; same arguments and recipe as CIFAR-10."""

    dataset_cls = CIFAR100
    num_classes = 100
