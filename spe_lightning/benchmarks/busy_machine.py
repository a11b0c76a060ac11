"""How CPU training holds up on a busy machine: one training's wall time under each thread setting and load.

    python -m spe_lightning.benchmarks.busy_machine --fit_config quickstart.yaml

Each case runs ``python -m spe_lightning fit --config <config>`` in a fresh process (thread settings are
read once, when torch loads) in a scratch folder, with one of these loads beside it:

- ``idle``: nothing else;
- ``training``: a second copy of the same training, with the same settings;
- ``hogs``: ``--hogs`` busy-looping processes (the load average of a shared machine).

and one of these thread settings (environment variables of the training process):

- ``auto``: the package's default, ``cpu_threads.threads=auto`` (threads follow other processes' load);
- ``torch``: ``--cpu_threads.threads torch``, torch's own default of one thread per core;
- ``omp1``: ``OMP_NUM_THREADS=1``;
- ``passive``: torch's thread count with ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead
  of spinning).

It prints each case's wall time and its ratio to the idle time of the first setting, measured in the same
run. Nothing else should run on the machine meanwhile: the loads are the point.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spe_lightning.core.errors import InputError
from spe_lightning.core.validation import check_int

TORCH = ["--cpu_threads.threads", "torch"]
SETTINGS: dict[str, tuple[dict[str, str], list[str]]] = {
    "auto": ({}, []),
    "torch": ({}, TORCH),
    "omp1": ({"OMP_NUM_THREADS": "1"}, []),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, TORCH),
}
"""Setting -> (environment variables, fit arguments)."""
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
LOADS = ("idle", "training", "hogs")
HOG = "while True: pass"


def _training(config: str, folder: Path, setting: str, extra: list[str]) -> subprocess.Popen:
    folder.mkdir(parents=True)
    variables, arguments = SETTINGS[setting]
    command = [sys.executable, "-m", "spe_lightning", "fit", "--config", config, *arguments, *extra]
    command += ["--trainer.enable_progress_bar", "false"]
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    return subprocess.Popen(
        command,
        cwd=folder,
        env={**env, **variables},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_case(config: str, setting: str, load: str, hogs: int, scratch: Path, extra: list[str]) -> float:
    """Wall seconds of one training under ``load``."""
    case = scratch / f"{setting}-{load}"
    others: list[subprocess.Popen] = []
    if load == "training":
        others.append(_training(config, case / "load", setting, extra))
    elif load == "hogs":
        others += [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
    start = time.perf_counter()
    main = _training(config, case / "main", setting, extra)
    _, err = main.communicate()
    seconds = time.perf_counter() - start
    for other in others:
        other.kill() if load == "hogs" else other.wait()
        other.wait()
    if main.returncode:
        raise RuntimeError(f"{setting}/{load}: exit {main.returncode}: {err.strip().splitlines()[-1:]}")
    return seconds


def main(
    fit_config: str = "quickstart.yaml",
    settings: list[str] = ["auto", "torch", "omp1", "passive"],  # noqa: B006
    loads: list[str] = ["idle", "training", "hogs"],  # noqa: B006
    hogs: int = 4,
    extra: list[str] = [],  # noqa: B006
) -> dict[tuple[str, str], float]:
    """Time one training per (setting, load); ``extra`` is appended to the fit command line."""
    for name, allowed, given in (("settings", SETTINGS, settings), ("loads", LOADS, loads)):
        bad = [g for g in given if g not in allowed]
        if bad:
            raise InputError(f"{name} {bad} are not allowed; expected some of: {', '.join(allowed)}")
    check_int("hogs", hogs, minimum=0)
    load_average = os.getloadavg()[0]
    print(f"{fit_config}, {os.cpu_count()} cores, load average at start {load_average:.2f}; hogs={hogs}")
    times: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="busy-machine-") as scratch:
        for load in loads:
            for setting in settings:
                times[setting, load] = run_case(fit_config, setting, load, hogs, Path(scratch), extra)
                seconds, base = times[setting, load], times[settings[0], loads[0]]
                print(f"{load:<9}{setting:<14}{seconds:>8.1f} s{seconds / base:>7.2f}x", flush=True)
    return times


if __name__ == "__main__":
    from spe_lightning.cli.parser import script_main

    script_main(main)
