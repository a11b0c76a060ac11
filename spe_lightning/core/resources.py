"""What the machine has: memory, read the way a container limits it, and sizes written for people.

Checks compare a value's cost with these figures before the first allocation, so that a setting that
cannot fit is an error naming the setting, not an allocation failure deep inside a library.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
"""Where cgroup v2 and v1 state a container's memory limit."""


def host_memory() -> int:
    """Bytes of memory this process may use: the machine's RAM, or a container's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def readable_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KiB``: a size as people read it."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(count) < 1024 or unit == "PiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} PiB"
