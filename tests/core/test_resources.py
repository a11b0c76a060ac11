"""What the machine has, read the way a container limits it, and sizes written for people."""

from __future__ import annotations

import os

from spe_lightning.core import resources
from spe_lightning.core.resources import host_memory, readable_bytes


def test_sizes_read_as_people_read_them():
    sizes = [readable_bytes(n) for n in (512, 1536, 3 * 2**30, 2**60)]
    assert sizes == ["512 B", "1.5 KiB", "3.0 GiB", "1024.0 PiB"]


def test_a_container_limit_below_the_machine_is_what_a_process_may_use(tmp_path, monkeypatch):
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit, unlimited = tmp_path / "memory.max", tmp_path / "v1_limit"
    limit.write_text(f"{2**30}\n")
    unlimited.write_text("max\n")
    monkeypatch.setattr(resources, "CGROUP_LIMITS", (limit, unlimited))
    assert host_memory() == min(physical, 2**30)
    monkeypatch.setattr(resources, "CGROUP_LIMITS", (unlimited, tmp_path / "absent"))
    assert host_memory() == physical
