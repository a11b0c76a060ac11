"""How a command ends: one error type for bad input, one exit code per kind of ending, one line on stderr.

Exit codes (the only place they are chosen):

* 0 finished; 2 bad input (:class:`InputError`, or a value the parser or a constructor rejected);
* 1 a failure while running: a non-finite loss, a full disk, unreadable data met mid-run, a bug;
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

EXIT_FAILED, EXIT_INPUT = 1, 2
TRACEBACK_HINT = "JSONARGPARSE_DEBUG=true shows the traceback"


class InputError(ValueError):
    """Bad input found before a run starts: a value, file or folder the user can fix. Exit status 2."""


class MissingInput(InputError, FileNotFoundError):
    """A configured file or folder that does not exist (still a ``FileNotFoundError`` for Python callers)."""


class RunFailure(RuntimeError):
    """A run that started and could not go on (a full disk, say); its message says what is kept."""


def debug() -> bool:
    """``JSONARGPARSE_DEBUG=true`` shows tracebacks instead of one-line errors (jsonargparse's own switch)."""
    return os.environ.get("JSONARGPARSE_DEBUG", "").lower() == "true"


def one_line(text: str) -> str:
    """A message as one line. An error re-raised from a DataLoader worker carries the worker's traceback in
    its text: keep the original error's own last line (``SomeError: message``) instead."""
    if "Original Traceback" in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = lines[-1].split(": ", 1)[-1] if lines else text
    return " ".join(text.split())


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


@contextmanager
def one_line_errors() -> Iterator[None]:
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
        if isinstance(err, InputError):
            message, code = one_line(str(err)), EXIT_INPUT
        elif isinstance(err, RunFailure):
            message, code = one_line(str(err)), EXIT_FAILED
        elif isinstance(err, OSError) and err.errno == errno.ENOSPC:  # a log or output file, mid-run
            where = f" writing {err.filename}" if err.filename else ""
            message = (
                f"no space left on the device{where}; checkpoints already written are intact (each is "
                "replaced atomically): free space, then continue with --ckpt_path last"
            )
            code = EXIT_FAILED
        else:  # unexpected: its type, its first line, and how to see the rest
            text = str(err)
            first = one_line(text) if "Original Traceback" in text else text.strip().split("\n")[0]
            message, code = f"{type(err).__name__}: {first.strip()} ({TRACEBACK_HINT})", EXIT_FAILED
        print(f"error: {message or type(err).__name__}", file=sys.stderr)
        sys.exit(code)
