"""Images on disk for ``predict``: a single file or a folder of files, checked up front."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from spe_lightning.core.errors import InputError, MissingInput

_MODES = {1: "L", 3: "RGB"}


def image_channels(image: Image.Image) -> int:
    """Channels of a PIL image; a palette image counts the channels of its palette (RGB or RGBA)."""
    if image.mode == "P" and image.palette is not None:
        return len(image.palette.mode)
    return len(image.getbands())


class ImageFileDataset(Dataset):
    """``(transform(image), path)`` for an image file or the image files of a folder (sorted, not recursive).

    Every file is opened once here so that a wrong channel count (e.g. an RGBA or grayscale image where RGB
    is expected) fails before any prediction runs, naming the file; images are never silently converted
    to another channel count.
    """

    def __init__(self, path: str | Path, transform: Callable, channels: int = 3) -> None:
        if channels not in _MODES:
            raise InputError(f"channels must be one of {sorted(_MODES)}, got {channels}")
        self.transform = transform
        self.channels = channels
        self.files = self._list_files(Path(path).expanduser().resolve())
        for file in self.files:
            self._check_channels(file)

    @staticmethod
    def _list_files(path: Path) -> list[Path]:
        allowed = ", ".join(IMG_EXTENSIONS)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
            if not files:
                raise MissingInput(f"no image files in predict folder {path} (allowed: {allowed})")
            return files
        if not path.is_file():
            raise MissingInput(f"predict_path {path} does not exist; give an image file or a folder")
        if path.suffix.lower() not in IMG_EXTENSIONS:
            raise InputError(f"predict_path {path} is not an image file (allowed: {allowed})")
        return [path]

    def _check_channels(self, file: Path) -> None:
        try:
            with Image.open(file) as image:
                found, mode = image_channels(image), image.mode
        except (OSError, UnidentifiedImageError) as err:
            raise InputError(f"cannot read image {file}: {err}") from err
        if found != self.channels:
            raise InputError(
                f"image {file} has {found} channel(s) (PIL mode {mode}), expected {self.channels} "
                f"({_MODES[self.channels]}); convert it first"
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, str]:
        file = self.files[index]
        with Image.open(file) as image:
            image = image.convert(_MODES[self.channels])
        return self.transform(image), str(file)
