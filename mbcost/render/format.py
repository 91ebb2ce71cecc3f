"""Number formatting for humans. Raw results stay exact; only rendering rounds."""

from __future__ import annotations

import math


def count(n: int | float | None, digits: int = 2) -> str:
    """``568740352`` -> ``568.74 M``; ``15470264320`` -> ``15.47 G``."""
    if n is None:
        return "-"
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.{digits}f} {unit}"
    return f"{n:g}" if isinstance(n, float) else str(n)


def exact(n: int) -> str:
    """Thousands-separated exact integer."""
    return f"{n:,}"


def nbytes(n: int | float | None) -> str:
    """Decimal units (1 MB = 10^6 bytes)."""
    if n is None:
        return "-"
    for scale, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def ratio(r: float | None) -> str:
    """The papers' phrasing: ``0.0306`` -> ``1/32.7``; ``32.7`` -> ``32.7x``; 1 -> ``1x``."""
    if r is None or not math.isfinite(r) or r <= 0:
        return "-"
    if abs(r - 1) < 5e-4:
        return "1x"
    return f"1/{1 / r:.1f}" if r < 1 else f"{r:.1f}x"


def percent(part: float, whole: float, digits: int = 1) -> str:
    return "-" if not whole else f"{100 * part / whole:.{digits}f}%"


def milliseconds(s: float | None, digits: int = 2) -> str:
    return "-" if s is None else f"{s * 1e3:.{digits}f} ms"
