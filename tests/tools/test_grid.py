"""Grids: digits_smoke end to end (killed, rerun and reported), the SLURM script, the local launcher's
parallel points, bad grid files."""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.cli import CONFIG_DIR, QUICKSTART
from helpers.data import write_cifar
from helpers.processes import TIMEOUT, child_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision.datasets import CIFAR10, CIFAR100

from spe_lightning.__main__ import dispatch
from spe_lightning.cli.lightning_cli import parse_config
from spe_lightning.data.base import seeded_split
from spe_lightning.tools.grid import Point, run_local

GRIDS = CONFIG_DIR / "grids"
SMOKE = GRIDS / "digits_smoke.yaml"


def smoke_set(record: Path) -> str:
    """digits_smoke's shared overrides plus a probe that sleeps 0.15 s a batch, so a kill lands mid-point."""
    shared = yaml.safe_load(SMOKE.read_text())["set"]
    probe = {
        "class_path": "helpers.runs.BatchRecorder",
        "init_args": {"path": str(record), "delay": 0.15},
    }
    return json.dumps({**shared, "trainer.callbacks": [probe]})


SE_ONLY = "{model.attention: [se], model.pool: [avg, learned], seed_everything: [0, 1]}"
"""digits_smoke's axes less ECA: four fits, the kill in the third (the first learned one), and two seeds per
group for the report; the file's own eight points cost a minute more of CI for nothing this test checks."""


def grid_command(save_dir: Path, record: Path) -> list[str]:
    return [
        sys.executable, "-m", "spe_lightning", "grid", f"--config={SMOKE}",
        f"--save_dir={save_dir}", f"--set={smoke_set(record)}", f"--axes={SE_ONLY}",
    ]  # fmt: skip


def best_from_events(folder: Path) -> float:
    events = EventAccumulator(str(folder))
    events.Reload()
    return max(event.value for event in events.Scalars("val/acc1"))


@pytest.mark.slow
def test_digits_smoke_killed_in_its_third_point_then_rerun_skips_finished_and_resumes(tmp_path):
    save_dir, record = tmp_path / "runs", tmp_path / "batches.jsonl"
    env = child_env()
    grid = save_dir / "digits_smoke"
    third = grid / "se-learned-seed0" / "version_0"
    proc = subprocess.Popen(
        grid_command(save_dir, record), env=env, cwd=tmp_path, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not (third / "checkpoints" / "last.ckpt").exists():  # the third point's first epoch is done
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the grid did not reach its third point"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the grid and the fit it runs, as a lost node would
    proc.wait(timeout=TIMEOUT)

    manifest = json.loads((grid / "grid.json").read_text())
    assert [point["name"] for point in manifest["points"]] == [
        f"se-{pool}-seed{seed}" for pool in ("avg", "learned") for seed in (0, 1)
    ]
    finished = {
        name: (grid / name / "version_0" / "result.json").stat().st_mtime_ns
        for name in ("se-avg-seed0", "se-avg-seed1")
    }
    assert not (third / "result.json").exists()

    rerun = subprocess.run(
        grid_command(save_dir, record), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1200
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "[grid] digits_smoke: 4 points, 2 to run" in rerun.stdout  # 2 finished skipped, 1 resumed, 1 new
    for name, mtime in finished.items():  # skipped: untouched, no second run
        assert (grid / name / "version_0" / "result.json").stat().st_mtime_ns == mtime
        assert [p.name for p in (grid / name).iterdir()] == ["version_0"]
    assert [p.name for p in (grid / "se-learned-seed0").iterdir()] == ["version_0"]  # resumed in place
    assert "resuming run" in (grid / "se-learned-seed0.log").read_text()
    assert json.loads((third / "result.json").read_text())["global_step"] == 12

    report = subprocess.run(
        [sys.executable, "-m", "spe_lightning", "report", str(grid)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert report.returncode == 0, report.stderr
    runs = list(csv.DictReader((grid / "report" / "runs.csv").open()))
    assert sorted(row["run"] for row in runs) == sorted(
        point["name"] for point in manifest["points"]
    )  # once each
    assert {row["status"] for row in runs} == {"finished"}
    groups = {
        (row["attention"], row["pool"]): row
        for row in csv.DictReader((grid / "report" / "groups.csv").open())
    }
    for (attention, pool), row in groups.items():
        best = [best_from_events(grid / f"{attention}-{pool}-seed{seed}" / "version_0") for seed in (0, 1)]
        assert int(row["n"]) == 2
        assert float(row["best val/acc1 mean"]) == pytest.approx(statistics.fmean(best), abs=1e-9)
        assert float(row["best val/acc1 std"]) == pytest.approx(statistics.stdev(best), abs=1e-9)
    assert (grid / "report" / "comparisons.csv").is_file()  # the grid file's baseline: SE + avg
    print((grid / "report" / "report.md").read_text())  # the tables the closing note shows


@pytest.mark.slow
def test_slurm_script_for_the_phenomenon_grid(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no sbatch here: the script is printed, not submitted
    monkeypatch.chdir(tmp_path)  # the grid's data_dir, data/, is relative to where it is launched
    write_cifar(tmp_path / "data", CIFAR10, monkeypatch)  # the archive only, as a download leaves it
    args = [
        "grid",
        f"--config={GRIDS / 'phenomenon_cifar10.yaml'}",
        f"--save_dir={tmp_path}",
        "--launcher=slurm",
        '--sbatch={gres: "gpu:1", time: "24:00:00"}',
        "--array_limit=4",
    ]
    summary = dispatch(args)
    script = Path(summary["script"]).read_text()
    out = capsys.readouterr().out
    assert script in out
    # the data is prepared once, before the array is written: every task finds it in place
    assert out.count("[grid] preparing CIFAR10DataModule in ") == 1
    assert (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1").is_file()
    manifest = json.loads((tmp_path / "phenomenon_cifar10" / "grid.json").read_text())
    assert len(manifest["points"]) == 4 * 14 * 3 + 2 * 3  # and the two controls x 3 seeds
    assert manifest["points"][-1]["name"] == "zero_init-seed2"
    assert script.count("#SBATCH --array") == 1 and "#SBATCH --array=0-173%4\n" in script
    for option in (
        "--requeue",
        "--signal=TERM@120",
        "--gres=gpu:1",
        "--time=24:00:00",
        "--job-name=phenomenon_cifar10",
    ):
        assert f"#SBATCH {option}" in script
    commands = script.split("COMMANDS=(\n")[1].split("\n)\n")[0].splitlines()
    assert len(commands) == 174  # one task per point, in the manifest's order, each its exact fit command
    for line, point in zip(commands, manifest["points"], strict=True):
        assert shlex.split(line.split("  # ")[0]) == [point["command"]]
        assert line.endswith(f"# {point['index']}: {point['name']}")
        assert point["command"].endswith("--ckpt_path=last")
    assert 'eval "srun ${COMMANDS[$SLURM_ARRAY_TASK_ID]}"' in script
    assert (
        'if [ "$status" -eq 143 ]; then scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; fi'
        in script
    )
    first = manifest["points"][0]["command"]
    assert "--model.attention=se --model.pool=avg --seed_everything=0" in first
    assert "--trainer.logger.init_args.name=se-avg-seed0" in first


@pytest.mark.parametrize(
    ("grid", "held_out"),
    [("phenomenon_cifar10", 0.1), ("phenomenon_cifar100", 0.1), ("spem_table", 0.0)],
)
def test_new_comparisons_hold_out_validation_and_the_papers_table_keeps_its_protocol(
    tmp_path, capsys, grid, held_out
):
    dispatch(["grid", f"--config={GRIDS / f'{grid}.yaml'}", f"--save_dir={tmp_path}", "--dry_run=true"])
    command = shlex.split(capsys.readouterr().out.splitlines()[1].split("pending", 1)[1])
    config = parse_config(command[command.index("spe_lightning") + 1 :])
    assert config.data.init_args.val_split == held_out
    if held_out:  # CIFAR's 50,000 training images: 45,000 train, 5,000 validate, chosen by the data seed
        train, val = seeded_split(50_000, held_out, config.data.init_args.seed)
        assert (len(train), len(val)) == (45_000, 5_000) and not set(train) & set(val)


@pytest.mark.slow
def test_slurm_launcher_submits_where_sbatch_exists(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch_calls"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "Submitted batch job 42"\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    for dataset in (CIFAR10, CIFAR100):  # the table's two datasets, each prepared once
        write_cifar(tmp_path / "data", dataset, monkeypatch)
    args = ["grid", f"--config={GRIDS / 'spem_table.yaml'}", f"--save_dir={tmp_path}", "--launcher=slurm"]
    dispatch([*args, "--dry_run=true"])  # the script it would write; nothing written, extracted or submitted
    planned = capsys.readouterr().out.split("would hold:\n")[1]
    assert not calls.exists() and not (tmp_path / "spem_table").exists()
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()
    summary = dispatch(args)
    assert calls.read_text().split() == [summary["script"]]
    script = Path(summary["script"]).read_text()
    assert "#SBATCH --array=0-29\n" in script and planned.strip() == script.strip()


BAD_GRIDS = {
    "unknown key": ("axes: {model.atention: [se, eca]}", "grid point atentionse: "),
    "empty axis": ("axes: {model.attention: []}", "axis model.attention is []; an axis is a non-empty list"),
    "not a mapping": None,
    "shared run folder": (
        "axes: {optimizer.init_args.lr: [0.1, '0.1']}",
        "would share the run folder",
    ),
    "unknown attention in an axis": (
        "axes: {model.attention: [se, sse]}",
        "grid point sse: unknown attention 'sse'",
    ),
    "baseline on no axis": (
        "axes: {model.attention: [se, eca]}\nbaseline: {model.pool: avg}",
        "baseline key 'model.pool' is not an axis of the grid; the axes it may name: model.attention",
    ),
    "a second array option": (
        "axes: {model.attention: [se, eca]}\nlauncher: slurm\nsbatch: {array: 0-17%4}",
        "sbatch option array='0-17%4' is not allowed: the grid writes --array itself, one task per pending "
        "point; use --array_limit N to run at most N of them at once",
    ),
    "a throttle of no tasks": (
        "axes: {model.attention: [se, eca]}\nlauncher: slurm\narray_limit: 0",
        "array_limit=0 is not allowed",
    ),
    "data that is not there": (
        "axes: {model.attention: [se, eca]}\nset: {data: spe_lightning.data.CIFAR10DataModule, "
        "data.init_args.data_dir: no_such_folder, data.init_args.download: false}",
        "grid point se: CIFAR10 not found: expected ",
    ),
    "baseline matching no point": (
        "axes: {model.attention: [se, eca]}\nbaseline: {model.attention: cbam}",
        "baseline model.attention='cbam' matches no point: the axis has ['se', 'eca']",
    ),
}


@pytest.mark.parametrize("case", BAD_GRIDS)
def test_bad_grid_input_is_one_line_exit_2_and_launches_nothing(case, tmp_path, capsys):
    grid_file = tmp_path / "bad.yaml"
    if BAD_GRIDS[case] is None:
        grid_file.write_text("- base\n- axes\n")
        message = f"config file {grid_file} is a list, not a mapping"
    else:
        body, message = BAD_GRIDS[case]
        grid_file.write_text(f"base: [{QUICKSTART}]\n{body}\n")
    with pytest.raises(SystemExit) as exc:
        dispatch(["grid", f"--config={grid_file}", f"--save_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exc.value.code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert message in errors[0]
    assert not (tmp_path / "runs").exists()  # nothing launched, nothing written


@pytest.mark.slow
def test_local_launcher_runs_points_in_parallel_one_gpu_each(tmp_path):
    """Four points, two at a time, on GPUs 3 and 5: each fit sees one of them and no two overlap on one."""
    script = (
        "import os, sys, time; start = time.time(); time.sleep(0.5); "
        "open(sys.argv[1], 'a').write(f\"{os.environ['CUDA_VISIBLE_DEVICES']} {start} {time.time()}\\n\")"
    )
    points = [
        Point(i, f"p{i}", {}, tmp_path / f"p{i}", [sys.executable, "-c", script, str(tmp_path / "seen.txt")])
        for i in range(4)
    ]
    start = time.monotonic()
    assert run_local(points, parallel=2, gpus=[3, 5]) == {f"p{i}": 0 for i in range(4)}
    assert time.monotonic() - start < 4 * 0.5 + 1.0  # two at a time, not one after another
    spans = [line.split() for line in (tmp_path / "seen.txt").read_text().splitlines()]
    assert sorted(gpu for gpu, _, _ in spans) == ["3", "3", "5", "5"]
    for gpu in ("3", "5"):
        mine = sorted((float(a), float(b)) for g, a, b in spans if g == gpu)
        assert mine[0][1] <= mine[1][0]  # a GPU runs one point at a time
