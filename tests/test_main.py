"""``python -m spe_lightning``: the help lists the subcommands and the tools, each tool has its own help,
``--version``, and the console script routes the same way."""

from __future__ import annotations

import sys

import pytest

from spe_lightning import __version__
from spe_lightning.__main__ import dispatch
from spe_lightning.cli.lightning_cli import SUBCOMMANDS
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
