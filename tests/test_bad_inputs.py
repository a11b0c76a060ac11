"""Bad input: a non-zero exit, one ``error:`` line naming the value and what is allowed, no traceback, and
the results of an earlier run untouched. One table, run in-process through ``cli_main``."""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import lightning
import pytest
import torch
from PIL import Image

from spe_lightning.classifier import ImageClassifier
from spe_lightning.cli import cli_main

QUICKSTART = Path(__file__).parents[1] / "configs" / "quickstart.yaml"
TINY = {"backbone_kwargs": {"depth": 8, "block": "basic"}}


@dataclass
class Case:
    args: list[str]
    message: str
    """Fragment of the one error line; ``{tmp}`` is the test's folder."""
    fixture: str | None = None
    subcommand: str = "fit"
    env: dict[str, str] | None = None


CASES = {
    "unknown backbone": Case(
        ["--model.backbone=resnet7"], "unknown backbone 'resnet7'; known backbones: cifar_resnet"
    ),
    "unknown attention": Case(
        ["--model.attention=sse"], "unknown attention 'sse'; known attentions: cbam, eca, se"
    ),
    "unknown pooling": Case(["--model.pool=median"], "unknown pool 'median'; known pools: avg"),
    "impossible depth": Case(
        ["--model.backbone_kwargs={depth: 9, block: basic}"],
        "depth=9 is impossible for basic blocks; valid depths",
    ),
    "unknown config key": Case(["--config={tmp}/typo.yaml"], "does not accept option 'model.atention'"),
    "wrong value type": Case(["--trainer.max_epochs=ten"], 'Parser key "trainer.max_epochs"'),
    "missing config file": Case(["--config={tmp}/nope.yaml"], "File does not exist: '{tmp}/nope.yaml'"),
    "missing dataset, download off": Case(
        ["--data=spe_lightning.data.CIFAR10DataModule", "--data.data_dir={tmp}/nodata"],
        "CIFAR10 not found: expected {tmp}/nodata/cifar-10-batches-py; set download: true",
    ),
    "truncated CIFAR archive": Case(
        ["--data=spe_lightning.data.CIFAR10DataModule", "--data.data_dir={tmp}/data", "--data.download=true"],
        "cifar-10-python.tar.gz failed its MD5 check (corrupt or truncated)",
        fixture="truncated_archive",
    ),
    "truncated CIFAR batch file": Case(
        ["--data=spe_lightning.data.CIFAR10DataModule", "--data.data_dir={tmp}/data"],
        "cifar-10-batches-py/data_batch_1 is corrupt or truncated",
        fixture="truncated_batch",
    ),
    "image folder with one class": Case(
        ["--data=spe_lightning.data.ImageFolderDataModule", "--data.data_dir={tmp}/one_class"],
        "has 1 class folder (cat); classification needs at least 2",
    ),
    "image folder without images": Case(
        ["--data=spe_lightning.data.ImageFolderDataModule", "--data.data_dir={tmp}/no_images"],
        "Found no valid file for the classes cat, dog",
    ),
    "checkpoint that is not a checkpoint": Case(
        ["--ckpt_path={tmp}/notes.ckpt"],
        "checkpoint {tmp}/notes.ckpt is truncated or not a PyTorch checkpoint",
    ),
    "truncated checkpoint": Case(
        ["--ckpt_path={tmp}/half.ckpt"], "checkpoint {tmp}/half.ckpt is truncated or not a PyTorch checkpoint"
    ),
    "checkpoint of another model": Case(
        ["--ckpt_path=last"],  # the earlier run was RGB; the quickstart digits are grayscale
        "different model (shape checkpoint vs model: net.conv1.weight [16, 3, 3, 3] vs [16, 1, 3, 3])",
    ),
    "checkpoint that runs code": Case(
        ["--ckpt_path={tmp}/evil.ckpt"],
        "checkpoint {tmp}/evil.ckpt refused: loading it would import posix.system",
    ),
    "missing data when resuming": Case(
        ["--ckpt_path=last", "--data=spe_lightning.data.CIFAR10DataModule", "--data.data_dir={tmp}/nodata"],
        "CIFAR10 not found",
    ),
    "predict image with wrong channels": Case(
        ["--data.init_args.predict_path={tmp}/rgb.png"],
        "image {tmp}/rgb.png has 3 channel(s) (PIL mode RGB), expected 1 (L)",
        subcommand="predict",
    ),
    "bad CPU kernel switch": Case(
        [],
        "SPE_LIGHTNING_CPU_KERNEL='fast' is not allowed; use one of auto, 1, 0",
        env={"SPE_LIGHTNING_CPU_KERNEL": "fast"},
    ),
    "output folder not writable": Case(
        ["--trainer.logger.init_args.save_dir={tmp}/a_file/runs"],
        "output folder {tmp}/a_file/runs/default/version_0 cannot be written ({tmp}/a_file is a file)",
    ),
}


def write_inputs(tmp: Path) -> None:
    """The bad files of the table, and an earlier run (``runs/default/version_0``) that must survive."""
    (tmp / "typo.yaml").write_text("model:\n  atention: se\n")
    (tmp / "notes.ckpt").write_text("not a checkpoint\n")
    (tmp / "a_file").write_text("")
    Image.new("RGB", (8, 8)).save(tmp / "rgb.png")
    for split in ("train", "val"):
        (tmp / "one_class" / split / "cat").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp / "one_class" / split / "cat" / "a.png")
        for name in ("cat", "dog"):
            (tmp / "no_images" / split / name).mkdir(parents=True)
    payload = tmp / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {payload}",))

    torch.save({"state_dict": {}, "extra": Payload()}, tmp / "evil.ckpt")
    run = tmp / "runs" / "default" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("# the earlier run's config\n")
    (run / "events.out.tfevents.0.host.1.0").write_bytes(b"earlier logs")
    model = ImageClassifier(**TINY)  # what the base arguments build: RGB, 10 classes
    checkpoint = {"state_dict": model.state_dict(), "pytorch-lightning_version": lightning.__version__}
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")
    data = (run / "checkpoints" / "last.ckpt").read_bytes()
    (tmp / "half.ckpt").write_bytes(data[: len(data) // 2])


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_exits_with_one_line_and_leaves_results_alone(name, tmp_path, monkeypatch, capsys, request):
    case = CASES[name]
    monkeypatch.chdir(tmp_path)
    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, value)
    write_inputs(tmp_path)
    if case.fixture is not None:
        cifar = request.getfixturevalue("cifar10")  # a valid fake CIFAR-10 archive in tmp/data
        if case.fixture == "truncated_archive":
            truncate(cifar.archive)
        else:
            with tarfile.open(cifar.archive) as tar:
                tar.extractall(cifar.root, filter="data")
            truncate(cifar.folder / "data_batch_1")
    before = snapshot(tmp_path / "runs")
    base = [
        case.subcommand,
        "--config",
        str(QUICKSTART),
        "--model.backbone_kwargs={depth: 8, block: basic}",
        "--data.init_args.image_size=8",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger.init_args.name=default",
    ]
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in case.args]

    with pytest.raises(SystemExit) as exc:
        cli_main(base + args)

    assert exc.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert case.message.replace("{tmp}", str(tmp_path)) in errors[0]
    assert snapshot(tmp_path / "runs") == before  # nothing written over (or next to) earlier results
    assert not (tmp_path / "payload-ran").exists()
