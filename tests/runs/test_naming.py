"""The names runs get from their model, when their config names none."""

from __future__ import annotations

import pytest
from helpers.cli import run_cli, tiny_args

from spe_lightning.runs.naming import model_run_name


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
