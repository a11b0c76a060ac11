"""ImageNet-style folders (``train/``, ``val/``, optional ``test/``, one sub-folder per class)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes
from torchvision.transforms import v2

from spe_lightning.data.base import ImageDataModule, Split, to_normalized_tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT = "data_dir needs train/ and val/ (optional test/), each with one sub-folder of images per class"


class ImageFolderDataModule(ImageDataModule):
    """Image classification from class folders, with ImageNet augmentation and normalisation.

    Args:
        data_dir: folder with ``train/`` and ``val/`` (and optionally ``test/``); ``val/`` and ``test/`` must
            have the same class folders as ``train/``. Without ``test/`` the test split is ``val/``.
        image_size: training crop size; evaluation resizes to ``image_size / 0.875`` and centre-crops.
        **kwargs: the shared loader/split arguments of :class:`ImageDataModule`. With ``val_split`` > 0
            validation is carved from ``train/`` and ``val/`` serves only as the test split (if no ``test/``).

    ``classes`` (sorted class-folder names, as torchvision's ImageFolder) and ``num_classes`` are read from
    ``train/`` in ``__init__``, so a missing or badly laid out folder fails at once.
    """

    val_source = "val"

    def __init__(self, data_dir: str, image_size: int = 224, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size}")
        self.data_dir = data_dir
        self.image_size = image_size
        self.dirs = self._find_dirs(Path(data_dir).expanduser().resolve())
        self.classes = self._find_classes()
        normalize = to_normalized_tensor(IMAGENET_MEAN, IMAGENET_STD)
        self.train_transform = v2.Compose(
            [v2.RandomResizedCrop(image_size), v2.RandomHorizontalFlip(), *normalize]
        )
        self.eval_transform = v2.Compose(
            [v2.Resize(int(image_size / 0.875)), v2.CenterCrop(image_size), *normalize]
        )
        self.predict_transform = self.eval_transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @staticmethod
    def _find_dirs(root: Path) -> dict[str, Path]:
        if not root.is_dir():
            raise FileNotFoundError(f"image folder data_dir {root} does not exist; {LAYOUT}")
        dirs = {"train": root / "train", "val": root / "val"}
        for name, path in dirs.items():
            if not path.is_dir():
                raise FileNotFoundError(f"{name} folder {path} not found; {LAYOUT}")
        dirs["test"] = root / "test" if (root / "test").is_dir() else dirs["val"]
        return dirs

    def _find_classes(self) -> list[str]:
        classes = self._class_folders(self.dirs["train"])
        if len(classes) < 2:
            raise ValueError(
                f"{self.dirs['train']} has {len(classes)} class folder ({classes[0]}); "
                "classification needs at least 2"
            )
        for name in ("val", "test"):
            other = self._class_folders(self.dirs[name])
            if other != classes:
                raise ValueError(
                    f"class folders of {self.dirs[name]} differ from train/: missing "
                    f"{sorted(set(classes) - set(other))}, extra {sorted(set(other) - set(classes))}"
                )
        return classes

    @staticmethod
    def _class_folders(path: Path) -> list[str]:
        try:
            return find_classes(path)[0]
        except FileNotFoundError as err:
            raise FileNotFoundError(f"no class sub-folders in {path}; {LAYOUT}") from err

    def _load_split(self, split: Split) -> Dataset:
        path = self.dirs[split]
        try:
            return ImageFolder(path)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{path}: {' '.join(str(err).split())}") from err
