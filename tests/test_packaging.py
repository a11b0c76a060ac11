"""What a new user meets first: the packaged configs, the wheel outside the repository, the README's
commands, the help text and a quiet log."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from jsonargparse import CLI

from spe_lightning import config_files
from spe_lightning.cli import SUBCOMMANDS, TOOLS, cli_main, parse_only
from spe_lightning.config_files import PACKAGED, copy_config, packaged_configs, resolve_config_args
from spe_lightning.errors import InputError

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


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


def test_every_config_is_packaged_from_the_top_level_folder():
    edited = sorted(str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").rglob("*.yaml"))
    assert packaged_configs() == edited
    assert len(edited) > 20


def test_a_config_name_finds_the_packaged_file_only_when_no_such_path_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    packaged = str(PACKAGED / "quickstart.yaml")
    assert resolve_config_args(["fit", "--config", "quickstart.yaml"]) == ["fit", "--config", packaged]
    assert resolve_config_args(["fit", "--config=configs/quickstart.yaml"]) == ["fit", f"--config={packaged}"]
    (tmp_path / "quickstart.yaml").write_text("trainer: {max_epochs: 1}\n")
    local = ["fit", "--config", "quickstart.yaml"]
    assert resolve_config_args(local) == local
    assert resolve_config_args(["fit", "--config", "../../pyproject.toml"])[-1] == "../../pyproject.toml"


def test_configs_copy_brings_the_included_files_and_never_overwrites(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    copied = cli_main(["configs", "copy", "cifar10_resnet164_spem.yaml"])
    assert copied == [Path("configs/cifar10_resnet164_spem.yaml"), Path("configs/cifar_recipe.yaml")]
    assert copied[0].read_text() == (PACKAGED / "cifar10_resnet164_spem.yaml").read_text()
    grid = copy_config("grids/digits_smoke.yaml", "mine/")
    assert grid == [Path("mine/digits_smoke.yaml"), Path("quickstart.yaml")]  # base: [../quickstart.yaml]
    edited = tmp_path / "configs" / "cifar_recipe.yaml"
    edited.write_text(edited.read_text() + "# my edit\n")
    with pytest.raises(SystemExit) as exit:
        cli_main(["configs", "copy", "cifar10_resnet164_spem.yaml"])
    assert exit.value.code == 2
    assert "configs/cifar_recipe.yaml already exists" in capsys.readouterr().err
    assert edited.read_text().endswith("# my edit\n")
    assert cli_main(["configs"]) == packaged_configs()
    assert re.search(r"^  quickstart.yaml +Offline quickstart", capsys.readouterr().out, re.M)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["copy", "nope.yaml"], "no packaged config 'nope.yaml'; packaged configs: cifar100_"),
        (["copy", "../pyproject.toml"], "no packaged config '../pyproject.toml'"),
        (["remove", "x"], "configs 'remove x' is not allowed; use: configs [list] | configs copy"),
    ],
)
def test_configs_tool_rejects_bad_input(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=re.escape(message)):
        config_files.configs_main(args)
    assert list(tmp_path.iterdir()) == []


def test_readme_config_paths_exist_and_its_commands_parse(tmp_path, monkeypatch):
    """Every --config in the README names a repository file; every command parses (--print_config)."""
    text = README.read_text()
    paths = set(re.findall(r"--config[ =](configs/[\w/.]+\.yaml)", text))
    assert len(paths) >= 7
    missing = [p for p in paths if not (REPO / p).is_file()]
    assert missing == []
    commands = readme_commands()
    assert len(commands) >= 15
    monkeypatch.chdir(REPO)
    checked = set()
    for module, *args in commands:
        if module != "spe_lightning":  # summary, benchmarks: jsonargparse CLIs of a main()
            with pytest.raises(SystemExit) as exit:
                CLI(importlib.import_module(module).main, as_positional=False, args=[*args, "--print_config"])
            assert exit.value.code in (0, None), (module, args)
        elif args[0] == "configs":
            monkeypatch.chdir(tmp_path)
            cli_main(args)
            monkeypatch.chdir(REPO)
        elif args[0] in TOOLS and "--help" in args:
            with pytest.raises(SystemExit):
                cli_main(args)
        else:
            parse_only(args)
        checked.add(args[0] if module == "spe_lightning" else module)
    assert {"fit", "validate", "test", "predict", "grid", "report", "export", "configs"} <= checked


def test_help_is_ours_and_whole(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/x/spe_lightning/__main__.py", "--help"])
    with pytest.raises(SystemExit):
        cli_main()
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m spe_lightning ")
    assert "Lightning Trainer command line tool" not in out
    for name, summary in SUBCOMMANDS.items():
        assert name in out
        assert summary in " ".join(out.split()), summary
    for tool in TOOLS:
        assert f"python -m spe_lightning {tool} --help" in out
    with pytest.raises(SystemExit):
        cli_main(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: python -m spe_lightning [options] fit ")
    assert "rd_ratio" not in out
    assert "``reduction``" in out and "pool_kwargs: {lam: 0.25}" in out


@pytest.mark.parametrize(
    ("attention", "kwargs", "accepted"),
    [
        ("spem", "{rd_ratio: 4}", "pool, pool_kwargs"),
        ("se", "{rd_ratio: 4}", "reduction, pool, pool_kwargs"),
        ("eca", "{reduction: 4}", "kernel_size, gamma, beta, pool, pool_kwargs"),
    ],
)
def test_unknown_attention_keywords_are_one_line_listing_the_accepted_ones(
    attention, kwargs, accepted, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        cli_main(["fit", "--config", "quickstart.yaml", "--model.attention", attention,
                  "--model.attention_kwargs", kwargs, "--trainer.max_epochs", "1"])  # fmt: skip
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"attention '{attention}' does not take" in err and f"it takes: {accepted}" in err
    assert not (tmp_path / "runs").exists()


def test_a_fit_prints_none_of_the_silenced_notices(tmp_path, monkeypatch, capfd):
    """Lightning's LeafSpec deprecation, its litmodels and litlogger tips and the weights_only notice are
    not printed; a warning about the user's own setup (fewer batches than the logging interval) still is."""
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli_main(["fit", "--config", "quickstart.yaml", "--trainer.max_epochs", "1",
                  "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                  "--model.backbone_kwargs", "{depth: 8, block: basic}"])  # fmt: skip
    captured = capfd.readouterr()
    log = captured.out + captured.err + "\n".join(str(w.message) for w in caught)
    for noise in ("LeafSpec", "litmodels", "litlogger", "Tip:", "weights_only", "configure_optimizers"):
        assert noise not in log, noise
    assert "best val/acc1 =" in log
    assert "The number of training batches (2) is smaller than the logging interval" in log


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_trains_from_outside_the_repository(tmp_path):
    """pip wheel -> a fresh venv (torch etc. from this interpreter's site-packages) -> the packaged
    quickstart for one epoch and the summary, from a folder that is not the repository."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, REPO],
        check=True,
    )
    (wheel,) = wheels.glob("spe_lightning-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    python, script = venv / "bin" / "python", venv / "bin" / "spe-lightning"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", wheel],
        check=True,
    )
    user = tmp_path / "user"
    user.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*command: str | Path) -> str:
        done = subprocess.run(command, cwd=user, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout + done.stderr

    where = run(python, "-c", "import spe_lightning; print(spe_lightning.__file__)")
    assert str(venv) in where and str(REPO) not in where
    out = run(
        script, "fit", "--config", "configs/quickstart.yaml", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    assert "best val/acc1 =" in out
    assert (user / "runs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    summary = run(python, "-m", "spe_lightning.summary", "--depth", "20", "--block", "basic")
    assert re.search(r"^spem\s+default\s+[\d,]+", summary, re.M)
    run(python, "-m", "spe_lightning", "configs", "copy", "quickstart.yaml")
    copied = user / "configs" / "quickstart.yaml"
    assert copied.read_text() == (REPO / "configs" / "quickstart.yaml").read_text()
