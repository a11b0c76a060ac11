"""The exception types that say where a failure came from, and the one-line summary of any exception.

Every layer raises these (they need nothing beyond the standard library); the command line's exit policy
(:mod:`spe_lightning.cli.exit_policy`) turns them into exit codes: :class:`InputError` is the user's to
fix (exit 2), :class:`RunFailure` a run that started and could not go on (exit 1).
"""

from __future__ import annotations


class InputError(ValueError):
    """A value, file or folder the user can fix, found before any work is done. Exit status 2.

    A ``ValueError``, so Python callers that catch ``ValueError`` around a constructor keep working.
    """

    exit_code = 2


class MissingInput(InputError, FileNotFoundError):
    """A configured file or folder that does not exist (still a ``FileNotFoundError`` for Python callers)."""


class RunFailure(RuntimeError):
    """A run that started and could not go on (a full disk, say); its message says what is kept. Exit status
    1, as any other failure while working (a rank that died, a bug)."""

    exit_code = 1


WORKER_TRACEBACK = "Original Traceback"
"""How a DataLoader worker's error carries the worker's traceback inside its message."""


def summarize(err: BaseException, with_type: bool = False) -> str:
    """``err``'s message as one line: its first line, or, for an error re-raised from a DataLoader worker
    (whose text holds the worker's traceback), the original error's own last line. ``with_type`` prefixes
    the exception's type name (``OSError: ...``); an empty message is the type name alone."""
    text = str(err)
    if WORKER_TRACEBACK in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = lines[-1].split(": ", 1)[-1] if lines else ""
    else:
        text = text.strip().split("\n", 1)[0]
    text = " ".join(text.split())
    if not text:
        return type(err).__name__
    return f"{type(err).__name__}: {text}" if with_type else text
