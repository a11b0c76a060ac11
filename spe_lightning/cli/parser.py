"""The command line's parsers, with every error as one line naming the key and its value: LightningCLI's for
the subcommands and export, jsonargparse's for the tools and scripts, and :func:`script_main`, which runs a
function as a ``python -m`` script under the one exit policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NoReturn

from jsonargparse import ArgumentParser, auto_cli
from lightning.pytorch.cli import LightningArgumentParser

from spe_lightning.cli.exit_policy import EXIT_INPUT, debug, exit_policy


def concise_parser_error(message: str) -> str:
    """jsonargparse's "does not validate against any of the Union subtypes" report, as key, value, types."""
    single = re.fullmatch(r'Parser key "([^"]+)": Expected a (.+?)\. Got value: (\S+)', message)
    if single:  # one type, not a union: a Literal's choices or a class
        literal = re.fullmatch(r"typing\.Literal\[(.*)\]", single.group(2))
        plain = re.sub(r"<class '(?:[\w]+\.)*([\w]+)'>", r"\1", single.group(2))
        choices = [v.strip().strip("'") for v in literal.group(1).split(",")] if literal else [plain]
        return f"{single.group(1)}={single.group(3)} is not allowed; expected one of: {', '.join(choices)}"
    if "Does not validate against any of the Union subtypes" not in message:
        return message
    keys = re.findall(r'Parser key "([^"]+)"', message)
    key = keys[0] + "".join(f".init_args.{inner}" for inner in keys[1:2])
    value = re.search(r"(?:Given|Got) value: (?!NestedArg)(\S+)", message)
    tail = message[message.rfind(f'Parser key "{keys[-1]}"') :]
    subtypes = re.search(r"Subtypes: \[(.*?)\] Errors", tail)
    if subtypes:
        literals = re.findall(r"Literal\[([^\]]*)\]", subtypes.group(1))
        names = [v.strip().strip("'") for group in literals for v in group.split(",")]
        names += [n.rsplit(".", 1)[-1] for n in re.findall(r"<class '([\w.]+)'>", subtypes.group(1))]
    else:
        names = [n.rsplit(".", 1)[-1] for n in re.findall(r"<class '([\w.]+)'>", tail)[:1]]
    allowed = ", ".join(dict.fromkeys("null" if name == "NoneType" else name for name in names))
    given = f"={value.group(1)}" if value else ""
    return f"{key}{given} is not allowed; expected one of: {allowed}"


class OneLineErrors:
    """Parser errors as one line on stderr (exit 2) instead of a usage dump of every option."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if self.exit_on_error and not debug():
            self.exit(EXIT_INPUT, f"error: {concise_parser_error(' '.join(message.split()))}\n")
        super().error(message, ex)  # raises: jsonargparse's internal parses and debug mode


class SPEArgumentParser(OneLineErrors, LightningArgumentParser):
    """LightningCLI's parser, one-line errors."""


class ToolArgumentParser(OneLineErrors, ArgumentParser):
    """jsonargparse's parser, one-line errors: the tools' and the scripts'."""


def script_main(function: Callable[..., Any], prog: str | None = None, args: list[str] | None = None) -> Any:
    """Run ``function`` with its arguments from the command line (``--name value``, jsonargparse) under the
    one exit policy: ``if __name__ == "__main__": script_main(main)``."""
    with exit_policy():
        return auto_cli(function, args=args, as_positional=False, parser_class=ToolArgumentParser, prog=prog)
