"""The run layer: where runs live, what ``last`` and ``best`` resolve to, locks, and nothing written over."""

from __future__ import annotations

import ast
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import run_cli, tiny_args
from test_fault_tolerance import (
    BATCHES_PER_EPOCH,
    assert_same_state,
    checkpoints,
    fit_args,
    read_rows,
    run,
    spawn,
    wait_for,
)
from torch.utils._python_dispatch import TorchDispatchMode

import spe_lightning
from spe_lightning.callbacks.fault_tolerance import FiniteLossGuard, NonFiniteLossError
from spe_lightning.classifier import ImageClassifier
from spe_lightning.cli import cli_main
from spe_lightning.runs import model_run_name

PACKAGE = Path(spe_lightning.__file__).parent
FRAMEWORKS = ("lightning", "torch")


def scalar_steps(folder: Path) -> dict[str, list[int]]:
    """Every scalar tag's steps as TensorBoard reads the folder (purged events dropped, as it does)."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


# lr 1.0 makes validation accuracy fall after epoch 1: epochs 2 and 3 do not improve the monitored metric
NO_IMPROVEMENT = ("--optimizer.init_args.lr=1.0", "--last_checkpoint.every_n_train_steps=0")
EPOCHS = 4


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("reference")
    cli = run(fit_args(root / "runs", root / "batches.jsonl", *NO_IMPROVEMENT, epochs=EPOCHS))
    return cli, checkpoints(root / "runs").parent


def test_sigkill_after_an_epoch_that_did_not_improve_resumes_from_that_epoch_end(tmp_path, reference):
    ref, ref_folder = reference
    val = scalar_steps(ref_folder)
    accuracy = EventAccumulator(str(ref_folder))
    accuracy.Reload()
    acc = [event.value for event in accuracy.Scalars("val/acc1")]
    assert acc[2] <= max(acc[:2]), f"precondition: epoch 2 must not improve val/acc1 ({acc})"

    save_dir = tmp_path / "runs"
    record = tmp_path / "killed.jsonl"
    last = checkpoints(save_dir) / "last.ckpt"
    proc = spawn(fit_args(save_dir, record, *NO_IMPROVEMENT, delay=0.3, epochs=EPOCHS))
    epoch_2_end = 3 * BATCHES_PER_EPOCH

    def in_epoch_3() -> bool:
        rows = read_rows(record) if record.exists() else []
        return bool(rows) and rows[-1]["step"] >= epoch_2_end + 2

    wait_for(in_epoch_3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == epoch_2_end  # the last epoch end, not the last improvement
    best = [path.name for path in checkpoints(save_dir).glob("best-*.ckpt")]
    assert len(best) == 1 and best[0].startswith("best-epoch=001-")
    resumed = run(
        fit_args(save_dir, tmp_path / "resumed.jsonl", *NO_IMPROVEMENT, "--ckpt_path=last", epochs=EPOCHS)
    )
    assert resumed.trainer.ckpt_path == str(last)
    assert_same_state(resumed, ref)
    steps = scalar_steps(checkpoints(save_dir).parent)
    # Lightning adds an `epoch` scalar (written `train/epoch`) to every log call, so it repeats a step where
    # train and val epoch metrics are both logged (in the uninterrupted run too); no other tag may
    duplicated = {tag: s for tag, s in steps.items() if len(s) != len(set(s)) and tag != "train/epoch"}
    assert not duplicated, f"duplicated steps after the resume: {duplicated}"
    assert steps == val  # nothing repeated and nothing lost: every tag has the uninterrupted run's steps


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    save_dir = tmp_path_factory.mktemp("runs")
    cli, _ = run_cli("fit", *tiny_args(save_dir, max_epochs=2))
    return cli, save_dir, save_dir / "quickstart" / "version_0"


def test_evaluations_go_beside_the_checkpoint_and_fit_last_still_continues_the_fit_run(fitted):
    fit, save_dir, folder = fitted
    fitted_acc1 = float(fit.trainer.callback_metrics["val/acc1"])
    validated, _ = run_cli("validate", *tiny_args(save_dir), "--ckpt_path=last")
    assert float(validated.trainer.callback_metrics["val/acc1"]) == fitted_acc1  # the fitted model's
    run_cli("test", *tiny_args(save_dir), "--ckpt_path=best")
    _, out = run_cli("predict", *tiny_args(save_dir), "--ckpt_path=last")
    assert f"to {folder / 'eval' / 'predict' / 'version_0' / 'predictions.csv'}" in out
    assert sorted(p.name for p in (folder / "eval").iterdir()) == ["predict", "test", "validate"]
    assert [p.name for p in (save_dir / "quickstart").iterdir()] == ["version_0"]  # no new run

    resumed, _ = run_cli("fit", *tiny_args(save_dir, "--ckpt_path=last", max_epochs=3))
    assert resumed.trainer.ckpt_path == str(folder / "checkpoints" / "last.ckpt")
    assert resumed.trainer.global_step == 3 * 2 and Path(resumed.trainer.log_dir) == folder
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 2  # the config the run started with is kept ...
    assert yaml.safe_load((folder / "config.step4.yaml").read_text())["trainer"]["max_epochs"] == 3  # ... too


def test_fit_last_takes_the_newest_run_with_a_checkpoint(tmp_path):
    run_cli("fit", *tiny_args(tmp_path))
    (tmp_path / "quickstart" / "version_1").mkdir()  # a run that died before its first checkpoint
    resumed, _ = run_cli("fit", *tiny_args(tmp_path, "--ckpt_path=last", max_epochs=2))
    assert Path(resumed.trainer.log_dir) == tmp_path / "quickstart" / "version_0"
    assert resumed.trainer.global_step == 4


def test_fit_last_without_a_checkpoint_starts_a_fresh_run_and_says_so(tmp_path, caplog):
    cli, _ = run_cli("fit", *tiny_args(tmp_path, "--ckpt_path=last"))
    folder = tmp_path / "quickstart" / "version_0"
    assert cli.trainer.ckpt_path is None and Path(cli.trainer.log_dir) == folder
    notices = [r.getMessage() for r in caplog.records if "no run under" in r.getMessage()]
    root = tmp_path / "quickstart"
    assert notices == [f"no run under {root} has checkpoints/last.ckpt yet: starting a fresh run in {folder}"]


def test_fit_from_a_best_file_starts_a_new_run_and_leaves_its_run_alone(fitted, tmp_path):
    _, _, folder = fitted
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    best = next((folder / "checkpoints").glob("best-*.ckpt"))
    forked, _ = run_cli("fit", *tiny_args(tmp_path, f"--ckpt_path={best}", max_epochs=6))
    assert Path(forked.trainer.log_dir) == tmp_path / "quickstart" / "version_0"
    assert (tmp_path / "quickstart" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p in before} == before


def test_a_second_process_on_a_running_run_fails_at_once_naming_the_holder(tmp_path, capsys):
    save_dir = tmp_path / "runs"
    run(fit_args(save_dir, tmp_path / "first.jsonl", epochs=1))
    record = tmp_path / "second.jsonl"
    proc = spawn(fit_args(save_dir, record, "--ckpt_path=last", delay=0.5, epochs=3))
    try:
        wait_for(record.exists, proc)
        start = time.monotonic()
        with pytest.raises(SystemExit) as exc:
            cli_main(fit_args(save_dir, tmp_path / "third.jsonl", "--ckpt_path=last", epochs=3))
        assert exc.value.code == 2 and time.monotonic() - start < 60
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        folder = checkpoints(save_dir).parent
        assert errors == [
            f"error: run {folder} is in use by process {proc.pid} on {os.uname().nodename}; "
            "wait for it to finish or stop it first"
        ]
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert not (tmp_path / "third.jsonl").exists()  # the second process trained nothing


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path):
    run_cli("fit", *tiny_args(tmp_path))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock = tmp_path / "quickstart" / "version_0" / ".lock"
    lock.write_text(f"process {dead.stdout.strip()} on {os.uname().nodename}\n")  # its flock died with it
    resumed, _ = run_cli("fit", *tiny_args(tmp_path, "--ckpt_path=last", max_epochs=2))
    assert resumed.trainer.global_step == 4


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint_and_says_so(tmp_path, capsys, monkeypatch):
    run_cli("fit", *tiny_args(tmp_path))
    last = tmp_path / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    real_save = torch.save

    def disk_full(obj, file, *args, **kwargs):
        name = Path(getattr(file, "name", "")).name
        # SafeCheckpointIO's temporary file for last.ckpt (whether a best file is saved first depends on
        # whether the epoch improved val/acc1)
        if name.startswith(".last.ckpt.") and name.endswith(".tmp"):
            file.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(SystemExit) as exc:
        cli_main(["fit", *tiny_args(tmp_path, "--ckpt_path=last", max_epochs=2)])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith(f"error: could not write checkpoint {last}: no space left on the device of ")
    assert errors[0].endswith("the previous last.ckpt is intact and nothing else was changed")
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_pretrained_weights_load_on_a_fresh_fit_only(tmp_path):
    """ResNet-18 from a local weights file: loaded by the fit, not needed to resume, evaluate or reload."""
    from conftest import write_image_folder
    from torchvision.models import resnet18

    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18(num_classes=1000).state_dict(), weights)
    data = write_image_folder(tmp_path / "images")
    args = [
        "--model.backbone=resnet18",
        f"--model.backbone_kwargs={{weights: {weights}}}",
        "--model.attention=se",
        "--data=spe_lightning.data.ImageFolderDataModule",
        f"--data.init_args.data_dir={data}",
        "--data.init_args.image_size=32",
        "--data.init_args.batch_size=2",
        "--optimizer.init_args.lr=0.0",
    ]
    fit, _ = run_cli("fit", *tiny_args(tmp_path / "runs", *args))
    loaded = torch.load(weights, weights_only=True)["layer1.0.conv1.weight"]
    assert torch.equal(fit.model.net.layer1[0].conv1.weight, loaded)  # lr 0: still the pretrained weights
    weights.unlink()  # a compute node without the file (or without network for a torchvision name)
    last = tmp_path / "runs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    resumed, _ = run_cli("fit", *tiny_args(tmp_path / "runs", *args, "--ckpt_path=last", max_epochs=2))
    assert resumed.trainer.global_step == 4
    run_cli("validate", *tiny_args(tmp_path / "runs", *args, "--ckpt_path=last"))
    assert ImageClassifier.load_from_checkpoint(last).net.fc.out_features == 2


class CountSyncs(TorchDispatchMode):
    """Counts host syncs: ``bool(tensor)`` and ``tensor.item()`` dispatch ``aten._local_scalar_dense``."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.syncs += func.__name__.startswith("_local_scalar_dense")
        return func(*args, **(kwargs or {}))


class FakeStrategy:
    """Stands for DDP: ``reduce_boolean_decision(any)`` says what the other ranks found."""

    def __init__(self, others_broken: bool) -> None:
        self.others_broken, self.calls = others_broken, 0

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.calls += 1
        return decision or self.others_broken


class FakeTrainer:
    def __init__(self, strategy: FakeStrategy) -> None:
        self.strategy, self.global_step, self.current_epoch, self.callbacks = strategy, 7, 0, []


@pytest.mark.parametrize("others_broken", [False, True])
def test_the_non_finite_check_before_a_save_is_one_stacked_check_and_one_collective_decision(others_broken):
    model = ImageClassifier(backbone_kwargs={"depth": 164, "block": "bottleneck"})  # 1,322 float tensors
    strategy = FakeStrategy(others_broken)
    counter = CountSyncs()
    with counter:
        try:
            FiniteLossGuard().on_save_checkpoint(FakeTrainer(strategy), model, {})
            raised = None
        except NonFiniteLossError as err:
            raised = str(err)
    assert counter.syncs == 1 and strategy.calls == 1  # before: one sync per tensor, no collective
    if others_broken:  # finite here, broken on another rank: this rank stops too, instead of waiting
        assert raised is not None and "non-finite on another rank, found at step 7" in raised
    else:
        assert raised is None


def test_no_private_lightning_or_torch_name_is_used_in_the_package():
    """No ``_``-prefixed module or name imported from lightning/torch, no foreign ``_`` attribute used,
    and no ``_`` method of a Lightning base class overridden."""
    own, used, imports = set(), {}, []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "").startswith("register_"):
                own.update(arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                "lightning",
                "torch",
            ):
                parts = [*node.module.split("."), *(alias.name for alias in node.names)]
                imports += [f"{path.name}: from {node.module}" for part in parts if part.startswith("_")]
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                used.setdefault(node.attr, f"{path.name}:{node.lineno}")
    foreign = {name: where for name, where in used.items() if name not in own}
    assert not imports and not foreign, (imports, foreign)
    import spe_lightning.cli  # noqa: F401  (every module with Lightning subclasses)

    overridden = [
        f"{cls.__name__}.{name}"
        for cls in _subclasses(lightning.pytorch.Callback) + _subclasses(lightning.pytorch.cli.LightningCLI)
        if cls.__module__.startswith("spe_lightning")
        for name in vars(cls)
        if name.startswith("_")
        and not name.startswith("__")
        and any(name in vars(base) for base in cls.__mro__[1:] if base.__module__.startswith("lightning"))
    ]
    assert not overridden


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def test_a_full_disk_anywhere_else_is_one_line_that_says_what_is_kept(capsys):
    """TensorBoard's writer thread, say, reports ENOSPC without a file name."""
    from spe_lightning.errors import one_line_errors

    with pytest.raises(SystemExit) as exc, one_line_errors():
        raise OSError(errno.ENOSPC, "No space left on device")
    assert exc.value.code == 1
    assert capsys.readouterr().err == (
        "error: no space left on the device; checkpoints already written are intact (each is replaced "
        "atomically): free space, then continue with --ckpt_path last\n"
    )


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (
            {"backbone": "cifar_resnet", "attention": "spem", "backbone_kwargs": {"depth": 164}},
            "cifar_resnet164-spem-learned",
        ),
        (
            {"backbone": "cifar_resnet", "attention": "se", "pool": "maxmin@0.25"},
            "cifar_resnet164-se-maxmin@0.25",
        ),
        ({"backbone": "resnet50", "attention": "eca"}, "resnet50-eca-avg"),
        (
            {"backbone": "cifar_resnet", "attention": None, "backbone_kwargs": {"depth": 20}},
            "cifar_resnet20-none",
        ),
    ],
)
def test_a_run_is_named_after_what_ran(model, name):
    assert model_run_name(model) == name


def test_a_config_that_names_no_run_is_named_after_its_model(tmp_path):
    for given in ("null", "lightning_logs"):
        run_cli("fit", *tiny_args(tmp_path, f"--trainer.logger.init_args.name={given}"))
    named = tmp_path / "cifar_resnet8-spem-learned"
    assert sorted(p.name for p in named.iterdir()) == ["version_0", "version_1"]
    run_cli("fit", *tiny_args(tmp_path, "--trainer.logger.init_args.name=mine"))  # a named run keeps its name
    assert (tmp_path / "mine" / "version_0" / "checkpoints" / "last.ckpt").is_file()
