"""Shared LightningDataModule: loaders, seeded validation split and predict-from-files.

Subclasses only say how to read the raw train/test splits (``_load_split``) and which transforms to use;
everything a Trainer touches (``setup``, the four dataloaders) lives here so the modules behave alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from lightning.fabric.utilities.data import suggested_max_num_workers
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler, random_split
from torchvision.transforms import v2

from spe_lightning.core.errors import InputError
from spe_lightning.core.validation import check_fraction, check_int
from spe_lightning.data.image_files import ImageFileDataset
from spe_lightning.data.resumable import ResumableDataLoader

Split = Literal["train", "val", "test"]


class TransformedSubset(Dataset):
    """``(sample, target)`` pairs of ``dataset`` (optionally restricted to ``indices``) with ``transform``.

    Lets the train and validation parts of one split share the decoded data while getting different
    transforms (augmentation on train only).
    """

    def __init__(self, dataset: Dataset, transform: Callable, indices: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        self.transform = transform
        self.indices = list(range(len(dataset))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        sample, target = self.dataset[self.indices[index]]
        return self.transform(sample), target


def to_normalized_tensor(mean: Sequence[float], std: Sequence[float]) -> list[Callable]:
    """Transforms turning a PIL image (or uint8 tensor) into a normalised float tensor."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def seeded_split(n: int, fraction: float, seed: int, name: str = "val_split") -> tuple[list[int], list[int]]:
    """Indices ``(kept, held out)`` over ``range(n)``, ``round(fraction * n)`` held out, drawn with ``seed``:
    same seed, same split. ``name`` is the option the fraction came from (it names a bad one)."""
    held_out = round(fraction * n)
    if not 0 < held_out < n:
        raise InputError(
            f"{name}={fraction} puts {held_out} of {n} samples aside; choose a fraction that leaves at least "
            "one sample on each side"
        )
    generator = torch.Generator().manual_seed(seed)
    kept, held = random_split(range(n), [n - held_out, held_out], generator=generator)
    return list(kept), list(held)


class ImageDataModule(LightningDataModule, ABC):
    """Base of the image-classification datamodules.

    Args:
        batch_size: training batch size.
        eval_batch_size: batch size of the validation, test and predict loaders.
        num_workers: DataLoader worker processes (kept alive between epochs when > 0); None (default) takes
            Lightning's suggestion for the machine, the CPU cores this process may use divided by the
            processes on this node, less one for the main process. Each sample's augmentation is seeded by
            itself, so the count changes speed only, never which images a run trains on.
        val_split: fraction of the training split held out for validation with a seeded ``random_split``;
            0 validates on the test split, as the reference recipe does.
        seed: seed of the validation split.
        pin_memory: pin host memory in the loaders; None (default) pins when training on a GPU, where it lets
            the copy to the device run asynchronously.
        drop_last: drop the last partial training batch. The reference recipe keeps it (False, the
            default); torch.compile wants fixed shapes, and a partial batch costs it one more graph (with
            dynamic batch size) per run.
        predict_path: image file or folder of images to predict; ``None`` predicts the test split.

    Subclasses set ``num_classes``, ``image_size``, ``train_transform``, ``eval_transform`` and
    ``predict_transform`` (all available right after ``__init__``, so LightningCLI can link them) and
    implement ``_load_split``.

    Batches are ``(images, targets)``; predict batches from ``predict_path`` are ``(images, paths)`` with
    ``paths`` a sequence of absolute file-path strings, and ``(images, targets)`` from the test split
    otherwise.
    """

    num_classes: int
    image_size: int
    in_chans: int = 3
    mean: Sequence[float]
    std: Sequence[float]
    """Normalisation per network input channel: what an exported model's users preprocess with."""
    predict_channels: int = 3
    """Channels a predict image must have (PIL bands): 3 for RGB datasets, 1 for grayscale ones."""
    val_source: Split = "test"
    """Split that validates when ``val_split`` is 0: the test split unless a dataset has its own val split."""
    train_transform: Callable
    eval_transform: Callable
    predict_transform: Callable

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int = 100,
        num_workers: int | None = None,
        val_split: float = 0.0,
        seed: int = 42,
        pin_memory: bool | None = None,
        drop_last: bool = False,
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        # the subclass's arguments too (Lightning collects every __init__ of the chain), kept in checkpoints
        # (``datamodule_hyper_parameters``); not merged into the logger's hparams.yaml, which stays the
        # model's (what rebuilds it); TensorBoard's HParams view shows them from the CLI's config
        self.save_hyperparameters(logger=False)
        check_int("batch_size", batch_size)
        check_int("eval_batch_size", eval_batch_size)
        check_int("num_workers", num_workers, minimum=0, allow_none=True, hint=" (null: from the cores)")
        check_fraction("val_split", val_split)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.val_split = val_split
        self.seed = seed
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.predict_path = predict_path
        self.classes: list[str] | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.predict_set: Dataset | None = None
        self._sources: dict[str, Dataset] = {}
        self.train_indices: list[int] | None = None
        """The training split's indices into the train source when ``val_split`` holds some out."""

    def identity(self) -> dict[str, Any]:
        """What defines the data of an experiment: which images, how they are split, how they are shaped
        and normalised, which classes in which order, in which batches. A resumed run must have the same
        (:mod:`spe_lightning.training.identity`); loader speed settings are not part of it."""
        return {
            "datamodule": type(self).__name__,
            "source": self.source(),
            "seed": self.seed,
            "val_split": self.val_split,
            "image_size": self.image_size,
            "in_chans": self.in_chans,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "classes": list(self.classes) if self.classes else None,
            "num_classes": self.num_classes,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
        }

    def selects_on(self) -> str:
        """The split the validation loader reads, so the one ``best`` is chosen on: ``validation`` (held
        out), or ``test`` when ``val_split`` is 0 and the dataset has no validation split of its own (the
        reference code's protocol, which overstates accuracy)."""
        return "test" if not self.val_split and self.val_source == "test" else "validation"

    def memory_needed(self) -> int:
        """Bytes ``setup`` allocates for the data itself (0: images are read as they are needed)."""
        return 0

    def source(self) -> str | None:
        """Where the images come from (a data folder), if the dataset is not built in."""
        return None

    @abstractmethod
    def _load_split(self, split: Split) -> Dataset:
        """Untransformed ``(sample, target)`` dataset of a split (``"val"`` only where ``val_source`` is)."""

    def _source(self, split: Split) -> Dataset:
        if split not in self._sources:
            self._sources[split] = self._load_split(split)
        return self._sources[split]

    def split_indices(self, n: int) -> tuple[list[int], list[int]]:
        """Seeded (train, val) indices over ``range(n)`` for ``val_split``; same seed, same split."""
        return seeded_split(n, self.val_split, self.seed)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets ``stage`` needs (all of them for ``None``); repeated calls reuse them."""
        if stage in (None, "fit", "validate") and self.val_set is None:
            train = self._source("train")
            if self.val_split:
                train_idx, val_idx = self.split_indices(len(train))
                self.train_indices = train_idx
                self.train_set = TransformedSubset(train, self.train_transform, train_idx)
                self.val_set = TransformedSubset(train, self.eval_transform, val_idx)
            else:
                self.train_set = TransformedSubset(train, self.train_transform)
                self.val_set = TransformedSubset(self._source(self.val_source), self.eval_transform)
        if stage in (None, "test") and self.test_set is None:
            self.test_set = TransformedSubset(self._source("test"), self.eval_transform)
        if stage in (None, "predict") and self.predict_set is None:
            if self.predict_path is None:
                self.predict_set = TransformedSubset(self._source("test"), self.eval_transform)
            else:
                self.predict_set = ImageFileDataset(
                    self.predict_path, self.predict_transform, channels=self.predict_channels
                )

    def _eval_sampler(self, dataset: Dataset) -> Sampler | None:
        """Under DDP, this rank's share of an evaluation set, without padding.

        Lightning's default DistributedSampler pads the last batch with repeated samples so every rank gets
        the same number; the rank-synced metrics would then count those samples twice. Lightning leaves a
        DistributedSampler it finds in place, so each sample is evaluated exactly once over all ranks.
        """
        kwargs = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        return UnrepeatedDistributedSampler(dataset, shuffle=False, **kwargs) if kwargs else None

    def workers(self) -> int:
        """Worker processes per loader: ``num_workers``, or Lightning's suggestion for this node."""
        if self.num_workers is not None:
            return self.num_workers
        return suggested_max_num_workers(self.trainer.num_devices if self.trainer is not None else 1)

    def pins_memory(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def _loader(self, dataset: Dataset | None, name: str, batch_size: int, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before {name}_dataloader()")
        workers = self.workers()
        kwargs = {
            "batch_size": batch_size,
            "num_workers": workers,
            "pin_memory": self.pins_memory(),
            "persistent_workers": workers > 0,
        }
        if shuffle:  # keeps its place in the epoch in checkpoints: exact mid-epoch resume
            return ResumableDataLoader(dataset, drop_last=self.drop_last, **kwargs)
        return DataLoader(dataset, sampler=self._eval_sampler(dataset), **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, "train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, "val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, "predict", self.eval_batch_size, shuffle=False)
