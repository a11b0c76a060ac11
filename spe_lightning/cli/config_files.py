"""The configs that ship inside the package, and how a ``--config`` name finds them.

The repository's top-level ``configs/`` is where they are edited; the package holds the same folder
(``spe_lightning/configs``), so an installed wheel has every config the README names. A ``--config`` path
that exists is used as it is; one that does not (``quickstart.yaml``, or ``configs/quickstart.yaml`` outside
the repository) is looked up among the packaged configs (``python -m spe_lightning configs`` lists them).
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

PACKAGED = Path(str(files("spe_lightning") / "configs"))
PREFIX = "configs/"
"""README commands name configs from the repository root; the packaged folder is that ``configs/``."""


def packaged_configs() -> list[str]:
    """Every packaged config, by its name relative to the packaged folder (``grids/digits_smoke.yaml``)."""
    return sorted(str(path.relative_to(PACKAGED)) for path in PACKAGED.rglob("*.yaml"))


def packaged_path(name: str) -> Path | None:
    """The packaged file ``name`` (with or without ``configs/``) names, or None."""
    candidate = PACKAGED / name.removeprefix(PREFIX)
    inside = PACKAGED.resolve() in candidate.resolve().parents
    return candidate if inside and candidate.is_file() else None


def resolve_config(name: str) -> str:
    """``name`` if that file exists, else the packaged config of that name, else ``name`` (to be reported)."""
    if Path(name).exists():
        return name
    packaged = packaged_path(name)
    return str(packaged) if packaged is not None else name


def config_args(args: list[str]) -> Iterator[tuple[int, str, str]]:
    """(index, prefix, file) of every config file on a command line: ``--config FILE`` and
    ``--config=FILE`` (prefix ``--config=``, so that ``args[index] == prefix + file``)."""
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            yield i + 1, "", args[i + 1]
        elif arg.startswith("--config="):
            yield i, "--config=", arg.removeprefix("--config=")


def resolve_config_args(args: list[str]) -> list[str]:
    """The command line with every ``--config`` value resolved by :func:`resolve_config`."""
    resolved = list(args)
    for i, prefix, name in config_args(args):
        resolved[i] = prefix + resolve_config(name)
    return resolved
