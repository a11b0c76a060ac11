"""``--config`` names: a path that exists is used, else the packaged config of that name."""

from __future__ import annotations

from helpers.cli import REPO

from spe_lightning.cli.config_files import PACKAGED, packaged_configs, resolve_config_args


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
