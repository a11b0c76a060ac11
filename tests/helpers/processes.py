"""Commands in subprocesses, each with a timeout: a hung child fails its test instead of the suite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
TIMEOUT = 300
"""Seconds a test's subprocess may take (a tiny fit takes seconds; a loaded machine several times that)."""


def child_env(**extra: str) -> dict[str, str]:
    """This environment, with the tests folder importable (test callbacks named by class path)."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_module(
    *args: str, cwd: Path = REPO, timeout: float = TIMEOUT, **env: str
) -> subprocess.CompletedProcess:
    """``python -m spe_lightning <args>`` to its end (``python <args>`` when the first is ``-c``/``-m``)."""
    own = args[:1] in (("-c",), ("-m",))
    command = [sys.executable, *args] if own else [sys.executable, "-m", "spe_lightning", *args]
    return subprocess.run(
        command, cwd=cwd, env=child_env(**env), capture_output=True, text=True, timeout=timeout
    )


def spawn(args: list[str], cwd: Path = REPO, **env: str) -> subprocess.Popen:
    """``python -m spe_lightning <args>`` started in the background (stderr kept for the failure message)."""
    return subprocess.Popen(
        [sys.executable, "-m", "spe_lightning", *args],
        cwd=cwd,
        env=child_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``condition`` until it holds; fail if the process ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(
                f"run ended (status {proc.returncode}) before the test could stop it: {proc.stderr.read()}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the run")
        time.sleep(0.02)
