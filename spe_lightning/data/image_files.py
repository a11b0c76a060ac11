"""Images on disk for ``predict``: a single file or a folder of files, every one read and checked up front."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from spe_lightning.core.errors import InputError, MissingInput
from spe_lightning.data.images import CHANNELS, read_image

READ_WORKERS = 8
"""Threads that read the files up front (file reads dominate, so threads overlap them)."""


class ImageFileDataset(Dataset):
    """``(transform(image), path)`` for an image file or the image files of a folder (sorted, not recursive).

    Every file is read once here by the project's one rule (:func:`~spe_lightning.data.images.read_image`:
    any PIL mode and bit depth to [0, 1], grayscale replicated for a colour network, colour refused for a
    grayscale one unless it is gray), so a file that cannot be read faithfully fails before any prediction
    is written, naming the file.
    """

    def __init__(self, path: str | Path, transform: Callable, channels: int = 3) -> None:
        if channels not in CHANNELS:
            raise InputError(f"channels={channels!r} is not allowed; images are read with 1 or 3 channels")
        self.transform = transform
        self.channels = channels
        self.files = self._list_files(Path(path).expanduser().resolve())
        with ThreadPoolExecutor(READ_WORKERS) as pool:
            list(pool.map(self._read, self.files))  # the first error, if any, is raised here

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

    def _read(self, file: Path) -> Any:
        return read_image(file, self.channels)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, str]:
        file = self.files[index]
        return self.transform(self._read(file)), str(file)
