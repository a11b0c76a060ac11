"""Running the command line from tests: tiny quickstart arguments, captured output, one-line errors."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from spe_lightning.__main__ import dispatch

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CONFIG_DIR = REPO / "configs"
QUICKSTART = CONFIG_DIR / "quickstart.yaml"


def tiny_args(save_dir: Path, *extra: str, max_epochs: int = 1) -> list[str]:
    """The quickstart config shrunk to seconds: depth-8 ResNet, 8x8 digits, two batches per epoch."""
    return [
        "--config",
        str(QUICKSTART),
        "--model.backbone_kwargs={depth: 8, block: basic}",
        "--data.init_args.image_size=8",
        f"--trainer.max_epochs={max_epochs}",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.log_every_n_steps=1",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        *extra,
    ]


def run_cli(*args: str):
    """``python -m spe_lightning <args>`` in this process, stdout captured: (what it returned, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli = dispatch(list(args))
    return cli, out.getvalue()


def cli_error(capsys, *args: str) -> str:
    """Run a command expecting exit status 2; return the one error line it printed (no traceback)."""
    with pytest.raises(SystemExit) as exc:
        dispatch(list(args))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def run_cli_print_config(*configs: Path) -> str:
    """``fit --config <config> ... --print_config``: exit status 0 and the resolved YAML."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        dispatch(["fit", *(arg for config in configs for arg in ("--config", str(config))), "--print_config"])
    assert exc.value.code == 0
    return out.getvalue()


def readme_commands() -> list[list[str]]:
    """Every ``python -m spe_lightning...`` / ``spe-lightning`` command in the README's code blocks, as argv
    after the module (``["spe_lightning", "fit", "--config", ...]``), continuation lines joined."""
    blocks, block, inside = [], [], False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if inside:
                blocks.append("\n".join(block))
                block = []
            inside = not inside
        elif inside:
            block.append(line)
    commands = []
    for text in blocks:
        for line in re.sub(r"\\\n\s*", " ", text).splitlines():
            found = re.search(r"(?:-m (spe_lightning\S*)|(spe-lightning))( .*)?$", line)
            if found is None:
                continue
            words = shlex.split(found.group(3) or "", comments=True)
            words = words[: words.index(">")] if ">" in words else words
            commands.append([found.group(1) or "spe_lightning", *words])
    return commands
