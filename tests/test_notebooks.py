"""The notebooks run top to bottom on a freshly trained tiny run and write their figures."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from helpers.runs import fit_tiny_run
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.slow  # a Jupyter kernel per notebook


def execute(name: str) -> nbformat.NotebookNode:
    """Run a notebook in its own folder (as Jupyter does); a failing cell raises CellExecutionError."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    return notebook


def inline_images(notebook: nbformat.NotebookNode) -> int:
    outputs = [out for cell in notebook.cells for out in cell.get("outputs", [])]
    return sum("image/png" in out.get("data", {}) for out in outputs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("logs")
    return [fit_tiny_run(root), fit_tiny_run(root, attention="se", pool="learned", epochs=1)]


def test_pooling_weights_notebook_writes_its_figures(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("SPE_RUN_DIR", str(runs[0]))
    monkeypatch.setenv("SPE_FIG_DIR", str(tmp_path))
    notebook = execute("pooling_weights.ipynb")
    figures = (
        "lam_over_steps",
        "p_norm_over_steps",
        "lam_grad_over_steps",
        "lam_vs_depth",
        "training_curves",
    )
    for name in figures:
        assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert inline_images(notebook) == len(figures)


def test_compare_runs_notebook_writes_its_figures(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("SPE_RUN_DIRS", os.pathsep.join(str(run) for run in runs))
    monkeypatch.setenv("SPE_FIG_DIR", str(tmp_path))
    notebook = execute("compare_runs.ipynb")
    for name in ("compare_curves.png", "compare_final_lam.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    assert inline_images(notebook) == 2
    table = next(out for out in notebook.cells[2].outputs if "text/markdown" in out.get("data", {}))
    rows = table["data"]["text/markdown"].splitlines()[2:]  # the report's rows, one per run
    assert len(rows) == 2
    cells = [[cell.strip() for cell in row.split("|")[1:7]] for row in rows]  # run, dataset .. pool
    assert [[c[0], c[2], c[4], c[5]] for c in cells] == [
        ["spem/version_0", "cifar_resnet", "spem", "learned"],  # spem's default pool, resolved
        ["se/version_0", "cifar_resnet", "se", "learned"],
    ]
