"""Facts about this machine that several layers need (a leaf module: no torch, no mbcost imports)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MEMORY_HEADROOM", "available_cpu_memory", "usable_cpus"]

#: Refuse a run whose memory estimate exceeds this fraction of the memory available.
MEMORY_HEADROOM = 0.9


def available_cpu_memory() -> int | None:
    """Bytes available for new allocations on this machine (``MemAvailable``), or ``None`` when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the platform has one, else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1
