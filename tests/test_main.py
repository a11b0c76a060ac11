"""``python -m spe_lightning``: the help lists the subcommands and the tools, each tool has its own help,
``--version``, and the console script routes the same way."""

from __future__ import annotations

import sys

import pytest

from spe_lightning import __version__
from spe_lightning.__main__ import dispatch
from spe_lightning.cli.lightning_cli import ARGUMENT_HELP, CKPT_PATH_HELP, SUBCOMMANDS
from spe_lightning.tools import TOOLS, tool_help


def test_help_is_ours_and_whole(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/x/spe_lightning/__main__.py", "--help"])
    with pytest.raises(SystemExit):
        dispatch()
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m spe_lightning ")
    assert "Lightning Trainer command line tool" not in out
    for name, summary in SUBCOMMANDS.items():
        assert name in out
        assert summary in " ".join(out.split()), summary
    for tool, text in tool_help().items():
        assert f"python -m spe_lightning {tool} --help: {text}" in out
    with pytest.raises(SystemExit):
        dispatch(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: python -m spe_lightning [options] fit ")
    assert "rd_ratio" not in out
    assert "``reduction``" in out and "pool_kwargs: {lam: 0.25}" in out


@pytest.mark.parametrize("tool", list(TOOLS))
def test_our_subcommands_have_their_own_help(tool, capsys):
    with pytest.raises(SystemExit) as exc:
        dispatch([tool, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m spe_lightning {tool}")


def test_version(capsys):
    assert dispatch(["--version"]) == __version__
    assert capsys.readouterr().out == f"spe_lightning {__version__}\n"


@pytest.mark.parametrize("subcommand", list(SUBCOMMANDS))
def test_subcommand_help_says_what_the_run_layer_does_with_a_checkpoint(subcommand, capsys):
    with pytest.raises(SystemExit):
        dispatch([subcommand, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    ckpt_help = CKPT_PATH_HELP["fit" if subcommand == "fit" else "evaluate"]
    assert f"--ckpt_path CKPT_PATH {ckpt_help}" in out  # not Lightning's hpc/registry keywords
    assert f"--weights_only {{true,false,null}} {ARGUMENT_HELP['weights_only']}" in out
    assert "Lightning's Trainer: devices, precision, epochs, logging and callbacks:" in out  # its group title


def test_weights_only_false_is_refused_not_ignored(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        dispatch(["test", "--config", "quickstart.yaml", "--ckpt_path", "last", "--weights_only", "false"])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: weights_only=false is not allowed; ") and "(null or true)" in line
