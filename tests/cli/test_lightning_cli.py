"""The command line end to end on tiny settings: every config parses, fit writes what it should, predict,
resume, schedulers from the command line, and one-line errors for bad values."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.cli import CONFIG_DIR, QUICKSTART, cli_error, run_cli, run_cli_print_config, tiny_args
from helpers.processes import run_module
from helpers.runs import scalar_steps
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from spe_lightning.__main__ import dispatch
from spe_lightning.training.classifier import ImageClassifier

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
# Experiment configs choose a datamodule; the others (the recipe, distributed settings) are partial
# configs that are composed after an experiment config.
EXPERIMENTS = [p for p in CONFIGS if "class_path" in (yaml.safe_load(p.read_text()).get("data") or {})]
PARTIALS = [p for p in CONFIGS if p not in EXPERIMENTS]


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_config_parses_and_builds_its_model(config):
    resolved = yaml.safe_load(run_cli_print_config(config))
    assert resolved["data"]["class_path"].startswith("spe_lightning.data.")
    assert resolved["trainer"]["logger"]["init_args"]["name"] != "default"  # every config names its run
    model = resolved["model"]
    num_classes = 100 if "CIFAR100" in resolved["data"]["class_path"] else 10
    net = ImageClassifier(**model, num_classes=num_classes, in_chans=1 if config == QUICKSTART else 3).net
    assert net.fc.out_features == num_classes


@pytest.mark.parametrize("config", PARTIALS, ids=lambda p: p.stem)
def test_every_partial_config_composes_after_an_experiment(config):
    experiment = CONFIG_DIR / "cifar10_resnet164_spem.yaml"
    resolved = yaml.safe_load(run_cli_print_config(experiment, config))
    assert resolved["model"]["attention"] == "spem"


def test_experiment_configs_include_the_recipe():
    resolved = yaml.safe_load(run_cli_print_config(CONFIG_DIR / "cifar10_resnet164_se_pool_maxmin025.yaml"))
    assert resolved["trainer"]["max_epochs"] == 164
    assert resolved["optimizer"]["class_path"] == "torch.optim.SGD"
    assert resolved["optimizer"]["init_args"]["lr"] == 0.1
    assert resolved["lr_scheduler"]["init_args"]["milestones"] == [81, 122]
    assert resolved["model"]["pool"] == "maxmin"
    assert resolved["model"]["attention_kwargs"] == {"pool_kwargs": {"lam": 0.25}}
    assert resolved["model"]["backbone_kwargs"] == {"depth": 164, "block": "bottleneck"}
    assert resolved["trainer"]["logger"]["init_args"]["name"] == "cifar10_resnet164_se_pool_maxmin025"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One tiny fit (1 epoch); returns (cli, stdout, run folder)."""
    save_dir = tmp_path_factory.mktemp("runs")
    cli, out = run_cli("fit", *tiny_args(save_dir))
    return cli, out, save_dir / "quickstart" / "version_0"


def test_fit_writes_checkpoints_config_and_tensorboard_events(fitted):
    cli, out, run_dir = fitted
    checkpoints = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert "last.ckpt" in checkpoints
    best = [name for name in checkpoints if name.startswith("best-epoch=000-acc1=")]
    assert len(best) == 1
    assert f"best val/acc1 = {cli.trainer.checkpoint_callback.best_model_score:.4f}" in out
    assert best[0] in out
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["attention"] == "spem"
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert hparams["num_classes"] == 10 and hparams["in_chans"] == 1  # linked from the data
    restored = ImageClassifier.load_from_checkpoint(run_dir / "checkpoints" / best[0])
    assert restored.net.conv1.in_channels == 1 and restored.net.fc.out_features == 10
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "train/loss_step",
        "train/loss_pool_step",
        "train/acc1",
        "val/acc1",
        "val/acc5",
        "val/acc1_best",
    }
    assert expected <= tags
    assert {"train/lr", "train/epoch"} <= tags and not {"lr-SGD", "epoch", "hp_metric"} & tags


def test_a_fit_reports_each_accuracy_by_how_it_was_chosen(fitted, tmp_path):
    cli, out, run_dir = fitted
    result = json.loads((run_dir / "result.json").read_text())
    # the digits hold a validation split out: best is chosen on it, then the test split scores the choice
    assert result["best_selected_on"] == "validation" and result["test_acc1_best_on_test"] is None
    assert result["val_acc1_best"] == pytest.approx(float(cli.trainer.checkpoint_callback.best_model_score))
    # the two after-fit evaluations leave the run's event file as the fit wrote it: one file, no test tags
    assert len(list(run_dir.glob("events.*"))) == 1
    assert not [tag for tag in scalar_steps(run_dir) if tag.startswith("test/")]
    tested, _ = run_cli("test", *tiny_args(run_dir.parents[1]), "--ckpt_path=best")
    assert result["test_acc1_selected"] == pytest.approx(float(tested.trainer.callback_metrics["test/acc1"]))
    assert 0 <= result["test_acc1_last"] <= 1 and result["input_shape"] == [1, 8, 8]
    assert f"test/acc1 of that checkpoint = {result['test_acc1_selected']:.4f}" in out
    # the paper's protocol: validation reads the test split, so its best epoch is best-on-test, and nothing
    # is tested again
    paper, _ = run_cli("fit", *tiny_args(tmp_path, "--data.init_args.val_split=0"))
    result = json.loads((tmp_path / "quickstart" / "version_0" / "result.json").read_text())
    assert result["best_selected_on"] == "test" and result["test_acc1_selected"] is None
    assert result["test_acc1_best_on_test"] == result["val_acc1_best"] is not None
    assert result["test_acc1_last"] == result["val_acc1"]
    assert "test/acc1" not in paper.trainer.callback_metrics


def test_predict_writes_a_csv_of_probabilities(fitted, tmp_path):
    cli, _, _ = fitted
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    output = tmp_path / "pred.csv"
    predicted, out = run_cli(
        "predict", *tiny_args(tmp_path), f"--ckpt_path={ckpt}", f"--prediction_writer.output_path={output}"
    )
    assert f"to {output}" in out
    rows = list(csv.DictReader(output.open()))
    assert len(rows) == len(predicted.datamodule.predict_set) == 270  # no predict_path: the test split
    assert list(rows[0])[:4] == ["index", "target", "pred", "pred_name"]
    for row in rows[:20]:
        probs = [float(row[f"prob_{k}"]) for k in range(10)]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert int(row["pred"]) == int(np.argmax(probs))


def test_predict_on_an_image_folder_names_the_files(fitted, tmp_path):
    cli, _, _ = fitted
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (12, 12), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    args = tiny_args(tmp_path, f"--data.init_args.predict_path={folder}")
    _, out = run_cli("predict", *args, f"--ckpt_path={cli.trainer.checkpoint_callback.best_model_path}")
    written = Path(out.split(" predictions to ")[1].split()[0])
    run = Path(cli.trainer.checkpoint_callback.best_model_path).parents[1]
    assert written.parent.parent == run / "eval" / "predict"  # default: beside the checkpoint's run
    assert not (tmp_path / "quickstart").exists()  # an evaluation never opens a run of its own
    rows = list(csv.DictReader(written.open()))
    assert [Path(row["file"]).name for row in rows] == ["0.png", "1.png", "2.png"]


def test_resume_from_last_matches_an_uninterrupted_run(tmp_path):
    straight, _ = run_cli("fit", *tiny_args(tmp_path / "a", max_epochs=2))
    run_cli("fit", *tiny_args(tmp_path / "b", max_epochs=1))
    resumed, _ = run_cli("fit", *tiny_args(tmp_path / "b", "--ckpt_path=last", max_epochs=2))
    assert resumed.trainer.current_epoch == straight.trainer.current_epoch == 2
    assert resumed.trainer.global_step == straight.trainer.global_step == 4
    # The resumed run continued in the interrupted run's folder instead of opening a new version.
    assert [p.name for p in (tmp_path / "b" / "quickstart").iterdir()] == ["version_0"]


def test_plateau_scheduler_from_the_command_line_watches_val_acc1(tmp_path):
    args = ["--lr_scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau", "--lr_scheduler.init_args.mode=max"]
    cli, _ = run_cli("fit", *tiny_args(tmp_path, *args))
    (config,) = cli.trainer.lr_scheduler_configs
    assert type(config.scheduler).__name__ == "ReduceLROnPlateau"
    assert config.monitor == "val/acc1" and config.scheduler.mode == "max"


@pytest.mark.parametrize(
    ("arg", "named"),
    [
        ("--model.foo=1", "model.foo"),
        ("--model.attention=bogus", "'bogus'"),
        ("--model.backbone_kwargs={depth: 9, block: basic}", "depth=9"),
        ("--trainer.max_epochs=many", "many"),
        ("--data.init_args.val_split=1.5", "1.5"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_value(capsys, tmp_path, arg, named):
    assert named in cli_error(capsys, "fit", *tiny_args(tmp_path), arg)


def test_unknown_key_in_a_config_file_names_the_key(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  depht: 20\n")
    assert "model.depht" in cli_error(capsys, "fit", *tiny_args(tmp_path), "--config", str(bad))


@pytest.mark.slow
def test_command_line_error_has_no_traceback(tmp_path):
    result = run_module("fit", *tiny_args(tmp_path), "--model.attention=bogus")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: unknown attention 'bogus'" in result.stderr


@pytest.mark.parametrize(
    ("attention", "kwargs", "accepted"),
    [
        ("spem", "{rd_ratio: 4}", "pool, pool_kwargs"),
        ("se", "{rd_ratio: 4}", "reduction, pool, pool_kwargs"),
        ("eca", "{reduction: 4}", "kernel_size, gamma, beta, pool, pool_kwargs"),
    ],
)
def test_unknown_attention_keywords_are_one_line_listing_the_accepted_ones(
    attention, kwargs, accepted, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        dispatch(["fit", "--config", "quickstart.yaml", "--model.attention", attention,
                  "--model.attention_kwargs", kwargs, "--trainer.max_epochs", "1"])  # fmt: skip
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"attention '{attention}' does not take" in err and f"it takes: {accepted}" in err
    assert not (tmp_path / "runs").exists()
