"""``python -m spe_lightning configs``: list the packaged configs, or copy one out to edit.

    python -m spe_lightning configs                         # list them, with what each trains
    python -m spe_lightning configs copy quickstart.yaml    # to configs/quickstart.yaml, to edit

A copy brings the configs it includes along and never writes over a file: an existing identical file is
left as it is (and said so), a different one is an error.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from spe_lightning.cli.config_files import PACKAGED, PREFIX, packaged_configs, packaged_path
from spe_lightning.core.errors import InputError

USAGE = "configs [list] | configs copy <name> [<dest>]"


def describe(path: Path) -> str:
    """What a config trains: its leading comment, up to the end of its first sentence."""
    words: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        words += line.lstrip("#").split()
        text = " ".join(words)
        if text.endswith(".") or ". " in text:
            return text.split(". ")[0].rstrip(".") + "."
    return " ".join(words)


def included(path: Path) -> list[str]:
    """The files a config includes (``config:``) or a grid builds on (``base:``), relative to it."""
    content = yaml.safe_load(path.read_text()) or {}
    names = [content.get(key) for key in ("config", "base")]
    flat = [n for name in names for n in (name if isinstance(name, list) else [name]) if n]
    return [str(name) for name in flat if not Path(str(name)).is_absolute()]


def copy_config(name: str, dest: str | None = None) -> tuple[list[Path], list[Path]]:
    """Copy packaged config ``name``, and the configs it includes, for editing; never overwrites.

    ``dest`` is a file or a folder (default ``configs/``, so the copy keeps the packaged layout and the
    README's ``--config configs/...`` commands use it); included files keep their place relative to it.
    Returns (copied, already there and identical).
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
        if dst.exists() and (not dst.is_file() or dst.read_bytes() != src.read_bytes()):
            raise InputError(f"{dst} already exists; give another destination (configs copy {name} <file>)")
    copied, present = [], []
    for src, dst in pairs:
        if dst.exists():
            present.append(dst)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        copied.append(dst)
    return copied, present


def main(args: list[str]) -> list[str] | list[Path]:
    """``python -m spe_lightning configs [list | copy <name> [<dest>]]``; the configs listed or copied."""
    if args in ([], ["list"]):
        names = packaged_configs()
        width = max(map(len, names))
        print(f"packaged configs ({PACKAGED}); use one as --config <name>, or copy it to edit:")
        for name in names:
            print(f"  {name:<{width}}  {describe(PACKAGED / name)}")
        return names
    if args[:1] == ["copy"] and len(args) in (2, 3):
        copied, present = copy_config(*args[1:])
        first = (copied + present)[0]
        if copied:
            print(f"copied {', '.join(map(str, copied))}")
        if present:
            print(f"already there, identical (left as they are): {', '.join(map(str, present))}")
        print(f"edit {first} and pass it as --config {first}")
        return copied + present
    if args[:1] in (["-h"], ["--help"]):
        print(f"usage: python -m spe_lightning {USAGE}\n\n{__doc__}")
        raise SystemExit(0)
    raise InputError(f"configs {' '.join(args)!r} is not allowed; use: {USAGE}")
