"""The report: rows for every run and grid point (pending ones too), groups, figures; read through the one
reader of runs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from helpers.cli import cli_error, run_cli, tiny_args

from spe_lightning.__main__ import dispatch
from spe_lightning.tools.report import RunRecord, group, group_rows, lam_figure


def test_the_report_lists_unfinished_and_pending_points(tmp_path, capsys):
    grid = tmp_path / "runs" / "tiny"
    points = [
        {
            "index": i,
            "name": name,
            "values": {"model.attention": "se", "seed_everything": i},
            "root": str(grid / name),
        }
        for i, name in enumerate(("failed", "pending"))
    ]
    (grid / "failed" / "version_0").mkdir(parents=True)  # started, died before its first checkpoint
    (grid / "grid.json").write_text(json.dumps({"points": points}))
    dispatch(["report", str(grid)])
    rows = {row["run"]: row["status"] for row in csv.DictReader((grid / "report" / "runs.csv").open())}
    assert rows == {"failed": "failed", "pending": "pending"}


ARMS = {
    "se-avg": ["--model.attention=se", "--model.pool=avg"],
    "eca-avg": ["--model.attention=eca", "--model.pool=avg"],
}


def fit_point(grid: Path, name: str, seed: int, *extra: str) -> None:
    """One tiny fit in a grid point's run root, as the grid names and places it."""
    run_cli(
        "fit",
        *tiny_args(grid.parent, f"--trainer.logger.init_args.name={grid.name}/{name}-seed{seed}"),
        f"--seed_everything={seed}",
        *extra,
    )


def write_manifest(grid: Path, baseline: dict | None = None) -> None:
    points = [
        {
            "index": i,
            "name": f"{arm}-seed{seed}",
            "values": {"model.attention": arm.split("-")[0], "model.pool": "avg", "seed_everything": seed},
            "root": str(grid / f"{arm}-seed{seed}"),
        }
        for i, (arm, seed) in enumerate((arm, seed) for arm in ARMS for seed in (0, 1))
    ]
    (grid / "grid.json").write_text(json.dumps({"baseline": baseline, "points": points}))


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two arms x two seeds of tiny fits, laid out as a grid."""
    grid = tmp_path_factory.mktemp("runs") / "tiny"
    for arm, args in ARMS.items():
        for seed in (0, 1):
            fit_point(grid, arm, seed, *args)
    write_manifest(grid, {"model.attention": "se", "model.pool": "avg"})
    return grid


def copied(tiny_grid: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_grid, tmp_path / "runs" / "tiny"))


def test_every_arm_is_compared_with_the_grid_files_baseline_seed_by_seed(tiny_grid, tmp_path):
    grid = copied(tiny_grid, tmp_path)
    written = dispatch(["report", str(grid)])
    (row,) = csv.DictReader(written["comparisons.csv"].open())
    groups = {r["attention"]: r for r in csv.DictReader(written["groups.csv"].open())}
    mean = {arm: float(groups[arm]["accuracy mean"]) for arm in ("se", "eca")}
    assert (row["arm"], row["pairs"]) == ("eca-avg", "2")
    runs = list(csv.DictReader(written["runs.csv"].open()))
    assert {r["best chosen on"] for r in runs} == {"validation"}  # the digits hold a validation split out
    # what is compared: the test accuracy of the checkpoint the validation split chose, as the fit reported
    assert {g["reported as"] for g in groups.values()} == {"test top-1, val-selected"}
    for arm in ("se", "eca"):
        tested = [float(r["test top-1, val-selected"]) for r in runs if r["attention"] == arm]
        assert mean[arm] == pytest.approx(sum(tested) / 2, abs=1e-4)
        assert all(r["best-on-test (paper protocol)"] == "-" for r in runs)
    assert float(row["difference"]) == pytest.approx(mean["eca"] - mean["se"], abs=1e-9)  # mean of pairs
    # cost beside accuracy: parameters, FLOPs from the recorded input shape, measured speed and its device
    assert int(groups["eca"]["params"]) < int(groups["se"]["params"])
    assert 0 < float(groups["eca"]["FLOPs"]) < float(groups["se"]["FLOPs"])
    assert all(float(r["train img/s"]) > 0 and r["devices"].startswith("1 x cpu") for r in runs)
    assert row["verdict"] in ("better", "worse", "no detectable difference")
    assert {"differences.png", "accuracy_by_pool.png", "report.md"} <= set(written)
    assert "## Against the baseline se-avg, paired by seed" in written["report.md"].read_text()


def test_two_seeds_short_of_a_pair_say_n_too_small(tiny_grid, tmp_path):
    grid = copied(tiny_grid, tmp_path)
    shutil.rmtree(grid / "eca-avg-seed1")
    written = dispatch(["report", str(grid), "--baseline=model.attention=se"])
    (row,) = csv.DictReader(written["comparisons.csv"].open())
    assert (row["pairs"], row["verdict"]) == ("1", "n too small")


def test_runs_that_differ_in_more_than_the_seed_are_never_averaged(tiny_grid, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_grid / "se-avg-seed0", runs / "short")
    fit_point(runs, "long", 0, *ARMS["se-avg"], "--trainer.max_epochs=2")
    written = dispatch(["report", str(runs)])
    groups = list(csv.DictReader(written["groups.csv"].open()))
    assert sorted((g["split by"], g["n"]) for g in groups) == [
        ("trainer.max_epochs=1", "1"),
        ("trainer.max_epochs=2", "1"),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"baseline": "model.attention=cbam"},
            "baseline model.attention=cbam matches no group of finished runs; the groups: se-avg, eca-avg",
        ),
        ({"baseline": "attention"}, "--baseline 'attention' is not key=value"),
        (
            {"refit": ("eca-avg", 1, *ARMS["eca-avg"], "--trainer.max_epochs=2")},
            "group eca-avg (trainer.max_epochs=2) differs from the baseline in trainer.max_epochs (2 vs 1), "
            "which is not a compared axis",
        ),
        (
            {"refit": ("se-avg", 1, *ARMS["eca-avg"])},
            "under grid point se-avg-seed1 was trained with model.attention='eca', not 'se': it belongs to "
            "another grid",
        ),
    ],
    ids=["baseline matches nothing", "baseline not key=value", "points differ in more", "another grid's run"],
)
def test_a_report_that_would_mislead_is_refused_before_writing(tiny_grid, tmp_path, capsys, change, message):
    grid = copied(tiny_grid, tmp_path)
    if "refit" in change:
        arm, seed, *args = change["refit"]
        shutil.rmtree(grid / f"{arm}-seed{seed}")
        fit_point(grid, arm, seed, *args)
    extra = [f"--baseline={change['baseline']}"] if "baseline" in change else []
    error = cli_error(capsys, "report", str(grid), *extra)
    assert message in error
    assert not (grid / "report").exists()


def synthetic_record(attention: str, pool: str, seed: int, accuracy: float, **experiment) -> RunRecord:
    """A finished run as the report reads it, without training: one epoch at ``accuracy``."""
    settings = {"dataset": "CIFAR10", "backbone": "cifar_resnet", "depth": 164, "attention": attention}
    record = RunRecord(f"{attention}-{pool}-seed{seed}", None, "finished", {**settings, "pool": pool}, seed)
    record.accuracies, record.epochs = [accuracy], [0]
    record.experiment = {"model.attention": attention, "model.pool": pool, **experiment}
    return record


def test_the_phenomenon_picture_is_accuracy_against_lam_with_the_average_pool_as_a_band():
    lams = {"min": 0.0, "maxmin@0.25": 0.25, "maxmin@0.5": 0.5, "max": 1.0}
    records = [
        synthetic_record("se", pool, seed, 0.9 + 0.01 * lam + 0.002 * seed)
        for pool, lam in {**lams, "avg": 0.3}.items()
        for seed in range(3)
    ]
    fig = lam_figure(group(records))
    (ax,) = fig.axes
    mix, average = ax.lines
    assert list(mix.get_xdata()) == sorted(lams.values())
    assert list(mix.get_ydata()) == pytest.approx([0.902 + 0.01 * lam for lam in sorted(lams.values())])
    assert list(average.get_ydata()) == pytest.approx([0.905, 0.905])  # the avg-pool mean, across the axis
    assert len(ax.collections) == 1 and len(ax.patches) == 1  # the mix's CI band; the average's CI band
    assert lam_figure(group(records[-3:])) is None  # no max/min line: no picture


def test_the_papers_numbers_stand_beside_ours_only_for_the_same_experiment():
    paper = {"model.backbone_kwargs.block": "bottleneck", "trainer.max_epochs": 164}
    rows = group_rows(
        group(
            [synthetic_record("spem", "learned", seed, 0.95, **paper) for seed in range(2)]
            + [synthetic_record("none", "-", seed, 0.93, **paper) for seed in range(2)]
            + [
                synthetic_record(
                    "none", "-", 0, 0.94, **paper, **{"model.backbone_kwargs.zero_init_residual": True}
                ),
                synthetic_record("se", "avg", 0, 0.94, **paper),
            ]
        )
    )
    published = {(r["attention"], r["split by"]): (r["published"], r["published as"]) for r in rows}
    assert published[("spem", "")] == (0.948, "SPEM paper, single run, best-on-test (paper protocol)")
    assert published[("none", "model.backbone_kwargs.zero_init_residual=None")][0] == 0.9339
    assert published[("none", "model.backbone_kwargs.zero_init_residual=True")][0] is None  # a control
    assert published[("se", "")][0] is None  # the paper prints no SE-with-avg run
