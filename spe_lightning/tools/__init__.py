"""Tools beside LightningCLI's subcommands, each ``python -m spe_lightning <tool>`` with its own ``--help``.

Lightning keeps such tools outside LightningCLI too: :mod:`spe_lightning.__main__` routes the first word of
the command line here or to the CLI. Every tool ends through the same exit policy as ``fit``
(:mod:`spe_lightning.cli.exit_policy`).
"""

from __future__ import annotations

import importlib
from typing import Any

TOOLS = {
    "grid": ("spe_lightning.tools.grid", "attention x pooling x seed grids, locally or on SLURM"),
    "report": ("spe_lightning.tools.report", "tables and figures of a grid's runs"),
    "export": ("spe_lightning.tools.export", "a checkpoint to ONNX, torch.export or TorchScript, verified"),
    "configs": ("spe_lightning.tools.configs", "list the packaged configs, or copy one out to edit"),
    "summary": ("spe_lightning.tools.summary", "parameters and FLOPs of a backbone with each attention"),
    "completion": ("spe_lightning.tools.completion", "a bash, zsh or tcsh completion script"),
}
"""Tool name -> (its module, whose ``main(args)`` runs it; its one-line help)."""


def tool_help() -> dict[str, str]:
    """Tool name -> its one-line help, for the main ``--help``."""
    return {name: text for name, (_, text) in TOOLS.items()}


def run_tool(name: str, args: list[str]) -> Any:
    """Run tool ``name`` on ``args`` (imported only when asked for: each brings its own libraries)."""
    module, _ = TOOLS[name]
    return importlib.import_module(module).main(args)
