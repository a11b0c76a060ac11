"""ImageNet-style folders (``train/``, ``val/``, optional ``test/``, one sub-folder per class).

Folders are read by :class:`CheckedImageFolder`: symlinked folders and files are followed, but a link that
leads to a folder the split already reads (a loop such as ``train/cat/loop -> ..``, or a second link to one
folder) is an error naming the link, never a walk through the loop or images under the wrong class. Every
image's header is checked up front (:func:`~spe_lightning.data.images.check_image_file`: PIL's verify, for
PNG every chunk's CRC, the size and the mode), so a text file named ``.jpg``, an empty file, a truncated PNG
or a decompression bomb is named before the run starts; images are read by the one rule of
:func:`~spe_lightning.data.images.read_image`, and one that still fails to decode later (a truncated JPEG)
stops the run with an error naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes
from torchvision.transforms import v2

from spe_lightning.core.errors import InputError, MissingInput
from spe_lightning.core.validation import check_int
from spe_lightning.data.base import ImageDataModule, Split, to_normalized_tensor
from spe_lightning.data.images import check_image_file, read_image

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
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, data_dir: str, image_size: int = 224, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_int("image_size", image_size)
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

    def source(self) -> str:
        return str(Path(self.data_dir).expanduser().resolve())

    @staticmethod
    def _find_dirs(root: Path) -> dict[str, Path]:
        if not root.is_dir():
            raise MissingInput(f"image folder data_dir {root} does not exist; {LAYOUT}")
        dirs = {"train": root / "train", "val": root / "val"}
        for name, path in dirs.items():
            if not path.is_dir():
                raise MissingInput(f"{name} folder {path} not found; {LAYOUT}")
        dirs["test"] = root / "test" if (root / "test").is_dir() else dirs["val"]
        return dirs

    def _find_classes(self) -> list[str]:
        classes = self._class_folders(self.dirs["train"])
        if len(classes) < 2:
            raise InputError(
                f"{self.dirs['train']} has {len(classes)} class folder ({classes[0]}); "
                "classification needs at least 2"
            )
        for name in ("val", "test"):
            other = self._class_folders(self.dirs[name])
            if other != classes:
                raise InputError(
                    f"class folders of {self.dirs[name]} differ from train/: missing "
                    f"{sorted(set(classes) - set(other))}, extra {sorted(set(other) - set(classes))}"
                )
        return classes

    @staticmethod
    def _class_folders(path: Path) -> list[str]:
        try:
            return find_classes(path)[0]
        except FileNotFoundError as err:
            raise MissingInput(f"no class sub-folders in {path}; {LAYOUT}") from err

    def _load_split(self, split: Split) -> Dataset:
        path = self.dirs[split]
        try:
            return CheckedImageFolder(path)
        except FileNotFoundError as err:
            raise MissingInput(f"{path}: {' '.join(str(err).split())}") from err


def read_rgb(path: str):
    """An image file as a 3-channel float tensor in [0, 1] (:func:`~spe_lightning.data.images.read_image`)."""
    return read_image(path, 3)


class CheckedImageFolder(ImageFolder):
    """torchvision's ``ImageFolder`` with a loop-safe walk, images verified up front, decode errors named.

    Args:
        root: the split folder, one sub-folder per class.
        verify_workers: threads that verify the images (file reads dominate, so threads overlap them).
    """

    def __init__(self, root: str | Path, verify_workers: int = 8) -> None:
        super().__init__(root, loader=read_rgb)
        with ThreadPoolExecutor(verify_workers) as pool:
            list(pool.map(check_image_file, [path for path, _ in self.samples]))  # raises the first problem

    @staticmethod
    def make_dataset(
        directory: str | Path,
        class_to_idx: dict[str, int],
        extensions: str | tuple[str, ...] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        """``(path, class index)`` of every image under each class folder, in sorted order."""
        root = Path(directory)
        suffixes = tuple(extensions or IMG_EXTENSIONS)
        seen = {root.resolve(): root} | {(root / name).resolve(): root / name for name in class_to_idx}
        valid = is_valid_file or (lambda file: file.lower().endswith(suffixes))
        samples: list[tuple[str, int]] = []
        empty = []
        for name, index in sorted(class_to_idx.items()):
            found = [(path, index) for path in _walk(root / name, seen) if valid(path)]
            samples += found
            empty += [] if found else [name]
        if empty and not allow_empty:  # torchvision's rule and message
            raise MissingInput(
                f"Found no valid file for the classes {', '.join(empty)}. "
                f"Supported extensions are: {', '.join(suffixes)}"
            )
        return samples


def _walk(folder: Path, seen: dict[Path, Path]) -> list[str]:
    """Files under ``folder``, following symlinks; a link back to a folder in ``seen`` is an error."""
    files: list[str] = []
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        if entry.is_dir():  # follows symlinks
            real = Path(entry.path).resolve()
            if real in seen:
                raise InputError(
                    f"{entry.path} leads to {seen[real]}, a folder this split already reads (a symlink loop "
                    "or a second link to one folder); remove the link"
                )
            seen[real] = Path(entry.path)
            files += _walk(Path(entry.path), seen)
        elif entry.is_file():
            files.append(entry.path)
    return files
