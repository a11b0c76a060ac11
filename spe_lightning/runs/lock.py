"""Who may write a run: the training process that holds its lock.

A run being trained is locked (``<run>/.lock``, an ``flock`` held by the training process, which the kernel
releases when that process dies): a second process on the same run fails at once, naming the holder.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from spe_lightning.core.errors import InputError

LOCK = ".lock"


class RunLock:
    """An exclusive ``flock`` on ``<run>/.lock``: held while a process trains the run, gone when it dies."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder, self.fd = folder, fd

    @classmethod
    def acquire(cls, folder: Path) -> RunLock:
        path = folder / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InputError(
                f"run {folder} is in use by {holder}; wait for it to finish or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        return cls(folder, fd)

    @staticmethod
    def held(folder: Path) -> bool:
        """Whether a live process holds the lock of ``folder`` (tested without taking it for long)."""
        path = folder / LOCK
        if not path.is_file():
            return False
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock this test took
        return False

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1
