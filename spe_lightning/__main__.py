"""``python -m spe_lightning <subcommand or tool> ...``: LightningCLI's subcommands or one of the tools.

``fit``, ``validate``, ``test`` and ``predict`` go to the CLI (:mod:`spe_lightning.cli`); ``grid``,
``report``, ``export``, ``configs`` and ``summary`` to :mod:`spe_lightning.tools`. Every path ends through one
exit policy (:mod:`spe_lightning.cli.exit_policy`).
"""

from __future__ import annotations

import sys
from typing import Any

from spe_lightning import __version__
from spe_lightning.cli.exit_policy import exit_policy
from spe_lightning.cli.lightning_cli import cli_main, prepare_arguments
from spe_lightning.tools import TOOLS, run_tool, tool_help


def dispatch(args: list[str] | None = None) -> Any:
    """Route ``args`` (``sys.argv[1:]`` when None) to a tool or to the CLI; what it returns (tests use it)."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["--version"]:
        print(f"spe_lightning {__version__}")
        return __version__
    if argv and argv[0] in TOOLS:
        with exit_policy():  # config names resolved and every config file checked, as for the CLI
            return run_tool(argv[0], prepare_arguments(argv[1:]))
    return cli_main(args, tools=tool_help())


def main() -> None:
    """The ``spe-lightning`` console script and ``python -m spe_lightning``: as :func:`dispatch`, without a
    return value (a console script passes it to ``sys.exit``, which would print it and exit 1)."""
    dispatch()


if __name__ == "__main__":
    main()
