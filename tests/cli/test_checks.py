"""Bad input: a non-zero exit, one ``error:`` line naming the value and what is allowed, no traceback, and
the results of an earlier run untouched. One table, run in process through the command line: the checks
before a run (:mod:`spe_lightning.cli.checks`) and every check below them that the CLI reaches."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from helpers.cli import QUICKSTART, cli_error, run_cli, tiny_args
from helpers.data import write_image_folder
from helpers.processes import TIMEOUT, wait_for
from PIL import Image

from spe_lightning.__main__ import dispatch
from spe_lightning.data import digits
from spe_lightning.training.classifier import ImageClassifier

LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"process 4242 on elsewhere (a test holding the lock)")
open(sys.argv[2], "w").close()  # tell the test: locked
time.sleep(120)
"""

TINY = {"backbone_kwargs": {"depth": 8, "block": "basic"}}


@dataclass
class Case:
    args: list[str]
    message: str
    """Fragment of the one error line; ``{tmp}`` is the test's folder."""
    fixture: str | None = None
    subcommand: str = "fit"
    env: dict[str, str] | None = None
    code: int = 2


EARLIER = "{tmp}/runs/default/version_0"
RGB = "--data.init_args.in_chans=3"  # digits as RGB: the earlier run's model (TINY) fits them
FOLDER = ["--data=spe_lightning.data.ImageFolderDataModule", "--data.init_args.image_size=8"]


CASES = {
    "unknown backbone": Case(
        ["--model.backbone=resnet7"], "unknown backbone 'resnet7'; known backbones: cifar_resnet"
    ),
    "unknown attention": Case(
        ["--model.attention=sse"], "unknown attention 'sse'; known attentions: cbam, const_gate, coord, eca"
    ),
    "unknown pooling": Case(["--model.pool=median"], "unknown pool 'median'; known pools: avg"),
    "impossible depth": Case(
        ["--model.backbone_kwargs={depth: 9, block: basic}"],
        "depth=9 is impossible for basic blocks; valid depths",
    ),
    "unknown config key": Case(["--config={tmp}/typo.yaml"], "does not accept option 'model.atention'"),
    "wrong value type": Case(
        ["--trainer.max_epochs=ten"], "trainer.max_epochs=ten is not allowed; expected one of: int, null"
    ),
    "missing config file": Case(["--config={tmp}/nope.yaml"], "config file {tmp}/nope.yaml does not exist"),
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
        ["--data.init_args.predict_path={tmp}/rgb.png", "--ckpt_path={tmp}/gray.ckpt"],
        "image {tmp}/rgb.png is in colour, and the network takes 1 channel (grayscale)",
        subcommand="predict",
    ),
    "bad CPU kernel switch": Case(
        [],
        "SPE_LIGHTNING_CPU_KERNEL='fast' is not allowed; use one of auto, 1, 0",
        env={"SPE_LIGHTNING_CPU_KERNEL": "fast"},
    ),
    "bad fused gate switch": Case(
        [],
        "SPE_LIGHTNING_FUSED_GATE='off' is not allowed; use one of auto, 1, 0",
        env={"SPE_LIGHTNING_FUSED_GATE": "off"},
    ),
    "output folder not writable": Case(
        ["--trainer.logger.init_args.save_dir={tmp}/a_file/runs"],
        "output folder {tmp}/a_file/runs/default/version_0 cannot be written ({tmp}/a_file is a file)",
    ),
    # issue 11, case 2: evaluating `last` of a run that does not exist
    "validate last without a run": Case(
        ["--ckpt_path=last", "--trainer.logger.init_args.name=nothing"],
        "no checkpoint to validate: any run under {tmp}/runs/nothing has no checkpoints/last.ckpt",
        subcommand="validate",
    ),
    "test best without a run": Case(
        ["--ckpt_path=best", "--trainer.logger.init_args.name=nothing"],
        "no checkpoint to test: any run under {tmp}/runs/nothing has no checkpoints/last.ckpt",
        subcommand="test",
    ),
    "predict without a checkpoint": Case(
        [], "predict needs a checkpoint: --ckpt_path last or best", subcommand="predict"
    ),
    # case 3: a fresh fit must not write into a run that holds results
    "fresh fit into a run with checkpoints": Case(
        ["--trainer.logger.init_args.version=0"],
        "run {tmp}/runs/default/version_0 already holds checkpoints (checkpoints/); "
        "continue it with --ckpt_path",
    ),
    "fit from best rewinds a run": Case(["--ckpt_path=best"], "fit --ckpt_path best would rewind a run"),
    # case 4: predictions never over an existing file, the checkpoint least of all
    "predictions over an existing file": Case(
        ["--ckpt_path=last", RGB, "--prediction_writer.output_path={tmp}/notes.ckpt"],
        "prediction_writer.output_path {tmp}/notes.ckpt already exists; choose a new file",
        subcommand="predict",
    ),
    "predictions over the checkpoint": Case(
        [
            "--ckpt_path=last",
            RGB,
            "--prediction_writer.output_path={tmp}/runs/default/version_0/checkpoints/last.ckpt",
        ],
        "prediction_writer.output_path {tmp}/runs/default/version_0/checkpoints/last.ckpt already exists",
        subcommand="predict",
    ),
    # case 5: a run in use
    "run in use by another process": Case(
        ["--ckpt_path=last", RGB],
        "run {tmp}/runs/default/version_0 is in use by process",
        fixture="locked_run",
    ),
    # cases 6 and 7: image folders
    "image folder with a symlink loop": Case(
        [*FOLDER, "--data.data_dir={tmp}/loop"],
        "{tmp}/loop/train/cat/loop leads to {tmp}/loop/train, a folder this split already reads",
    ),
    "text file named .jpg": Case(
        [*FOLDER, "--data.data_dir={tmp}/text_jpg"],
        "cannot read image {tmp}/text_jpg/train/cat/notes.jpg (UnidentifiedImageError",
    ),
    "zero-byte image": Case(
        [*FOLDER, "--data.data_dir={tmp}/empty_png"], "cannot read image {tmp}/empty_png/train/dog/img_00.png"
    ),
    "truncated PNG": Case(
        [*FOLDER, "--data.data_dir={tmp}/half_png"],
        "cannot read image {tmp}/half_png/train/cat/img_01.png (OSError: Truncated File Read)",
    ),
    # case 8: a monitored metric the model does not log
    "monitor typo": Case(
        ["--checkpoint.monitor=val/acc2"],
        "ModelCheckpoint(monitor=...) 'val/acc2' is not a metric the model logs; choose one of: test/acc1",
    ),
    "plateau scheduler monitor typo": Case(
        [
            "--lr_scheduler=lightning.pytorch.cli.ReduceLROnPlateau",
            "--lr_scheduler.init_args.monitor=val/acc",
        ],
        "lr_scheduler.init_args.monitor 'val/acc' is not a metric the model logs",
    ),
    # case 9: values a library divides by, wrong types, broken config files, constructor errors
    "T_max 0": Case(
        ["--lr_scheduler.init_args.T_max=0"],
        "lr_scheduler CosineAnnealingLR(T_max=0, eta_min=0.0, last_epoch=-1) fails at epoch 1 (ZeroDivision",
    ),
    "accumulate_grad_batches 0": Case(
        ["--trainer.accumulate_grad_batches=0"],
        "trainer.accumulate_grad_batches=0 is not allowed; it must be a positive integer",
    ),
    "log_every_n_steps 0": Case(
        ["--trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0 is not allowed"
    ),
    "SE reduction 0": Case(
        ["--model.attention=se", "--model.attention_kwargs={reduction: 0}"],
        "reduction=0 is not allowed; it must be a positive integer",
    ),
    "negative learning rate": Case(
        ["--optimizer.init_args.lr=-0.1"], "optimizer SGD(lr=-0.1, momentum=0.9, dampening=0"
    ),
    "model is a number": Case(
        ["--config={tmp}/model5.yaml"], "model: 5 is not allowed; model takes a mapping"
    ),
    "empty config file": Case(["--config={tmp}/empty.yaml"], "config file {tmp}/empty.yaml is empty"),
    "config file holding a list": Case(
        ["--config={tmp}/list.yaml"], "config file {tmp}/list.yaml is a list, not a mapping"
    ),
    "config file with a YAML error": Case(
        ["--config={tmp}/broken.yaml"],
        "config file {tmp}/broken.yaml is not valid YAML at line 3, column 1: expected ',' or ']'",
    ),
    "precision 15": Case(
        ["--trainer.precision=15"], "trainer.precision=15 is not allowed; expected one of: 64, 32, 16, transf"
    ),
    "learning rate fast": Case(
        ["--optimizer.init_args.lr=fast"],
        "optimizer.init_args.lr=fast is not allowed; expected one of: float",
    ),
    "max_epochs -5": Case(
        ["--trainer.max_epochs=-5"], "`max_epochs` must be a non-negative integer or -1. You passed in -5"
    ),
    "devices 0": Case(["--trainer.devices=0"], "`Trainer(devices='0')` value is not a valid input"),
    "misspelled attention keyword": Case(
        ["--model.attention_kwargs={rd_ratio: 4}"],
        "attention 'spem' does not take rd_ratio; it takes: pool, pool_kwargs",
    ),
    "misspelled pool keyword": Case(
        ["--model.pool=maxmin", "--model.attention_kwargs={pool_kwargs: {lamb: 0.3}}"],
        "pool 'maxmin' does not take lamb; it takes: lam",
    ),
    # case 12: evaluating non-finite weights
    "validate a checkpoint with NaN weights": Case(
        ["--ckpt_path={tmp}/nan.ckpt", RGB],
        "checkpoint {tmp}/nan.ckpt holds non-finite weights (net.fc.weight); it cannot be evaluated",
        subcommand="validate",
    ),
    "checkpoint folder chosen by hand": Case(
        ["--checkpoint.dirpath={tmp}/elsewhere"], "checkpoint.dirpath='{tmp}/elsewhere' is not allowed"
    ),
}


def write_inputs(tmp: Path) -> None:
    """The bad files of the table, and an earlier run (``runs/default/version_0``) that must survive."""
    (tmp / "typo.yaml").write_text("model:\n  atention: se\n")
    (tmp / "notes.ckpt").write_text("not a checkpoint\n")
    (tmp / "a_file").write_text("")
    Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp / "rgb.png")
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
    (tmp / "model5.yaml").write_text("model: 5\n")
    (tmp / "empty.yaml").write_text("")
    (tmp / "list.yaml").write_text("- model\n- data\n")
    (tmp / "broken.yaml").write_text("model:\n  attention: [se\n")
    write_image_folder(tmp / "loop")
    (tmp / "loop" / "train" / "cat" / "loop").symlink_to("..")
    write_image_folder(tmp / "text_jpg")
    (tmp / "text_jpg" / "train" / "cat" / "notes.jpg").write_text("not an image\n")
    write_image_folder(tmp / "empty_png")
    (tmp / "empty_png" / "train" / "dog" / "img_00.png").write_bytes(b"")
    write_image_folder(tmp / "half_png")
    truncate(tmp / "half_png" / "train" / "cat" / "img_01.png")
    run = tmp / "runs" / "default" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("# the earlier run's config\n")
    (run / "events.out.tfevents.0.host.1.0").write_bytes(b"earlier logs")
    model = ImageClassifier(**TINY)  # what the base arguments build: RGB, 10 classes
    checkpoint = {"state_dict": model.state_dict(), "pytorch-lightning_version": lightning.__version__}
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")
    data = (run / "checkpoints" / "last.ckpt").read_bytes()
    (tmp / "half.ckpt").write_bytes(data[: len(data) // 2])
    gray = ImageClassifier(**TINY, in_chans=1)
    torch.save({**checkpoint, "state_dict": gray.state_dict()}, tmp / "gray.ckpt")
    with torch.no_grad():
        model.net.fc.weight[0, 0] = float("nan")
    torch.save({**checkpoint, "state_dict": model.state_dict()}, tmp / "nan.ckpt")


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
    if case.fixture == "locked_run":
        locked = tmp_path / "locked"
        holder = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, str(tmp_path / "runs" / "default" / "version_0" / ".lock"),
             str(locked)],
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        request.addfinalizer(lambda: (holder.kill(), holder.wait(timeout=TIMEOUT)))
        wait_for(locked.exists, holder, timeout=TIMEOUT)
    elif case.fixture is not None:
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
        dispatch(base + args)

    assert exc.value.code == case.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert case.message.replace("{tmp}", str(tmp_path)) in errors[0]
    assert snapshot(tmp_path / "runs") == before  # nothing written over (or next to) earlier results
    assert not (tmp_path / "payload-ran").exists()


# A run trained for real (2 epochs of the quickstart, shrunk): what a resume or an evaluation may not change.
@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory) -> Path:
    """``runs/quickstart/version_0`` of a tiny 2-epoch fit, to be copied by each test."""
    save_dir = tmp_path_factory.mktemp("earlier") / "runs"
    run_cli("fit", *tiny_args(save_dir, max_epochs=2))
    return save_dir


@dataclass
class RunCase:
    args: list[str]
    message: str
    """Fragment of the one error line; ``{run}`` is the earlier run's folder."""
    subcommand: str = "fit"
    remove: str | None = None
    """A file of the earlier run lost before the command (relative to the run folder)."""


RUN_CASES = {
    # issue 24, case 1: another validation split draws another partition
    "resume with another val_split": RunCase(
        ["--ckpt_path=last", "--data.init_args.val_split=0.2"],
        "checkpoint {run}/checkpoints/last.ckpt belongs to another experiment: it was trained with "
        "data.val_split=0.15 (this config: 0.2)",
    ),
    # case 2: another seed draws other splits (on the digits, the test split too)
    "resume with another seed": RunCase(
        ["--ckpt_path=last", "--data.init_args.seed=7"], "it was trained with data.seed=42 (this config: 7)"
    ),
    # case 3: checkpoints but no last.ckpt: damaged, not absent
    "resume a run whose last.ckpt is lost": RunCase(
        ["--ckpt_path=last"],
        "run {run} is damaged: no last.ckpt; it holds best-epoch=",
        remove="checkpoints/last.ckpt",
    ),
    "evaluate a run whose last.ckpt is lost": RunCase(
        ["--ckpt_path=best"],
        "run {run} is damaged: no last.ckpt",
        subcommand="test",
        remove="checkpoints/last.ckpt",
    ),
    # case 4: another optimizer
    "resume with another optimizer": RunCase(
        ["--ckpt_path=last", "--optimizer=torch.optim.Adam"],
        "it was trained with optimization.optimizer='torch.optim.SGD' (this config: 'torch.optim.Adam')",
    ),
    "resume with another scheduler": RunCase(
        ["--ckpt_path=last", "--lr_scheduler=torch.optim.lr_scheduler.StepLR", "--lr_scheduler.step_size=5"],
        "optimization.lr_scheduler='torch.optim.lr_scheduler.CosineAnnealingLR' (this config: "
        "'torch.optim.lr_scheduler.StepLR')",
    ),
    "resume with another attention": RunCase(
        ["--ckpt_path=last", "--model.attention=se"], "network.attention='spem' (this config: 'se')"
    ),
    "resume with another pool regulariser weight": RunCase(
        ["--ckpt_path=last", "--model.pool_alpha=0.5"], "loss.pool_alpha=0.1 (this config: 0.5)"
    ),
    "resume with another batch size": RunCase(
        ["--ckpt_path=last", "--data.init_args.batch_size=32"], "data.batch_size=64 (this config: 32)"
    ),
    "resume from a file with another image size": RunCase(
        ["--ckpt_path={run}/checkpoints/last.ckpt", "--data.init_args.image_size=12"],
        "data.image_size=8 (this config: 12)",
    ),
    "test with another attention": RunCase(
        ["--ckpt_path=last", "--model.attention=se"],
        "was trained for another network, class list or input normalisation: network.attention='spem' "
        "(this config: 'se')",
        subcommand="test",
    ),
    # case 7: an image size that cannot fit, named before any allocation
    "image size 10000": RunCase(
        ["--data.init_args.image_size=10000"], "data.image_size=10000 makes the dataset"
    ),
    "image size 1500": RunCase(
        ["--data.init_args.image_size=1500"], "data.image_size=1500 with data.batch_size=64 needs at least"
    ),
    "more workers than memory": RunCase(
        ["--data.init_args.num_workers=1000000"], "data.num_workers=1000000 needs at least"
    ),
}


@pytest.mark.parametrize("name", RUN_CASES)
def test_a_run_refuses_what_would_change_its_experiment(name, earlier_run, tmp_path, monkeypatch, capsys):
    case = RUN_CASES[name]
    monkeypatch.chdir(tmp_path)
    save_dir = tmp_path / "runs"
    shutil.copytree(earlier_run, save_dir)
    run = save_dir / "quickstart" / "version_0"
    if case.remove:
        (run / case.remove).unlink()
    before = snapshot(save_dir)
    args = [arg.replace("{run}", str(run)) for arg in case.args]

    error = cli_error(capsys, case.subcommand, *tiny_args(save_dir, max_epochs=3), *args)

    assert case.message.replace("{run}", str(run)) in error
    assert snapshot(save_dir) == before


def test_max_epochs_and_workers_may_change_on_resume(earlier_run, tmp_path, caplog):
    save_dir = tmp_path / "runs"
    shutil.copytree(earlier_run, save_dir)
    cli, _ = run_cli("fit", *tiny_args(save_dir, "--ckpt_path=last", "--data.init_args.num_workers=0",
                                       max_epochs=3))  # fmt: skip
    assert "resuming run" in caplog.text and cli.trainer.current_epoch == 3
    assert sorted(p.name for p in (save_dir / "quickstart").iterdir()) == ["version_0"]


def test_init_from_starts_a_new_run_from_the_weights(earlier_run, tmp_path):
    save_dir = tmp_path / "runs"
    shutil.copytree(earlier_run, save_dir)
    last = save_dir / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    before = snapshot(save_dir / "quickstart" / "version_0")
    weights = torch.load(last, weights_only=True)["state_dict"]["net.conv1.weight"]
    # another split, and a learning rate of 0: the new run keeps the starting convolution weights
    cli, _ = run_cli(
        "fit", *tiny_args(save_dir, f"--model.init_from={last}", "--data.init_args.val_split=0.2",
                          "--optimizer.init_args.lr=0.0", "--optimizer.init_args.weight_decay=0.0"),
    )  # fmt: skip
    new = save_dir / "quickstart" / "version_1" / "checkpoints" / "last.ckpt"
    assert torch.equal(torch.load(new, weights_only=True)["state_dict"]["net.conv1.weight"], weights)
    assert cli.trainer.current_epoch == 1  # a new run: from epoch 0, not the checkpoint's epoch 2
    assert snapshot(save_dir / "quickstart" / "version_0") == before


def digit_files(folder: Path) -> dict[str, Path]:
    """One digit of scikit-learn's set written as an 8-bit L PNG, a 16-bit I;16 PNG and a float TIFF; and
    what the old reading made of the last two: a saturated and a blank image."""
    from sklearn.datasets import load_digits

    pixels = np.round(load_digits().images[0] * 255 / 16).astype(np.uint8)
    folder.mkdir()
    files = {name: folder / f"{name}.{'tif' if name == 'float' else 'png'}"
             for name in ("8-bit", "16-bit", "float", "saturated", "blank")}  # fmt: skip
    Image.fromarray(pixels).save(files["8-bit"])
    Image.fromarray(pixels.astype(np.uint16) * 257).save(files["16-bit"])
    Image.fromarray(pixels.astype(np.float32) / 255).save(files["float"])
    Image.fromarray(np.where(pixels > 0, 255, 0).astype(np.uint8)).save(files["saturated"])
    Image.fromarray(np.zeros_like(pixels)).save(files["blank"])
    return files


def test_predict_reads_every_bit_depth_as_the_same_image(earlier_run, tmp_path):
    # issue 24, cases 5 and 6: a 16-bit PNG and a float TIFF are the 8-bit digit, not a saturated or blank one
    save_dir = tmp_path / "runs"
    shutil.copytree(earlier_run, save_dir)
    run = save_dir / "quickstart" / "version_0"
    before = {k: v for k, v in snapshot(run).items() if not k.startswith("eval")}
    files = digit_files(tmp_path / "digits")
    assert Image.open(files["16-bit"]).mode.startswith("I;16") and Image.open(files["float"]).mode == "F"
    probabilities = {}
    for name, path in files.items():
        output = tmp_path / f"{name}.csv"
        run_cli("predict", *tiny_args(save_dir, "--ckpt_path=last", f"--data.init_args.predict_path={path}",
                                      f"--prediction_writer.output_path={output}"))  # fmt: skip
        (row,) = csv.DictReader(output.open())
        probabilities[name] = np.array([float(row[f"prob_{k}"]) for k in range(10)])
    for wrong in ("saturated", "blank"):  # the network tells them apart from the digit
        assert np.abs(probabilities[wrong] - probabilities["8-bit"]).max() > 1e-3
    np.testing.assert_allclose(probabilities["16-bit"], probabilities["8-bit"], atol=1e-5)
    np.testing.assert_allclose(probabilities["float"], probabilities["8-bit"], atol=1e-5)
    assert {k: v for k, v in snapshot(run).items() if not k.startswith("eval")} == before


@pytest.mark.parametrize("subcommand", ["predict", "export"])
def test_predict_and_export_refuse_another_input_normalisation(
    subcommand, earlier_run, tmp_path, monkeypatch, capsys
):
    """The checkpoint records the normalisation it was trained with: a config whose data normalise
    otherwise (here: a release with other digits constants) would predict, or write export metadata, for
    other inputs."""
    monkeypatch.chdir(tmp_path)
    save_dir = tmp_path / "runs"
    shutil.copytree(earlier_run, save_dir)
    monkeypatch.setattr(digits, "DIGITS_MEAN", (0.5,))
    before = snapshot(save_dir)
    extra = ["--format=onnx"] if subcommand == "export" else []
    error = cli_error(capsys, subcommand, *tiny_args(save_dir), "--ckpt_path=last", *extra)
    assert "input normalisation: data.mean=[0.3053] (this config: [0.5])" in error
    assert snapshot(save_dir) == before
