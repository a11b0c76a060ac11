"""The configs that ship inside the package, and how a ``--config`` name finds them.

The repository's top-level ``configs/`` is where they are edited; the package holds the same folder
(``spe_lightning/configs``), so an installed wheel has every config the README names. A ``--config`` path
that exists is used as it is; one that does not (``quickstart.yaml``, or ``configs/quickstart.yaml`` outside
the repository) is looked up among the packaged configs.

    python -m spe_lightning configs                         # list them
    python -m spe_lightning configs copy quickstart.yaml    # to configs/quickstart.yaml, to edit
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import yaml

from spe_lightning.errors import InputError

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


def describe(path: Path) -> str:
    """A config's first comment line: what it trains."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def included(path: Path) -> list[str]:
    """The files a config includes (``config:``) or a grid builds on (``base:``), relative to it."""
    content = yaml.safe_load(path.read_text()) or {}
    names = [content.get(key) for key in ("config", "base")]
    flat = [n for name in names for n in (name if isinstance(name, list) else [name]) if n]
    return [str(name) for name in flat if not Path(str(name)).is_absolute()]


def copy_config(name: str, dest: str | None = None) -> list[Path]:
    """Copy packaged config ``name``, and the configs it includes, for editing; never overwrites.

    ``dest`` is a file or a folder (default ``configs/``, so the copy keeps the packaged layout and the
    README's ``--config configs/...`` commands use it); included files keep their place relative to it.
    """
    source = packaged_path(name)
    if source is None:
        raise InputError(f"no packaged config {name!r}; packaged configs: {', '.join(packaged_configs())}")
    dest = dest if dest is not None else str(Path(PREFIX) / source.relative_to(PACKAGED).parent) + "/"
    target = Path(dest) / source.name if dest.endswith("/") or Path(dest).is_dir() else Path(dest)
    pairs, pending = [], [(source, target)]
    while pending:
        src, dst = pending.pop()
        pairs.append((src, dst))
        pending += [(src.parent / inc, Path(os.path.normpath(dst.parent / inc))) for inc in included(src)]
    for src, dst in pairs:
        if dst.exists() and dst.read_bytes() != src.read_bytes():
            raise InputError(f"{dst} already exists; give another destination (configs copy {name} <file>)")
    for src, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return [dst for _, dst in pairs]


def configs_main(args: list[str]) -> list[str] | list[Path]:
    """``python -m spe_lightning configs [list | copy <name> [<dest>]]``."""
    if args in ([], ["list"]):
        names = packaged_configs()
        width = max(map(len, names))
        print(f"packaged configs ({PACKAGED}); use one as --config <name>, or copy it to edit:")
        for name in names:
            print(f"  {name:<{width}}  {describe(PACKAGED / name)}")
        return names
    if args[:1] == ["copy"] and len(args) in (2, 3):
        copied = copy_config(*args[1:])
        print(f"copied {', '.join(map(str, copied))}; edit {copied[0]} and pass it as --config {copied[0]}")
        return copied
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return []
    raise InputError(
        f"configs {' '.join(args)!r} is not allowed; use: configs [list] | configs copy <name> [<dest>]"
    )
