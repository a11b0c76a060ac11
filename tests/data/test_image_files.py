"""Images on disk for predict: a file or a folder, every file read up front by the one rule, errors that
name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.data import FakeCIFAR, cifar, normalized, write_images
from PIL import Image
from sklearn.datasets import load_digits

from spe_lightning.core.errors import InputError
from spe_lightning.data import (
    DigitsDataModule,
    ImageFileDataset,
)
from spe_lightning.data.cifar import CIFAR_MEAN, CIFAR_STD
from spe_lightning.data.digits import DIGITS_MEAN, DIGITS_STD


def test_predict_folder_of_rgb_images(cifar10: FakeCIFAR, tmp_path: Path) -> None:
    folder = tmp_path / "to_predict"
    paths = write_images(folder, 3, size=(32, 32)) + write_images(folder / "big", 1, size=(48, 40))
    (folder / "notes.txt").write_text("ignored")
    dm = cifar(cifar10, predict_path=str(folder), download=False)
    dm.setup("predict")  # the CIFAR files are not needed to predict files
    images, names = next(iter(dm.predict_dataloader()))
    assert images.shape == (3, 3, 32, 32) and list(names) == [str(p) for p in paths[:3]]
    pixels = np.stack([np.asarray(Image.open(p)) for p in paths[:3]])
    torch.testing.assert_close(images, normalized(pixels, CIFAR_MEAN, CIFAR_STD))
    single = ImageFileDataset(paths[3], dm.predict_transform)
    assert single[0][0].shape == (3, 32, 32) and single[0][1] == str(paths[3])


def test_predict_maps_every_file_to_the_networks_channels_by_the_rule(cifar10: FakeCIFAR, tmp_path: Path):
    """A grayscale file for an RGB network is replicated; an RGBA one is composited over black."""
    folder = tmp_path / "to_predict"
    (gray,) = write_images(folder, 1, mode="L")
    (rgba,) = write_images(folder / "x", 1, mode="RGBA")
    rgba = rgba.rename(folder / "z_rgba.png")
    dm = cifar(cifar10, predict_path=str(folder))
    dm.setup("predict")
    images, names = next(iter(dm.predict_dataloader()))
    assert [Path(name).name for name in names] == [gray.name, rgba.name]
    replicated = torch.from_numpy(np.asarray(Image.open(gray))).float().div(255).expand(3, -1, -1)
    torch.testing.assert_close(images[0], dm.predict_transform(replicated))
    pixels = torch.from_numpy(np.asarray(Image.open(rgba))).float().div(255).permute(2, 0, 1)
    torch.testing.assert_close(images[1], dm.predict_transform(pixels[:3] * pixels[3:]))


def test_predict_digits_from_grayscale_files(tmp_path: Path) -> None:
    dm = DigitsDataModule(image_size=16, eval_batch_size=4)
    dm.setup("test")
    folder = tmp_path / "digits"
    folder.mkdir()
    raw = dm.test_set.dataset.dataset.tensors[0][dm.test_set.dataset.indices[:4]]  # [0, 1] at 16x16
    originals = load_digits().images[dm.test_set.dataset.indices[:4]]
    for i, digit in enumerate(originals):
        Image.fromarray((digit * 255 / 16).round().astype(np.uint8)).save(folder / f"d{i}.png")
    Image.fromarray(np.zeros((30, 20), dtype=np.uint8)).save(folder / "d9_blank.bmp")
    dm = DigitsDataModule(image_size=16, eval_batch_size=4, predict_path=str(folder))
    dm.setup("predict")
    images, names = next(iter(dm.predict_dataloader()))
    assert images.shape == (4, 3, 16, 16) and [Path(n).name for n in names] == [f"d{i}.png" for i in range(4)]
    expected = ((raw - DIGITS_MEAN[0]) / DIGITS_STD[0]).expand(-1, 3, -1, -1)
    torch.testing.assert_close(images, expected, atol=0.02, rtol=0)  # same resize; PNG rounds to 1/255
    assert dm.predict_set[4][0].shape == (3, 16, 16)
    write_images(folder / "rgb", 1)[0].rename(folder / "e_rgb.png")
    with pytest.raises(InputError, match=r"e_rgb.png is in colour, and the network takes 1 channel"):
        DigitsDataModule(predict_path=str(folder)).setup("predict")


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        ("missing.png", FileNotFoundError, r"predict_path .*missing.png does not exist"),
        ("empty", FileNotFoundError, r"no image files in predict folder .*empty \(allowed: .jpg"),
        ("notes.txt", InputError, r"predict_path .*notes.txt is not an image file"),
        ("broken.png", InputError, r"cannot read image .*broken.png"),
    ],
)
def test_predict_path_errors(tmp_path: Path, target: str, error: type, match: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(error, match=match):
        ImageFileDataset(tmp_path / target, transform=lambda image: image)


def test_palette_images_are_read_through_their_palette(tmp_path: Path) -> None:
    path = write_images(tmp_path, 1)[0]
    Image.open(path).convert("P").save(path)
    dataset = ImageFileDataset(path, transform=lambda image: image)
    expected = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1) / 255
    torch.testing.assert_close(dataset[0][0], expected.float())
