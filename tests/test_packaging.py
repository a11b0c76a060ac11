"""What a new user installs: the wheel, in a fresh virtual environment, trains from outside the repository
with the configs packaged inside it."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import requires
from pathlib import Path

import pytest
from helpers.cli import REPO

from spe_lightning.cli.config_files import packaged_configs

INSTALL_TIMEOUT = 600
DISTRIBUTIONS = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn"}
"""Import names that are not their distribution's name."""
COMES_WITH_TORCH = {"triton"}
"""Imported only by the GPU kernel, installed by torch's CUDA wheels."""


def test_every_package_the_code_imports_is_declared():
    requirements = requires("spe-lightning") or []  # the installed metadata: dependencies and extras
    declared = {re.split(r"[<>=\[; ]", r, maxsplit=1)[0].lower() for r in requirements}
    imported = set()
    for path in (REPO / "spe_lightning").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported - set(sys.stdlib_module_names) - {"spe_lightning", "__future__"}}
    missing = {DISTRIBUTIONS.get(name, name) for name in third_party - COMES_WITH_TORCH} - declared
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_the_license_the_metadata_names_is_the_license_file():
    (license_field,) = re.findall(
        r"^license = \{ text = \"(\w+)\" \}$", (REPO / "pyproject.toml").read_text(), re.M
    )
    assert (REPO / "LICENSE").read_text().startswith(f"{license_field} License\n")


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
    with zipfile.ZipFile(wheel) as contents:  # the license the metadata names travels with the code
        (license_file,) = [name for name in contents.namelist() if name.endswith("/LICENSE")]
        assert contents.read(license_file) == (REPO / "LICENSE").read_bytes()
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
