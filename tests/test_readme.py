"""The README: every command it shows parses as written, every config it names exists, and its layout
section names every part of the package."""

from __future__ import annotations

import contextlib
import importlib
import io
import re

import pytest
from helpers.cli import README, REPO, readme_commands
from jsonargparse import CLI

import spe_lightning
from spe_lightning.__main__ import dispatch
from spe_lightning.tools import TOOLS

LAYOUT_HEADING = "## Layout"


def test_readme_config_paths_exist_and_its_commands_parse(tmp_path, monkeypatch):
    """Every --config in the README names a repository file; every command parses (``--print_config``)."""
    text = README.read_text()
    paths = set(re.findall(r"--config[ =](configs/[\w/.]+\.yaml)", text))
    assert len(paths) >= 7
    assert [p for p in paths if not (REPO / p).is_file()] == []
    commands = readme_commands()
    assert len(commands) >= 15
    monkeypatch.chdir(REPO)
    checked = set()
    for module, *args in commands:
        if module != "spe_lightning":  # benchmarks: jsonargparse CLIs of a main()
            with pytest.raises(SystemExit) as exit:
                CLI(importlib.import_module(module).main, as_positional=False, args=[*args, "--print_config"])
            assert exit.value.code in (0, None), (module, args)
        elif args[0] == "completion":  # the README redirects its output
            with contextlib.redirect_stdout(io.StringIO()) as out:
                dispatch(args)
            assert "spe-lightning" in out.getvalue()
        elif args[0] == "configs":
            monkeypatch.chdir(tmp_path)
            with contextlib.redirect_stdout(io.StringIO()):
                dispatch(args)
            monkeypatch.chdir(REPO)
        else:
            with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as exit:
                dispatch([*args, *([] if "--print_config" in args else ["--print_config"])])
            assert exit.value.code in (0, None), args
        checked.add(args[0] if module == "spe_lightning" else module)
    assert {"fit", "validate", "test", "predict", *TOOLS} <= checked


def test_the_layout_section_names_every_part_of_the_package():
    text = README.read_text()
    assert LAYOUT_HEADING in text
    section = text.split(LAYOUT_HEADING, 1)[1].split("\n## ", 1)[0]
    package = REPO / "spe_lightning"
    parts = sorted(p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    assert len(parts) >= 10
    missing = [part for part in parts if f"`{part}/`" not in section]
    assert missing == []
    assert spe_lightning.__doc__ is not None and all(f"``{part}``" in spe_lightning.__doc__ for part in parts)


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_readme_link_resolves_inside_the_repository():
    """Links to files name files of the repository (never a folder beside it), and links to sections name
    headings of the README."""
    text = README.read_text()
    anchors = {heading_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert len(targets) >= 10
    for target in targets:
        if target.startswith(("http://", "https://")):
            continue
        if target.startswith("#"):
            assert target[1:] in anchors, f"README links to a missing section: {target}"
            continue
        path = (REPO / target.split("#")[0]).resolve()
        assert REPO in path.parents and path.exists(), (
            f"README links outside the repository or to nothing: {target}"
        )
