"""CIFAR-10/100 from tiny archives in the real on-disk format: extraction, loading, augmentation, the
held-out split, and one-line errors naming missing, truncated or corrupt files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.data import FakeCIFAR, cifar, md5, normalized, one_line_error
from torchvision.datasets import CIFAR10

from spe_lightning.core.errors import InputError
from spe_lightning.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
)
from spe_lightning.data.cifar import CIFAR_MEAN, CIFAR_STD


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
    # best is chosen on what the val loader reads: the held-out split, or the test split at val_split 0
    assert (dm.selects_on(), cifar(cifar10).selects_on()) == ("validation", "test")


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


def test_pickled_batches_match_the_real_layout(cifar10: FakeCIFAR) -> None:
    """Guard the fixture itself: the archive holds what torchvision's reader expects."""
    cifar(cifar10).prepare_data()
    entry = pickle.loads((cifar10.folder / "data_batch_1").read_bytes())
    assert entry["data"].dtype == np.uint8 and entry["data"].shape == (8, 3072)
    assert CIFAR10(str(cifar10.root), train=True).data.shape == (40, 32, 32, 3)
