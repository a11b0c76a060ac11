"""``python -m spe_lightning completion bash``: a shell completion script for the ``spe-lightning`` command.

    python -m spe_lightning completion bash > ~/.local/share/bash-completion/completions/spe-lightning
    python -m spe_lightning completion zsh > "${fpath[1]}/_spe-lightning"

It completes the subcommands (``fit``, ``validate``, ``test``, ``predict``) with every option of the CLI
(``--model.attention``, ``--trainer.devices``, ``--ckpt_path``, ...) and the tools by name; files after
options that take a path. The script is shtab's (``pip install 'spe-lightning[completion]'``), made from the
CLI's parser as it is: jsonargparse's own ``--print_completion`` expands every class that a type hint
allows into that class's arguments, recursively, and writes 224 MB for bash.
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from spe_lightning.cli.lightning_cli import SPECLI, SUBCOMMANDS, SPETrainer, build_cli
from spe_lightning.core.errors import InputError
from spe_lightning.core.optional import import_optional
from spe_lightning.tools import tool_help

SHELLS = ("bash", "zsh", "tcsh")
"""What shtab writes scripts for."""
COMMAND = "spe-lightning"
"""The console script the completion is for: a shell completes a command, not ``python -m``."""
USAGE = f"python -m spe_lightning completion {{{','.join(SHELLS)}}}"


class _ParserBuilt(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__("parser built")
        self.parser = parser


class _ParserOnly(SPECLI):
    """The CLI up to its parser: the options of every subcommand but the Trainer method's own."""

    def parse_arguments(self, parser: Any, args: Any) -> None:
        raise _ParserBuilt(parser)


def cli_options() -> argparse.ArgumentParser:
    """The options every subcommand shares (model, data, trainer, callbacks, optimizer): LightningCLI's
    parser without subcommands, stopped before it parses anything."""
    try:
        build_cli([], run=False, cli_class=_ParserOnly)
    except _ParserBuilt as built:
        return built.parser
    raise AssertionError("LightningCLI parsed without calling parse_arguments")


def completion_parser(tools: dict[str, str], path: Any) -> argparse.ArgumentParser:
    """``spe-lightning`` as shtab reads it: each subcommand with the shared options and those of its Trainer
    method that the CLI offers (``--ckpt_path``, ``--verbose``, ...), and each tool by name. ``path`` (shtab's
    file completion) goes on ``--ckpt_path``."""
    shared = cli_options()
    top = argparse.ArgumentParser(prog=COMMAND)
    commands = top.add_subparsers()
    for name, summary in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=summary, parents=[shared], add_help=False)
        skipped = SPECLI.subcommands()[name]
        for parameter in inspect.signature(getattr(SPETrainer, name)).parameters.values():
            if parameter.name not in skipped and parameter.name != "self":
                action = sub.add_argument(f"--{parameter.name}")
                if parameter.name == "ckpt_path":
                    action.complete = path
    for name, summary in tools.items():
        commands.add_parser(name, help=summary)
    return top


def completion_script(shell: str, tools: dict[str, str]) -> str:
    """shtab's completion script for ``shell``."""
    if shell not in SHELLS:
        raise InputError(f"completion {shell!r} is not allowed; expected one of: {', '.join(SHELLS)}")
    shtab = import_optional("shtab", extra="completion", needed_by="completion needs")
    return shtab.complete(completion_parser(tools, path=shtab.FILE), shell=shell)


def main(args: list[str]) -> str:
    """``python -m spe_lightning completion {bash,zsh,tcsh}``: print the script."""
    if args[:1] in (["-h"], ["--help"]):
        print(f"usage: {USAGE}\n\n{__doc__}")
        raise SystemExit(0)
    if len(args) != 1:
        given = " ".join(args) or "nothing"
        raise InputError(f"completion takes one shell, not {given!r}; expected one of: {', '.join(SHELLS)}")
    script = completion_script(args[0], tool_help())
    print(script, end="")
    return script
