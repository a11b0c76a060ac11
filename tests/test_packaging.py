"""What a new user installs: the wheel, in a fresh virtual environment, trains from outside the repository
with the configs packaged inside it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers.cli import REPO

from spe_lightning.cli.config_files import packaged_configs

INSTALL_TIMEOUT = 600


def test_every_config_is_packaged_from_the_top_level_folder():
    edited = sorted(str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").rglob("*.yaml"))
    assert packaged_configs() == edited
    assert len(edited) > 20


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_trains_from_outside_the_repository(tmp_path):
    """pip wheel -> a fresh venv -> the packaged quickstart for one epoch, the summary and a config copy,
    from a folder that is not the repository.

    The venv gets its dependencies (torch, Lightning, ...) from the environment running the tests, whether
    that is the system interpreter or a virtual environment itself: a ``.pth`` file adds that environment's
    site-packages after the venv's own, where the wheel is installed.
    """
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, REPO],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    (wheel,) = wheels.glob("spe_lightning-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=INSTALL_TIMEOUT)
    python, script = venv / "bin" / "python", venv / "bin" / "spe-lightning"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=INSTALL_TIMEOUT,
    ).stdout.strip()  # fmt: skip
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "outer_environment.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    user = tmp_path / "user"
    user.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*command: str | Path) -> str:
        done = subprocess.run(
            command, cwd=user, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout + done.stderr

    where = run(python, "-c", "import spe_lightning; print(spe_lightning.__file__)")
    assert str(venv) in where and str(REPO) not in where
    out = run(
        script, "fit", "--config", "configs/quickstart.yaml", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    assert "best val/acc1 =" in out
    assert (user / "runs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    summary = run(python, "-m", "spe_lightning", "summary", "--depth", "20", "--block", "basic")
    assert re.search(r"^spem\s+default\s+[\d,]+", summary, re.M)
    assert run(python, "-m", "spe_lightning.summary", "--depth", "20", "--block", "basic") == summary
    run(python, "-m", "spe_lightning", "configs", "copy", "quickstart.yaml")
    copied = user / "configs" / "quickstart.yaml"
    assert copied.read_text() == (REPO / "configs" / "quickstart.yaml").read_text()
