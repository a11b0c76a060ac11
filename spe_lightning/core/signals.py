"""The stop request of this process: the first SIGTERM or SIGINT is recorded, a second one interrupts.

A scheduler preempts with SIGTERM (SLURM: to every task of the job, so to every rank), a user stops with
Ctrl-C (SIGINT, to the whole foreground process group, so to every rank too). Neither may interrupt a
training step: a rank stopped in the middle of a collective leaves the others waiting in it. So a signal
is only recorded here; the training decides at the next batch boundary, on every rank together
(:class:`~spe_lightning.training.callbacks.signals.StopOnSignal`), saves, and the command exits 128 + the
signal. A second signal, or one outside training (``interrupt_now``), interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Process-wide: which signal asked to stop, and whether the next one interrupts at once."""

    received: int | None = None
    interrupt_now: bool = True
    """Outside a training loop (before it, in an evaluation) the first signal interrupts at once."""

    @classmethod
    def reset(cls) -> None:
        cls.received, cls.interrupt_now = None, True

    @classmethod
    def handle(cls, signum: int, frame: FrameType | None) -> None:
        first = cls.received is None
        cls.received = cls.received or signum
        if not first or cls.interrupt_now:
            raise KeyboardInterrupt

    @classmethod
    def install(cls) -> dict[int, Any]:
        """Take SIGTERM and SIGINT (main thread only: the only one Python delivers signals to); the handlers
        replaced, to put back with :meth:`restore`."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, cls.handle) for signum in SIGNALS}

    @staticmethod
    def restore(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    @classmethod
    @contextmanager
    def listening(cls) -> Iterator[None]:
        """Record signals for the duration (a fresh request)."""
        cls.reset()
        previous = cls.install()
        try:
            yield
        finally:
            cls.restore(previous)

    @classmethod
    def exit_code(cls, default: int = signal.SIGTERM) -> int:
        """128 + the signal: 143 for SIGTERM, 130 for SIGINT."""
        return 128 + (cls.received or default)
