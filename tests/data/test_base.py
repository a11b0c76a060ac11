"""The shared datamodule: loaders, workers, the seeded split, bad arguments, what the CLI links, and a
Trainer driving fit, test and predict."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.data import FakeCIFAR, cifar, write_images
from helpers.models import LinearClassifier
from jsonargparse import ArgumentParser
from lightning.pytorch import Trainer, seed_everything

from spe_lightning.core.errors import InputError
from spe_lightning.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
)
from spe_lightning.data.resumable import (
    ResumableDataLoader,
    ResumableSampler,
)


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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_split": 1.0}, r"val_split=1.0 is not allowed; it must be in \[0, 1\)$"),
        ({"val_split": -0.1}, r"val_split=-0.1 is not allowed; it must be in \[0, 1\)"),
        ({"batch_size": 0}, "batch_size=0 is not allowed; it must be a positive integer$"),
        ({"eval_batch_size": -1}, "eval_batch_size=-1 is not allowed; it must be a positive integer"),
        ({"num_workers": -1}, r"num_workers=-1 is not allowed; it must be an integer >= 0 or null"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        CIFAR10DataModule(**kwargs)


def test_val_split_too_small_for_the_data(cifar10: FakeCIFAR) -> None:
    dm = cifar(cifar10, val_split=0.001)
    dm.prepare_data()
    with pytest.raises(InputError, match=r"val_split=0.001 puts 0 of 40 samples aside"):
        dm.setup("fit")


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


def test_trainer_drives_fit_test_and_predict(tmp_path: Path) -> None:
    folder = tmp_path / "predict"
    paths = write_images(folder, 3, size=(8, 8), mode="L")
    dm = DigitsDataModule(image_size=8, in_chans=1, predict_path=str(folder))
    seed_everything(0)
    model = LinearClassifier(8 * 8, dm.num_classes)
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


def test_predict_without_path_serves_the_test_split() -> None:
    dm = DigitsDataModule(eval_batch_size=300)
    dm.setup("predict")
    images, labels = next(iter(dm.predict_dataloader()))
    assert images.shape == (270, 3, 32, 32) and labels.dtype == torch.long
