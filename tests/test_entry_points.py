"""Every command we ship speaks one error language: bad input is one ``error:`` line that names the bad value,
exit 2, no traceback, nothing written. The commands are discovered (modules with a ``__main__`` block, the
console scripts, the subcommands and tools), so that a new one without a bad-input case fails here."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest
from helpers.processes import TIMEOUT, run_module

import spe_lightning
from spe_lightning.cli.lightning_cli import SUBCOMMANDS
from spe_lightning.tools import TOOLS

PACKAGE = Path(spe_lightning.__file__).parent


def main_modules() -> set[str]:
    """Modules with a top-level ``if __name__ == "__main__":`` block: what ``python -m`` runs."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
                found.add(".".join(parts[:-1] if parts[-1] == "__main__" else parts))
    return found


def console_scripts() -> dict[str, str]:
    """The installed console scripts (pyproject's ``[project.scripts]``): name -> ``module:function``."""
    points = distribution("spe_lightning").entry_points
    return {point.name: point.value for point in points if point.group == "console_scripts"}


BAD_INPUT: dict[str, list[tuple[list[str], str]]] = {
    # each entry point: (arguments, a fragment of the one error line that names the bad value)
    "spe_lightning": [
        (["fit", "--config", "quickstart.yaml", "--model.attention", "sse"], "unknown attention 'sse'"),
        (["validate", "--config", "quickstart.yaml", "--ckpt_path", "nope.ckpt"], "nope.ckpt does not exist"),
        (["test", "--config", "quickstart.yaml", "--ckpt_path", "nope.ckpt"], "nope.ckpt does not exist"),
        (["predict", "--config", "quickstart.yaml", "--ckpt_path", "nope.ckpt"], "nope.ckpt does not exist"),
        (["grid", "--config", "grids/digits_smoke.yaml", "--seeds", "[-1]"], "-1"),
        (["report", "/nonexistent"], "/nonexistent does not exist"),
        (["export", "--ckpt_path", "nope.ckpt"], "required"),
        (["configs", "copy", "nope"], "no packaged config 'nope'"),
        (["summary", "--attentions", "[]"], "attentions=[] is not allowed"),
        (["summary", "--depth", "9"], "depth=9 is impossible"),
        (["completion", "fish"], "completion 'fish' is not allowed"),
        (["frobnicate"], "'frobnicate'"),
    ],
    "spe_lightning.summary": [(["--depth", "9"], "depth=9 is impossible")],
    "spe_lightning.benchmarks.busy_machine": [(["--loads", "[sprint]"], "loads ['sprint'] are not allowed")],
    "spe_lightning.benchmarks.gpu_check": [(["--attentions", "sse"], "unknown attention 'sse'")],
    "spe_lightning.benchmarks.lightning_overhead": [(["--epochs", "0"], "epochs=0 is not allowed")],
    "spe_lightning.benchmarks.loader": [(["--workers", "[-1]"], "workers=-1 is not allowed")],
    "spe_lightning.benchmarks.throughput": [(["--precisions", "[fp13]"], "precision 'fp13' is not allowed")],
    "spe_lightning.benchmarks.train_step": [(["--attentions", "[sse]"], "unknown attention 'sse'")],
}
CASES = [(module, args, fragment) for module, cases in BAD_INPUT.items() for args, fragment in cases]


def test_every_entry_point_has_a_bad_input_case():
    assert set(BAD_INPUT) == main_modules()
    assert {target.partition(":")[0] for target in console_scripts().values()} <= {
        f"{module}.__main__" if module == "spe_lightning" else module for module in BAD_INPUT
    }
    first_words = {case[1][0] for case in CASES if case[0] == "spe_lightning"}
    assert set(SUBCOMMANDS) | set(TOOLS) <= first_words


@pytest.mark.slow
@pytest.mark.parametrize(("module", "args", "fragment"), CASES, ids=[" ".join([c[0], *c[1]]) for c in CASES])
def test_bad_input_is_one_error_line_and_exit_2(module, args, fragment, tmp_path):
    done = run_module("-m", module, *args, cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(errors) == 1 and fragment in errors[0], done.stderr
    assert list(tmp_path.iterdir()) == []  # found before anything was written


@pytest.mark.slow
def test_the_console_script_speaks_the_same_language(tmp_path):
    (script,) = console_scripts()
    done = subprocess.run(
        [Path(sys.executable).parent / script, "summary", "--depth", "9"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: depth=9 is impossible"), done.stderr


@pytest.mark.slow
def test_jsonargparse_debug_shows_the_traceback(tmp_path):
    done = run_module("summary", "--depth", "9", cwd=tmp_path, JSONARGPARSE_DEBUG="true")
    assert done.returncode != 0 and "Traceback" in done.stderr and "depth=9" in done.stderr
