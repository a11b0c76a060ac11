"""One exit policy for every command: errors by origin (the user's input: 2; a failure while working or a
bug: 1, with the debug switch), one line on stderr, never a traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from helpers.cli import tiny_args
from helpers.processes import TIMEOUT

from spe_lightning.__main__ import dispatch
from spe_lightning.cli.exit_policy import TRACEBACK_HINT, exit_policy
from spe_lightning.core.errors import InputError, RunFailure


def ended(capsys: pytest.CaptureFixture, raised: BaseException) -> tuple[int, str]:
    """Exit code and stderr of a command that raised ``raised``."""
    with pytest.raises(SystemExit) as exc, exit_policy():
        raise raised
    return exc.value.code, capsys.readouterr().err


def test_each_kind_of_ending_has_its_code_and_one_line(capsys):
    assert ended(capsys, InputError("batch_size=0 is not allowed")) == (
        2,
        "error: batch_size=0 is not allowed\n",
    )
    assert ended(capsys, RunFailure("a run could not go on")) == (1, "error: a run could not go on\n")
    code, err = ended(capsys, KeyError("step"))
    assert code == 1 and err == f"error: KeyError: 'step' ({TRACEBACK_HINT})\n"
    code, err = ended(capsys, ValueError("a value deep inside a library\nwith a second line"))
    assert code == 1 and err == f"error: ValueError: a value deep inside a library ({TRACEBACK_HINT})\n"


def test_a_full_disk_anywhere_else_is_one_line_that_says_what_is_kept(capsys):
    """TensorBoard's writer thread, say, reports ENOSPC without a file name."""
    code, err = ended(capsys, OSError(errno.ENOSPC, "No space left on device"))
    assert code == 1
    assert err == (
        "error: no space left on the device; checkpoints already written are intact (each is replaced "
        "atomically): free space, then continue with --ckpt_path last\n"
    )


def test_the_debug_switch_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("JSONARGPARSE_DEBUG", "true")
    with pytest.raises(KeyError), exit_policy():
        raise KeyError("step")


def test_a_bug_in_a_constructor_is_exit_1_not_bad_input(tmp_path, capsys, monkeypatch):
    """Errors by origin, not by type: a TypeError or LookupError raised by our own code while the config's
    classes are built is a failure of ours (exit 1 with the debug hint), never blamed on the user's input."""

    def broken(*args, **kwargs):
        raise TypeError("create_backbone() got an unexpected keyword argument 'x'")

    monkeypatch.setattr("spe_lightning.training.classifier.create_backbone", broken)
    with pytest.raises(SystemExit) as exc:
        dispatch(["fit", *tiny_args(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and "Traceback" not in err
    message = "create_backbone() got an unexpected keyword argument 'x'"
    assert err.strip().splitlines()[-1] == f"error: TypeError: {message} ({TRACEBACK_HINT})"
    assert not (tmp_path / "quickstart").exists()


def test_an_input_error_from_a_datamodule_constructor_is_bad_input(tmp_path, capsys):
    """jsonargparse wraps errors of subclass arguments: the InputError inside is still found, exit 2."""
    with pytest.raises(SystemExit) as exc:
        dispatch(["fit", *tiny_args(tmp_path), "--data.init_args.batch_size=0"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.strip().splitlines()[-1] == "error: batch_size=0 is not allowed; it must be a positive integer"


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [["configs"], ["grid", "--config=grids/phenomenon_cifar10.yaml", "--dry_run=true"]]
)
def test_a_reader_that_left_stops_the_command_quietly(tmp_path, command):
    """``... | head -1`` once head has gone: exit 141 (SIGPIPE), no error line for the closed pipe, whether
    the output is a few lines (written at exit) or many (written as it goes)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader already left
    try:
        done = subprocess.run(
            [sys.executable, "-m", "spe_lightning", *command],
            cwd=tmp_path, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == ""
