"""DataModules on tiny files in the real on-disk formats: loading, transforms, splits, errors, predict."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FakeCIFAR, md5, write_image_folder, write_images
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningModule, Trainer, seed_everything
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn
from torchvision.datasets import CIFAR10

from spe_lightning.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    ImageFileDataset,
    ImageFolderDataModule,
)
from spe_lightning.data.cifar import CIFAR_MEAN, CIFAR_STD
from spe_lightning.data.digits import DIGITS_MEAN, DIGITS_STD
from spe_lightning.data.resumable import (
    ResumableDataLoader,
    ResumableSampler,
    SampleKey,
    SeededSamples,
    augmentation_seeds,
)
from spe_lightning.errors import InputError


def normalized(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """HWC uint8 images -> normalised NCHW float, computed independently of torchvision."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def cifar(
    fake: FakeCIFAR, module: type[CIFAR10DataModule] = CIFAR10DataModule, **kwargs
) -> CIFAR10DataModule:
    kwargs = {"download": True, "batch_size": 16, "eval_batch_size": 5, "num_workers": 0, **kwargs}
    return module(data_dir=str(fake.root), **kwargs)


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- CIFAR ---------------------------------------------------------------------------------------------


def test_cifar10_extracts_archive_and_loads(cifar10: FakeCIFAR) -> None:
    dm = cifar(cifar10)
    assert (dm.num_classes, dm.in_chans, dm.image_size) == (10, 3, 32)  # known before setup, for CLI links
    dm.prepare_data()
    assert sorted(p.name for p in cifar10.folder.iterdir()) == sorted(
        ["batches.meta", "test_batch", *(f"data_batch_{i}" for i in range(1, 6))]
    )
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (40, 8)
    assert dm.classes == [f"class_{i}" for i in range(10)]
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    # validation is the official test split without augmentation: exactly the normalised pixels
    images, labels = next(iter(dm.val_dataloader()))
    torch.testing.assert_close(images, normalized(cifar10.test_images[:5], CIFAR_MEAN, CIFAR_STD))
    assert labels.tolist() == cifar10.test_labels[:5]
    dm.setup("test")
    assert sum(len(batch[1]) for batch in dm.test_dataloader()) == 8


def test_cifar10_train_augmentation_crops_and_flips(cifar10: FakeCIFAR) -> None:
    dm = cifar(cifar10)
    dm.prepare_data()
    dm.setup("fit")
    plain = normalized(cifar10.train_images[:1], CIFAR_MEAN, CIFAR_STD)[0]
    torch.manual_seed(0)
    views = torch.stack([dm.train_set[0][0] for _ in range(20)])
    assert views.shape == (20, 3, 32, 32)
    assert not all(torch.allclose(view, plain, atol=1e-6) for view in views)
    # every view is the image shifted by at most 4 pixels (zero padding) and possibly mirrored
    centre = views[:, :, 4:28, 4:28]
    candidates = [plain, plain.flip(-1)]
    for view in centre:
        assert any(
            torch.allclose(view, c[:, 4 + dy : 28 + dy, 4 + dx : 28 + dx], atol=1e-6)
            for c in candidates
            for dy in range(-4, 5)
            for dx in range(-4, 5)
        )


def test_cifar100_uses_fine_labels(cifar100: FakeCIFAR) -> None:
    dm = cifar(cifar100, CIFAR100DataModule)
    assert dm.num_classes == 100
    dm.prepare_data()
    dm.setup()
    assert (cifar100.root / "cifar-100-python" / "train").is_file()
    assert (len(dm.train_set), len(dm.test_set), len(dm.classes)) == (8, 8, 100)
    assert [dm.train_set[i][1] for i in range(8)] == cifar100.train_labels


def test_val_split_is_seeded_disjoint_and_unaugmented(cifar10: FakeCIFAR) -> None:
    dm = cifar(cifar10, val_split=0.25)
    dm.prepare_data()
    dm.setup("fit")
    train_idx, val_idx = dm.train_set.indices, dm.val_set.indices
    assert (len(train_idx), len(val_idx)) == (30, 10)
    assert sorted(train_idx + val_idx) == list(range(40))
    assert cifar(cifar10, val_split=0.25).split_indices(40) == (train_idx, val_idx)
    assert cifar(cifar10, val_split=0.25, seed=7).split_indices(40)[1] != val_idx
    assert dm.val_set.dataset is dm.train_set.dataset  # decoded once, shared
    expected = normalized(cifar10.train_images[val_idx[:3]], CIFAR_MEAN, CIFAR_STD)
    torch.testing.assert_close(torch.stack([dm.val_set[i][0] for i in range(3)]), expected)
    assert [dm.val_set[i][1] for i in range(3)] == [cifar10.train_labels[i] for i in val_idx[:3]]


def test_missing_cifar_says_where_and_how(tmp_path: Path) -> None:
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "nowhere"))
    dm.prepare_data()  # download is off: nothing to do, setup explains
    with pytest.raises(FileNotFoundError) as excinfo:
        dm.setup("fit")
    message = one_line_error(excinfo)
    assert str((tmp_path / "nowhere" / "cifar-10-batches-py").resolve()) in message
    assert "download: true" in message and "--data.download=true" in message


def test_failed_download_says_where_and_how(tmp_path: Path, no_network: None) -> None:
    dm = CIFAR100DataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(InputError) as excinfo:
        dm.prepare_data()
    message = one_line_error(excinfo)
    assert "URLError" in message and str(tmp_path / "cifar-100-python.tar.gz") in message
    assert "cifar-100-python/" in message


def test_truncated_archive_is_named(cifar10: FakeCIFAR) -> None:
    cifar10.archive.write_bytes(cifar10.archive.read_bytes()[:500])
    with pytest.raises(InputError) as excinfo:
        cifar(cifar10).prepare_data()
    message = one_line_error(excinfo)
    assert f"{cifar10.archive} failed its MD5 check" in message


def test_unreadable_archive_with_matching_checksum_is_named(
    cifar10: FakeCIFAR, monkeypatch: pytest.MonkeyPatch
) -> None:
    cifar10.archive.write_bytes(cifar10.archive.read_bytes()[:500])
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(cifar10.archive))
    with pytest.raises(InputError) as excinfo:
        cifar(cifar10).prepare_data()
    assert f"cannot extract {cifar10.archive}, it is corrupt or truncated" in one_line_error(excinfo)


@pytest.mark.parametrize("checksum_matches", [False, True])
def test_truncated_batch_file_is_named(
    cifar10: FakeCIFAR, monkeypatch: pytest.MonkeyPatch, checksum_matches: bool
) -> None:
    dm = cifar(cifar10, download=False)
    cifar(cifar10).prepare_data()
    batch = cifar10.folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    if checksum_matches:  # only the unpickling can tell
        files = [[name, md5(cifar10.folder / name)] for name, _ in CIFAR10.train_list]
        monkeypatch.setattr(CIFAR10, "train_list", files)
    with pytest.raises(InputError) as excinfo:
        dm.setup("fit")
    message = one_line_error(excinfo)
    assert f"{batch} is corrupt or truncated" in message
    assert ("UnpicklingError" in message or "EOFError" in message) if checksum_matches else "MD5" in message


def test_missing_batch_file_is_named(cifar10: FakeCIFAR) -> None:
    cifar(cifar10).prepare_data()
    (cifar10.folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match=r"incomplete: test_batch missing in .*cifar-10-batches-py"):
        cifar(cifar10, download=False).setup("test")


def test_loader_settings(cifar10: FakeCIFAR) -> None:
    dm = cifar(cifar10, num_workers=2, pin_memory=True)
    with pytest.raises(RuntimeError, match=r"setup\(\) must run before train_dataloader"):
        dm.train_dataloader()
    dm.prepare_data()
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert (train.batch_size, val.batch_size) == (16, 5)
    assert train.persistent_workers and train.pin_memory and train.num_workers == 2
    assert not train.drop_last and not val.drop_last
    assert isinstance(train, ResumableDataLoader) and isinstance(train.sampler, ResumableSampler)
    assert isinstance(val.sampler, torch.utils.data.SequentialSampler)


def test_default_workers_follow_the_cores_per_device(cifar10: FakeCIFAR, monkeypatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    dm = cifar(cifar10, num_workers=None, drop_last=True)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.train_dataloader().num_workers == 15  # one core left to the main process
    assert dm.train_dataloader().drop_last and not dm.val_dataloader().drop_last
    dm.trainer = Trainer(accelerator="cpu", devices=4, strategy="ddp", logger=False)  # four ranks on the node
    assert dm.workers() == 3 and dm.val_dataloader().num_workers == 3
    assert CIFAR10DataModule().num_workers is None and DigitsDataModule().num_workers == 0


def augmented_epoch(dataset, workers: int, epoch: int, skip: int = 0) -> torch.Tensor:
    loader = ResumableDataLoader(dataset, seed=3, batch_size=8, num_workers=workers)
    if skip:
        loader.load_state_dict({"seed": 3, "epoch": epoch, "batches": skip})
    loader.sampler.set_epoch(epoch)
    return torch.cat([images for images, _ in loader])


def test_augmentation_is_the_same_with_any_worker_count_and_after_a_resume(cifar10: FakeCIFAR) -> None:
    dm = cifar(cifar10)
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    main_rng = torch.get_rng_state()
    serial = augmented_epoch(dm.train_set, workers=0, epoch=1)
    assert torch.equal(torch.get_rng_state(), main_rng)  # loading drew nothing from the main process's RNG
    assert torch.equal(augmented_epoch(dm.train_set, workers=2, epoch=1), serial)
    assert torch.equal(augmented_epoch(dm.train_set, workers=2, epoch=1, skip=2), serial[16:])
    assert not torch.equal(augmented_epoch(dm.train_set, workers=0, epoch=2), serial)
    # one image, one seed: one augmentation; the seeds of an image differ between epochs
    seeded = SeededSamples(dm.train_set)
    assert torch.equal(seeded[SampleKey(0, 7)][0], seeded[SampleKey(0, 7)][0])
    crops = {seeded[SampleKey(0, seed)][0].numpy().tobytes() for seed in range(8)}
    assert len(crops) >= 4  # of 162 crop offsets x flips, 8 seeds land on a few
    assert augmentation_seeds(3, 1, 4).tolist() != augmentation_seeds(3, 2, 4).tolist()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_split": 1.0}, r"val_split must be in \[0, 1\), got 1.0"),
        ({"val_split": -0.1}, r"val_split must be in \[0, 1\)"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"eval_batch_size": -1}, "eval_batch_size must be a positive integer"),
        ({"num_workers": -1}, r"num_workers must be >= 0 or null \(from the cores\), got -1"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CIFAR10DataModule(**kwargs)


def test_val_split_too_small_for_the_data(cifar10: FakeCIFAR) -> None:
    dm = cifar(cifar10, val_split=0.001)
    dm.prepare_data()
    with pytest.raises(ValueError, match=r"val_split=0.001 puts 0 of 40 training samples in validation"):
        dm.setup("fit")


# --- ImageFolder ---------------------------------------------------------------------------------------


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
            ValueError,
            r".*imgs/train has 1 class folder \(cat\); classification needs at least 2",
        ),
        (
            "val differs",
            ValueError,
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


# --- Digits --------------------------------------------------------------------------------------------


def test_digits_shapes_and_normalisation() -> None:
    dm = DigitsDataModule()
    assert (dm.num_classes, dm.in_chans, dm.image_size, dm.batch_size) == (10, 3, 32, 64)
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (64, 3, 32, 32) and labels.dtype == torch.long
    assert torch.equal(images[:, 0], images[:, 2])  # grayscale replicated
    test = torch.cat([batch[0] for batch in dm.test_dataloader()])
    assert test.shape == (270, 3, 32, 32)
    assert abs(test.mean().item()) < 0.05 and 0.7 < test.std().item() < 1.0
    small = DigitsDataModule(image_size=16, in_chans=1)
    small.setup("fit")
    assert small.train_set[0][0].shape == (1, 16, 16)


def test_digits_constants_are_the_data_statistics() -> None:
    pixels = torch.as_tensor(load_digits().images) / 16
    assert pixels.mean().item() == pytest.approx(DIGITS_MEAN[0], abs=1e-4)
    assert pixels.std().item() == pytest.approx(DIGITS_STD[0], abs=1e-4)


def test_digits_splits_are_seeded_and_disjoint() -> None:
    def indices(dm: DigitsDataModule) -> tuple[set[int], set[int], set[int]]:
        dm.setup()
        rest = dm.train_set.dataset.indices  # train+val pool -> indices into the 1797 digits
        train = {rest[i] for i in dm.train_set.indices}
        val = {rest[i] for i in dm.val_set.indices}
        return train, val, set(dm.test_set.dataset.indices)

    train, val, test = indices(DigitsDataModule())
    assert (len(train), len(val), len(test)) == (1298, 229, 270)
    assert not (train & val or train & test or val & test) and len(train | val | test) == 1797
    assert indices(DigitsDataModule()) == (train, val, test)
    other = indices(DigitsDataModule(seed=1))
    assert other[1] != val and other[2] != test
    # val_split 0 validates on the test split, as the CIFAR recipe
    dm = DigitsDataModule(val_split=0.0)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (1527, 270)


def test_digits_train_augmentation_keeps_background() -> None:
    dm = DigitsDataModule(image_size=16, in_chans=1)
    dm.setup("fit")
    background = -DIGITS_MEAN[0] / DIGITS_STD[0]
    torch.manual_seed(0)
    views = torch.stack([dm.train_set[0][0] for _ in range(10)])
    assert views.min().item() == pytest.approx(background)  # zero padding is blank paper, not grey
    assert not all(torch.equal(v, views[0]) for v in views)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 4}, "image_size must be >= 8"),
        ({"in_chans": 2}, "in_chans must be 1 or 3, got 2"),
        ({"test_split": 0.0}, r"test_split must be in \(0, 1\)"),
    ],
)
def test_digits_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DigitsDataModule(**kwargs)


# --- Predict -------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize(("mode", "found"), [("L", 1), ("RGBA", 4)])
def test_predict_rejects_wrong_channels(cifar10: FakeCIFAR, tmp_path: Path, mode: str, found: int) -> None:
    folder = tmp_path / "to_predict"
    write_images(folder, 2)
    bad = write_images(folder / "x", 1, mode=mode)[0].rename(folder / "z_bad.png")
    dm = cifar(cifar10, predict_path=str(folder))
    with pytest.raises(ValueError) as excinfo:
        dm.setup("predict")
    assert f"image {bad} has {found} channel(s) (PIL mode {mode}), expected 3 (RGB)" in one_line_error(
        excinfo
    )


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
    with pytest.raises(ValueError, match=r"e_rgb.png has 3 channel\(s\) \(PIL mode RGB\), expected 1 \(L\)"):
        DigitsDataModule(predict_path=str(folder)).setup("predict")


def test_predict_without_path_serves_the_test_split() -> None:
    dm = DigitsDataModule(eval_batch_size=300)
    dm.setup("predict")
    images, labels = next(iter(dm.predict_dataloader()))
    assert images.shape == (270, 3, 32, 32) and labels.dtype == torch.long


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        ("missing.png", FileNotFoundError, r"predict_path .*missing.png does not exist"),
        ("empty", FileNotFoundError, r"no image files in predict folder .*empty \(allowed: .jpg"),
        ("notes.txt", ValueError, r"predict_path .*notes.txt is not an image file"),
        ("broken.png", ValueError, r"cannot read image .*broken.png"),
    ],
)
def test_predict_path_errors(tmp_path: Path, target: str, error: type, match: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(error, match=match):
        ImageFileDataset(tmp_path / target, transform=lambda image: image)


def test_palette_images_count_their_palette_channels(tmp_path: Path) -> None:
    path = write_images(tmp_path, 1)[0]
    Image.open(path).convert("P").save(path)
    dataset = ImageFileDataset(path, transform=lambda image: image)
    assert dataset[0][0].mode == "RGB"


# --- LightningCLI compatibility --------------------------------------------------------------------------


class _Model:
    def __init__(self, num_classes: int = 0, in_chans: int = 3) -> None:
        self.num_classes, self.in_chans = num_classes, in_chans


@pytest.mark.parametrize("module", [CIFAR10DataModule, CIFAR100DataModule, DigitsDataModule])
def test_cli_links_data_properties_to_the_model(module: type) -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(module, "data")
    parser.add_class_arguments(_Model, "model")
    parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
    parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")
    shared = {"data.batch_size", "data.val_split", "data.seed", "data.predict_path", "data.num_workers"}
    assert shared <= set(parser.get_defaults().keys())
    init = parser.instantiate(parser.parse_args(["--data.batch_size=8"]))
    assert init.data.batch_size == 8
    assert (init.model.num_classes, init.model.in_chans) == (module.num_classes, 3)


def test_pickled_batches_match_the_real_layout(cifar10: FakeCIFAR) -> None:
    """Guard the fixture itself: the archive holds what torchvision's reader expects."""
    cifar(cifar10).prepare_data()
    entry = pickle.loads((cifar10.folder / "data_batch_1").read_bytes())
    assert entry["data"].dtype == np.uint8 and entry["data"].shape == (8, 3072)
    assert CIFAR10(str(cifar10.root), train=True).data.shape == (40, 32, 32, 3)


class _Linear(LightningModule):
    """Smallest classifier that lets a Trainer drive the datamodule hooks."""

    def __init__(self, inputs: int, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(inputs, num_classes))

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        self.log("val_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        self.log("test_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())

    def predict_step(self, batch: tuple, batch_idx: int) -> tuple[torch.Tensor, tuple[str, ...]]:
        return self.net(batch[0]).argmax(1), batch[1]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)


def test_trainer_drives_fit_test_and_predict(tmp_path: Path) -> None:
    folder = tmp_path / "predict"
    paths = write_images(folder, 3, size=(8, 8), mode="L")
    dm = DigitsDataModule(image_size=8, in_chans=1, predict_path=str(folder))
    seed_everything(0)
    model = _Linear(8 * 8, dm.num_classes)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    # far above chance (0.1) after two epochs of a linear model: images and labels stay aligned
    assert trainer.callback_metrics["val_acc"] > 0.5
    assert trainer.test(model, datamodule=dm, verbose=False)[0]["test_acc"] > 0.5
    (predictions, names), *rest = trainer.predict(model, datamodule=dm)
    assert not rest and predictions.shape == (3,) and list(names) == [str(p) for p in paths]


def test_overfit_batches_reads_the_first_batches_in_order_every_epoch(tmp_path: Path) -> None:
    dm = DigitsDataModule(image_size=8, in_chans=1, batch_size=16)
    seen: list[torch.Tensor] = []

    class Record(_Linear):
        def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
            seen.append(batch[1])
            return super().training_step(batch, batch_idx)

    trainer = Trainer(
        accelerator="cpu", max_epochs=2, overfit_batches=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(Record(8 * 8, dm.num_classes), datamodule=dm)
    targets = torch.stack([dm.train_set[i][1] for i in range(32)])
    assert (
        len(seen) == 4
        and torch.equal(torch.cat(seen[:2]), targets)
        and torch.equal(torch.cat(seen[2:]), targets)
    )
    with pytest.raises(ValueError, match="makes its own sampler; got RandomSampler"):
        ResumableDataLoader(dm.train_set, sampler=torch.utils.data.RandomSampler(dm.train_set))


def test_an_image_that_fails_to_decode_in_a_worker_is_named_in_one_line(tmp_path, monkeypatch, capsys):
    """A truncated JPEG passes the header check (PIL's verify reads no JPEG data), fails when decoded in a
    DataLoader worker, and still ends the run with one line naming the file, not the worker's traceback."""
    from spe_lightning.cli import cli_main

    root = write_image_folder(tmp_path / "imgs")
    bad = root / "train" / "cat" / "broken.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(bad)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) * 3 // 4])  # the header is whole, the scan data cut short
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--config=" + str(Path(__file__).parents[1] / "configs" / "quickstart.yaml"),
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
        cli_main(args)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exc.value.code == 2 and "Traceback" not in err
    assert len(errors) == 1 and errors[0].startswith(
        f"error: cannot decode image {bad} (image file is truncated"
    )
