"""Facts about this machine that several layers need (a leaf module: no torch, no mbcost imports)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MEMORY_HEADROOM", "available_cpu_memory"]

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
