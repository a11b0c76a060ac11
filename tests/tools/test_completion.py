"""``python -m spe_lightning completion``: a small script that completes the subcommands, every option of the
CLI and the tools, checked by sourcing it in bash and asking it to complete."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from spe_lightning.__main__ import dispatch
from spe_lightning.cli.lightning_cli import SUBCOMMANDS
from spe_lightning.tools import TOOLS

pytest.importorskip("shtab", reason="shtab is not installed: pip install 'spe-lightning[completion]'")

ASK = """
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
_shtab_spe_lightning spe-lightning "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
printf '%s\\n' "${COMPREPLY[@]}"
"""
"""Bash's side of a completion: the words typed so far, then what the script offers for the last one."""


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "spe-lightning.bash"
    path.write_text(dispatch(["completion", "bash"]))
    return path


def offered(script: Path, *words: str) -> list[str]:
    if shutil.which("bash") is None:
        pytest.skip("no bash on this machine to source the script in")
    command = ["bash", "-c", ASK, "ask", str(script), "spe-lightning", *words]
    done = subprocess.run(command, capture_output=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().split()


def test_the_script_is_small_and_completes_subcommands_tools_options_and_paths(bash_script, tmp_path, capsys):
    assert bash_script.stat().st_size < 100_000  # jsonargparse's own: 224 MB for bash
    assert set(offered(bash_script, "")) == set(SUBCOMMANDS) | set(TOOLS)
    assert offered(bash_script, "gr") == ["grid"]
    assert offered(bash_script, "fit", "--model.att") == ["--model.attention", "--model.attention_kwargs"]
    assert offered(bash_script, "test", "--ckp") == ["--ckpt_path"]
    ckpt = tmp_path / "best.ckpt"
    ckpt.touch()
    assert offered(bash_script, "validate", "--ckpt_path", str(tmp_path / "be")) == [str(ckpt)]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        dispatch(["fit", "--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    options = set(re.findall(r"\[(--[\w.]+)", usage))
    assert len(options) > 100 and options <= set(offered(bash_script, "fit", "--"))  # every option of fit


@pytest.mark.parametrize("args", [[], ["fish"], ["bash", "zsh"]])
def test_anything_but_one_known_shell_is_one_error_line(args, capsys):
    with pytest.raises(SystemExit) as exc:
        dispatch(["completion", *args])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: completion ") and "bash, zsh, tcsh" in line
