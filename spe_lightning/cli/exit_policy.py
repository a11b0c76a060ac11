"""How every command ends: one exit code per kind of ending, and one line on stderr, never a traceback.

Exit codes, by where a failure came from (each error type carries its code, ``exit_code``, in
:mod:`spe_lightning.core.errors`; a rank that ends itself uses the same):

* 0 finished;
* 2 bad input: an :class:`~spe_lightning.core.errors.InputError` (a value, file or folder the user can fix,
  found before work starts) or a value the parser rejected (jsonargparse's own one-line exit);
* 1 a failure while working: a :class:`~spe_lightning.core.errors.RunFailure` (a non-finite loss, a full
  disk), and any other exception, which is a bug of ours or of a library: its type, its first line and
  how to see the traceback;
* 130 stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM (a scheduler's preemption): 128 + the signal;
  141 (SIGPIPE), quietly, when the reader of its output left (``... | head``).

``JSONARGPARSE_DEBUG=true`` (jsonargparse's own switch) shows tracebacks instead of one-line errors.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from spe_lightning.core.errors import InputError, RunFailure, summarize
from spe_lightning.core.signals import StopRequest

EXIT_FAILED, EXIT_INPUT = RunFailure.exit_code, InputError.exit_code
DEBUG_VARIABLE = "JSONARGPARSE_DEBUG"
TRACEBACK_HINT = f"{DEBUG_VARIABLE}=true shows the traceback"


def debug() -> bool:
    """``JSONARGPARSE_DEBUG=true`` shows tracebacks instead of one-line errors (jsonargparse's own switch)."""
    return os.environ.get(DEBUG_VARIABLE, "").lower() == "true"


class ResumeHint:
    """The command that continues the run a signal stopped (fit only), printed with the stop."""

    command: str | None = None


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
    """End a failed command with ``error: <one line>`` and its exit code, never a traceback (unless debug);
    a command stopped by a signal with ``stopped by <signal>`` and 128 + the signal (see
    :mod:`spe_lightning.core.signals`), printed by rank 0 only."""
    ResumeHint.command = None
    with StopRequest.listening():
        try:
            yield
            sys.stdout.flush()  # a closed pipe shows here, inside the policy, not in Python's flush at exit
        except (SIGTERMException, KeyboardInterrupt, SystemExit) as err:
            signalled = isinstance(err, (SIGTERMException, KeyboardInterrupt)) or StopRequest.received
            if isinstance(err, SystemExit) and not signalled:
                raise  # the parser's own exits (--help, its one-line errors) and sys.exit calls
            default = signal.SIGINT if isinstance(err, KeyboardInterrupt) else signal.SIGTERM
            code = StopRequest.exit_code(default)
            if rank_zero_only.rank == 0:
                hint = f"; continue with: {ResumeHint.command}" if ResumeHint.command else ""
                print(f"stopped by {signal.Signals(code - 128).name}{hint}", file=sys.stderr)
            sys.exit(code)
        except BrokenPipeError:  # the reader of stdout left (``| head``): stop quietly, as a shell tool does
            # stdout to nowhere: Python's flush at exit would fail on the closed pipe again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)
        except Exception as err:
            if debug():
                raise
            message, code = failure_line(err)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(code)


class OneLineArgumentParser(argparse.ArgumentParser):
    """The standard library's parser (for scripts that run where jsonargparse is missing), its errors one
    line on stderr, exit 2, as every command's."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"error: {' '.join(message.split())}\n")
