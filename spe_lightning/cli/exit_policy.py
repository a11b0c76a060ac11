"""How every command ends: one exit code per kind of ending, and one line on stderr, never a traceback.

Exit codes (the only place they are chosen), by where a failure came from:

* 0 finished;
* 2 bad input: an :class:`~spe_lightning.core.errors.InputError` (a value, file or folder the user can fix,
  found before work starts) or a value the parser rejected (jsonargparse's own one-line exit);
* 1 a failure while working: a :class:`~spe_lightning.core.errors.RunFailure` (a non-finite loss, a full
  disk), and any other exception, which is a bug of ours or of a library: its type, its first line and
  how to see the traceback;
* 130 stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM (a scheduler's preemption): 128 + the signal.

``JSONARGPARSE_DEBUG=true`` (jsonargparse's own switch) shows tracebacks instead of one-line errors.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from lightning.pytorch.utilities.exceptions import SIGTERMException

from spe_lightning.core.errors import InputError, RunFailure, summarize

EXIT_FAILED, EXIT_INPUT = 1, 2
DEBUG_VARIABLE = "JSONARGPARSE_DEBUG"
TRACEBACK_HINT = f"{DEBUG_VARIABLE}=true shows the traceback"


def debug() -> bool:
    """``JSONARGPARSE_DEBUG=true`` shows tracebacks instead of one-line errors (jsonargparse's own switch)."""
    return os.environ.get(DEBUG_VARIABLE, "").lower() == "true"


class StopSignal:
    """SIGINT ends a run the way SIGTERM does: after the current batch, with a checkpoint, resumable.

    Lightning stops at the next batch boundary on SIGTERM (``SIGTERMException``); while its handler is
    installed, a first Ctrl-C is forwarded to it and remembered, so the exit code still says SIGINT. A
    second Ctrl-C, or one outside a running trainer, interrupts at once.
    """

    received: int | None = None
    resume_command: str | None = None
    """The command that continues the interrupted run (fit only), printed when a signal stops it."""

    @classmethod
    @contextmanager
    def forwarding(cls, resume_command: str | None) -> Iterator[None]:
        cls.received, cls.resume_command = None, resume_command
        if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
            yield
            return
        previous = signal.signal(signal.SIGINT, cls._on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @classmethod
    def _on_sigint(cls, signum: int, frame: FrameType | None) -> None:
        handler = signal.getsignal(signal.SIGTERM)
        first = cls.received is None
        cls.received = signal.SIGINT
        if not first or not callable(handler):
            raise KeyboardInterrupt
        handler(signal.SIGTERM, frame)

    @classmethod
    def exit_code(cls) -> int:
        return 128 + (cls.received or signal.SIGTERM)


def failure_line(err: BaseException) -> tuple[str, int]:
    """The one line and the exit code of an exception that ended a command."""
    if isinstance(err, InputError):
        return summarize(err), EXIT_INPUT
    if isinstance(err, RunFailure):
        return summarize(err), EXIT_FAILED
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:  # a log or output file, mid-run
        where = f" writing {err.filename}" if err.filename else ""
        return (
            f"no space left on the device{where}; checkpoints already written are intact (each is "
            "replaced atomically): free space, then continue with --ckpt_path last"
        ), EXIT_FAILED
    return f"{summarize(err, with_type=True)} ({TRACEBACK_HINT})", EXIT_FAILED


@contextmanager
def exit_policy() -> Iterator[None]:
    """End a failed command with ``error: <one line>`` and its exit code, never a traceback (unless debug)."""
    StopSignal.received = StopSignal.resume_command = None
    try:
        yield
    except (SIGTERMException, KeyboardInterrupt, SystemExit) as err:
        if isinstance(err, SystemExit) and not (isinstance(err, SIGTERMException) or StopSignal.received):
            raise  # the parser's own exits (--help, its one-line errors) and sys.exit calls
        code = 130 if isinstance(err, KeyboardInterrupt) else StopSignal.exit_code()
        name = signal.Signals(code - 128).name
        hint = f"; continue with: {StopSignal.resume_command}" if StopSignal.resume_command else ""
        print(f"stopped by {name}{hint}", file=sys.stderr)
        sys.exit(code)
    except Exception as err:
        if debug():
            raise
        message, code = failure_line(err)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(code)
