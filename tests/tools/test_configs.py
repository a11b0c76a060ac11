"""``python -m spe_lightning configs``: the packaged configs listed with what they train, copied out with
the configs they include, never written over."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spe_lightning.__main__ import dispatch
from spe_lightning.cli.config_files import PACKAGED, packaged_configs
from spe_lightning.core.errors import InputError
from spe_lightning.tools import configs
from spe_lightning.tools.configs import copy_config


def test_configs_copy_brings_the_included_files_and_never_overwrites(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    copied = dispatch(["configs", "copy", "cifar10_resnet164_spem.yaml"])
    assert copied == [Path("configs/cifar10_resnet164_spem.yaml"), Path("configs/cifar_recipe.yaml")]
    assert copied[0].read_text() == (PACKAGED / "cifar10_resnet164_spem.yaml").read_text()
    grid, _ = copy_config("grids/digits_smoke.yaml", "mine/")
    assert grid == [Path("mine/digits_smoke.yaml"), Path("quickstart.yaml")]  # base: [../quickstart.yaml]
    edited = tmp_path / "configs" / "cifar_recipe.yaml"
    edited.write_text(edited.read_text() + "# my edit\n")
    with pytest.raises(SystemExit) as exit:
        dispatch(["configs", "copy", "cifar10_resnet164_spem.yaml"])
    assert exit.value.code == 2
    assert "configs/cifar_recipe.yaml already exists" in capsys.readouterr().err
    assert edited.read_text().endswith("# my edit\n")
    assert dispatch(["configs"]) == packaged_configs()
    assert re.search(r"^  quickstart.yaml +Offline quickstart", capsys.readouterr().out, re.M)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["copy", "nope.yaml"], "no packaged config 'nope.yaml'; packaged configs: cifar100_"),
        (["copy", "../pyproject.toml"], "no packaged config '../pyproject.toml'"),
        (["remove", "x"], "configs 'remove x' is not allowed; use: configs [list] | configs copy"),
    ],
)
def test_configs_tool_rejects_bad_input(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=re.escape(message)):
        configs.main(args)
    assert list(tmp_path.iterdir()) == []


def test_a_repeated_copy_says_the_files_are_there_and_copies_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dispatch(["configs", "copy", "quickstart.yaml"])
    assert capsys.readouterr().out.startswith("copied configs/quickstart.yaml")
    again = dispatch(["configs", "copy", "quickstart.yaml"])
    out = capsys.readouterr().out
    assert (
        "copied" not in out and "already there, identical (left as they are): configs/quickstart.yaml" in out
    )
    assert again == [Path("configs/quickstart.yaml")]


def test_the_listing_says_what_each_config_trains_in_whole_sentences(capsys):
    dispatch(["configs"])
    lines = [line for line in capsys.readouterr().out.splitlines()[1:] if line.strip()]
    assert len(lines) == len(packaged_configs())
    for line in lines:
        described = line.split(maxsplit=1)[1]
        assert described.endswith("."), line
