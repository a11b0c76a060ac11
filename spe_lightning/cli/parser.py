"""The command line's parser: LightningCLI's, with every error as one line naming the key and its value."""

from __future__ import annotations

import re
from typing import NoReturn

from lightning.pytorch.cli import LightningArgumentParser

from spe_lightning.cli.exit_policy import EXIT_INPUT, debug


def concise_parser_error(message: str) -> str:
    """jsonargparse's "does not validate against any of the Union subtypes" report, as key, value, types."""
    single = re.fullmatch(r'Parser key "([^"]+)": Expected a (.+?)\. Got value: (\S+)', message)
    if single:  # one type, not a union: a Literal's choices or a class
        literal = re.fullmatch(r"typing\.Literal\[(.*)\]", single.group(2))
        choices = (
            [v.strip().strip("'") for v in literal.group(1).split(",")] if literal else [single.group(2)]
        )
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


class SPEArgumentParser(LightningArgumentParser):
    """Parser errors as one line on stderr (exit 2) instead of a usage dump of every option."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if self.exit_on_error and not debug():
            self.exit(EXIT_INPUT, f"error: {concise_parser_error(' '.join(message.split()))}\n")
        super().error(message, ex)  # raises: jsonargparse's internal parses and debug mode
