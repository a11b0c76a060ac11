"""CPU training that survives a busy machine: torch's intra-op threads follow the cores other work leaves.

torch starts one OpenMP thread per core and every op waits at a barrier for all of them. When other
processes also want those cores, each barrier waits for the thread the OS descheduled last: on this
project's 2-core machine a second training beside the quickstart made it 6.2x slower with 2 threads and
1.3x slower with 1 (``python -m spe_lightning.benchmarks.busy_machine``; the README has the table). An idle
machine wants every core, a busy one fewer threads, so ``threads: auto`` counts, at the start of every
training epoch, the threads of other processes that are running or waiting for a core, and uses the cores
they leave (at least one).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from spe_lightning.core.errors import InputError

PROC = Path("/proc")


def _task_files(pid: str, name: str) -> Iterator[str]:
    """The text of ``/proc/<pid>/task/*/<name>`` for each thread still alive while it is read."""
    for path in (PROC / pid / "task").glob(f"*/{name}"):
        try:
            yield path.read_text()
        except OSError:  # the thread ended
            continue


def _running_threads(pid: str) -> int:
    """Threads of process ``pid`` in state R (running or runnable)."""
    return sum(stat.rpartition(")")[2].split()[:1] == ["R"] for stat in _task_files(pid, "stat"))


def _children(pid: str) -> list[str]:
    """Direct child processes of ``pid`` (DataLoader workers, DDP ranks a launcher started)."""
    return [child for children in _task_files(pid, "children") for child in children.split()]


def _tree_running(pid: str, depth: int = 3) -> int:
    """Running threads of ``pid`` and its descendants, ``depth`` generations down."""
    below = sum(_tree_running(child, depth - 1) for child in _children(pid)) if depth else 0
    return _running_threads(pid) + below


def others_running(root: int | None = None, samples: int = 10, interval: float = 0.001) -> float | None:
    """Mean number of running or runnable threads outside the process tree of ``root`` (default: this
    process; a DDP rank passes its launcher, so that its sibling ranks count as its own); None without
    /proc."""
    stat = PROC / "stat"
    if not stat.is_file():
        return None
    pid, total = str(root or os.getpid()), 0
    for _ in range(samples):
        running = next(
            int(line.split()[1]) for line in stat.read_text().splitlines() if line.startswith("procs_running")
        )
        total += max(0, running - _tree_running(pid))
        time.sleep(interval)
    return total / samples


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, as a container or ``taskset`` sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class CPUThreads(Callback):
    """Set torch's intra-op threads for CPU training (GPU runs are left alone).

    Args:
        threads: ``auto`` (default): the cores left by other processes' running threads, at least one,
            re-read at every training epoch start; an integer: that many, fixed; ``torch``: torch's own
            choice (one per core, or ``OMP_NUM_THREADS``). ``auto`` also defers to an ``OMP_NUM_THREADS``
            set before the run starts: an explicit choice of the user's (Lightning's CPU DDP sets it to
            cores // processes later, which ``auto`` refines).
    """

    def __init__(self, threads: int | Literal["auto", "torch"] = "auto") -> None:
        if not (threads in ("auto", "torch") or (isinstance(threads, int) and threads >= 1)):
            raise InputError(
                f"cpu_threads.threads={threads!r} is not allowed; use auto, torch or a positive integer"
            )
        self.threads = threads
        self.cores = 1
        self.initial: int | None = None
        # read now, when the run is configured: Lightning's DDP launcher sets OMP_NUM_THREADS itself later
        self.user_set = "OMP_NUM_THREADS" in os.environ
        self.probe: Callable[[], float | None] = others_running

    def _active(self, trainer: Trainer) -> bool:
        manual = self.threads == "auto" and self.user_set
        return trainer.strategy.root_device.type == "cpu" and self.threads != "torch" and not manual

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # CPU DDP: the ranks of one machine share its cores
        self.cores = max(1, available_cores() // max(1, trainer.num_devices))
        if trainer.num_devices > 1:  # the ranks of this machine are one tree: rank 0's or the launcher's
            external = trainer.strategy.cluster_environment.creates_processes_externally
            if external or trainer.local_rank > 0:
                self.probe = partial(others_running, os.getppid())
        if self._active(trainer):
            self.initial = torch.get_num_threads()
            self.apply(self.threads if isinstance(self.threads, int) else self.target())

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Give the process back its thread count (a notebook or test may train again after this)."""
        if self.initial is not None:
            torch.set_num_threads(self.initial)
            self.initial = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.threads == "auto" and self._active(trainer):
            self.apply(self.target())

    def target(self) -> int:
        """The cores other processes leave us, rounded, at least one."""
        others = self.probe()
        if others is None:
            return self.cores
        return max(1, min(self.cores, round(self.cores - others)))

    def apply(self, threads: int) -> None:
        if threads != torch.get_num_threads():
            rank_zero_info(
                f"CPU threads: {torch.get_num_threads()} -> {threads} of {self.cores} cores "
                f"(cpu_threads.threads={self.threads}; other processes' work decides under auto)"
            )
            torch.set_num_threads(threads)
