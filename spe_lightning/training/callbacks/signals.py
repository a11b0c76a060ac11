"""Stopping a run together: a signal stops every rank at the same batch, and a rank that dies ends the others.

* :class:`StopOnSignal`: SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C) are recorded
  (:class:`~spe_lightning.core.signals.StopRequest`), never acted on inside a step. At every training batch
  end the ranks agree whether any of them received one (one all-reduce of a flag under DDP; a plain check on
  one process), and if so all of them raise Lightning's ``SIGTERMException`` at that same batch:
  :class:`~spe_lightning.training.callbacks.fault_tolerance.LastCheckpoint` saves ``last.ckpt`` once, and
  the command exits 128 + the signal. Lightning's own handler is replaced while the loop runs: it
  broadcasts from inside the signal handler, which, when every rank is signalled, is a collective in the
  middle of another one (a gloo mismatch, or a hang).
* :class:`PeerWatch`: under multi-process training on one machine, each rank watches the others' processes
  (rank 0 its launched ranks, the others rank 0); when one ends with an error or a signal, the watching
  rank prints one line naming it and exits at once, instead of waiting in a collective for a rank that
  will never come (NCCL waits for its timeout: half an hour by default). Ranks on other machines are
  left to the process group's timeout.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from spe_lightning.core.errors import RunFailure
from spe_lightning.core.signals import StopRequest

PROC = Path("/proc")
WATCH_INTERVAL = 0.5
"""Seconds between two looks at the other ranks' processes."""


class StopOnSignal(Callback):
    """Stop every rank at the same batch when any of them is signalled (see the module docstring)."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    def _take_signals(self, interrupt_now: bool) -> None:
        StopRequest.interrupt_now = interrupt_now
        if not self._previous:  # the handlers to put back: Lightning's, put back by its own teardown
            self._previous = StopRequest.install()

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._take_signals(interrupt_now=False)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._take_signals(interrupt_now=False)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._take_signals(interrupt_now=trainer.state.fn != TrainerFn.FITTING)  # a standalone validate

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._take_signals(interrupt_now=True)  # nothing to save: an evaluation stops at once

    on_predict_start = on_test_start

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._decide(trainer)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if trainer.world_size == 1:  # under DDP the ranks' validation batches need not pair up
            self._decide(trainer)

    def _decide(self, trainer: Trainer) -> None:
        local = StopRequest.received is not None
        stop = trainer.strategy.reduce_boolean_decision(local, all=False) if trainer.world_size > 1 else local
        if stop:
            name = signal.Signals(StopRequest.received).name if local else "a signal to another rank"
            rank_zero_info(f"stopping at step {trainer.global_step} ({name}); every rank stops here")
            raise SIGTERMException

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        StopRequest.restore(self._previous)
        self._previous = {}


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or None when the process is gone."""
    try:
        return (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _local_rank(pid: int) -> int | None:
    """``LOCAL_RANK`` in a process's environment (the ranks Lightning launches), or None."""
    try:
        entries = (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in entries:
        if entry.startswith(b"LOCAL_RANK="):
            return int(entry.split(b"=", 1)[1] or 0)
    return None


def _ours(pid: int) -> bool:
    """Whether process ``pid`` runs spe_lightning (a rank Lightning's launcher started, or the launcher)."""
    try:
        return b"spe_lightning" in (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    pids = []
    for path in (PROC / str(pid) / "task").glob("*/children"):
        try:
            pids += [int(child) for child in path.read_text().split()]
        except OSError:
            continue
    return pids


def ending(pid: int) -> str | None:
    """How process ``pid`` ended, if it failed: ``killed by SIGKILL``, ``exit status 1``, ``ended``; None
    while it runs or after a clean exit (a zombie's exit code is read from ``/proc``)."""
    fields = _stat(pid)
    if fields is None:
        return "ended"
    if fields[0] not in ("Z", "X"):
        return None
    status = int(fields[49]) if len(fields) > 49 else 0  # exit_code, as waitpid would report it
    if status & 0x7F:
        return f"killed by {signal.Signals(status & 0x7F).name}"
    code = status >> 8
    return f"exit status {code}" if code else None


class PeerWatch(Callback):
    """End this rank at once, with one line, when another rank's process on this machine fails."""

    def __init__(self, interval: float = WATCH_INTERVAL) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peers: dict[int, int] = {}
        self._rank = 0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.world_size == 1 or self._thread is not None:
            return
        if trainer.local_rank == 0:  # the ranks this process launched (DataLoader workers carry rank 0's)
            ranks = {pid: _local_rank(pid) for pid in _children(os.getpid()) if _ours(pid)}
            peers = {pid: rank for pid, rank in ranks.items() if rank not in (None, 0)}
        else:  # the rank 0 that launched this one (not torchrun's or srun's agent)
            peers = {os.getppid(): 0} if _ours(os.getppid()) else {}
        if not peers:
            return
        self._peers, self._rank = peers, trainer.global_rank
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._end_if_a_peer_failed()

    def _end_if_a_peer_failed(self, wait: float = 0.0) -> None:
        """If a peer's process failed (within ``wait`` seconds), say which and end this process at once: the
        main thread may be waiting inside a collective that will never complete."""
        for _ in range(max(1, int(wait / self.interval) + 1)):
            for pid, rank in self._peers.items():
                how = ending(pid)
                if how is not None:
                    print(
                        f"error: rank {rank} (process {pid}) {how} during training; rank {self._rank} cannot "
                        "go on without it and stops: continue the run with --ckpt_path last",
                        file=sys.stderr,
                        flush=True,
                    )
                    os._exit(RunFailure.exit_code)
            if wait:
                threading.Event().wait(self.interval)

    def _end(self) -> None:
        self._stop.set()
        self._thread = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """A collective that failed because a peer died (gloo notices at once) is reported as that peer's
        death, not as the transport's error."""
        watching = self._thread is not None
        self._end()
        if watching and not isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            self._end_if_a_peer_failed(wait=2.0)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._end()
