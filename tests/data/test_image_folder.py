"""ImageNet-style class folders: splits, layout errors, and an image that fails to decode mid-run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.cli import QUICKSTART
from helpers.data import one_line_error, write_image_folder
from PIL import Image

from spe_lightning.__main__ import dispatch
from spe_lightning.core.errors import InputError
from spe_lightning.data import (
    ImageFolderDataModule,
)


def test_image_folder_happy_path(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", classes=("dog", "cat", "bird"))
    dm = ImageFolderDataModule(
        data_dir=str(root), image_size=16, batch_size=4, eval_batch_size=4, num_workers=0
    )
    assert (dm.num_classes, dm.classes, dm.image_size) == (3, ["bird", "cat", "dog"], 16)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (9, 9, 9)
    assert dm.test_set.dataset.root == dm.val_set.dataset.root == root.resolve() / "val"
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and set(labels.tolist()) <= {0, 1, 2}
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape == (4, 3, 16, 16) and labels.tolist() == [0, 0, 0, 1]


def test_image_folder_test_split_and_val_split(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", splits=("train", "val", "test"), count=4)
    dm = ImageFolderDataModule(data_dir=str(root), image_size=8, val_split=0.25, num_workers=0)
    dm.setup()
    assert dm.test_set.dataset.root == root.resolve() / "test"
    assert (len(dm.train_set), len(dm.val_set)) == (6, 2)
    assert dm.val_set.dataset is dm.train_set.dataset


@pytest.mark.parametrize(
    ("layout", "error", "match"),
    [
        ("nothing", FileNotFoundError, r"image folder data_dir .*imgs does not exist; data_dir needs train/"),
        ("no val", FileNotFoundError, r"val folder .*imgs/val not found; data_dir needs train/ and val/"),
        ("no classes", FileNotFoundError, r"no class sub-folders in .*imgs/train;"),
        (
            "one class",
            InputError,
            r".*imgs/train has 1 class folder \(cat\); classification needs at least 2",
        ),
        (
            "val differs",
            InputError,
            r"class folders of .*imgs/val differ from train/: missing \['dog'\], extra",
        ),
    ],
)
def test_image_folder_layout_errors(tmp_path: Path, layout: str, error: type, match: str) -> None:
    root = tmp_path / "imgs"
    if layout == "no val":
        write_image_folder(root, splits=("train",))
    elif layout == "no classes":
        (root / "train").mkdir(parents=True)
        (root / "val").mkdir()
    elif layout == "one class":
        write_image_folder(root, classes=("cat",))
    elif layout == "val differs":
        write_image_folder(root, splits=("train",))
        write_image_folder(root, classes=("cat", "cow"), splits=("val",))
    with pytest.raises(error, match=match) as excinfo:
        ImageFolderDataModule(data_dir=str(root))
    one_line_error(excinfo)


def test_image_folder_class_without_images(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs")
    for image in (root / "train" / "dog").iterdir():
        image.rename(image.with_suffix(".txt"))
    dm = ImageFolderDataModule(data_dir=str(root))
    with pytest.raises(
        FileNotFoundError, match=r".*imgs/train: Found no valid file for the classes dog"
    ) as info:
        dm.setup("fit")
    one_line_error(info)


def test_an_image_that_fails_to_decode_in_a_worker_is_named_in_one_line(tmp_path, monkeypatch, capsys):
    """A truncated JPEG passes the header check (PIL's verify reads no JPEG data), fails when decoded in a
    DataLoader worker, and still ends the run with one line naming the file, not the worker's traceback."""
    root = write_image_folder(tmp_path / "imgs")
    bad = root / "train" / "cat" / "broken.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(bad)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) * 3 // 4])  # the header is whole, the scan data cut short
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        f"--config={QUICKSTART}",
        "--data=spe_lightning.data.ImageFolderDataModule",
        f"--data.init_args.data_dir={root}",
        "--data.init_args.image_size=8",
        "--data.init_args.batch_size=16",
        "--data.init_args.num_workers=1",
        "--model.backbone_kwargs={depth: 8, block: basic}",
        "--trainer.max_epochs=1",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false",
    ]
    with pytest.raises(SystemExit) as exc:
        dispatch(args)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exc.value.code == 2 and "Traceback" not in err
    assert len(errors) == 1 and errors[0].startswith(
        f"error: cannot decode image {bad} (image file is truncated"
    )
