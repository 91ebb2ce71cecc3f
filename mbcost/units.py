"""Number formatting for humans (a leaf module: no torch, no mbcost imports, so every layer may use it).

Raw results stay exact; only rendering and one-line messages round."""

from __future__ import annotations

import math

__all__ = [
    "count", "exact", "ms", "nbytes", "number", "percent", "ratio", "share", "speed", "speed_change", "speed_range",
]


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


def ms(value: float | None, digits: int = 3) -> str:
    """Milliseconds with sensible precision: ``21.7 ms``, ``0.412 ms``, ``12.3 us``."""
    if value is None or not math.isfinite(value):
        return "-"
    if value >= 100:
        return f"{value:.1f} ms"
    if value >= 1:
        return f"{value:.2f} ms"
    if value >= 0.01:
        return f"{value:.{digits}f} ms"
    return f"{value * 1e3:.1f} us"


def speed(value: float | None) -> str:
    """A speed-up factor: ``8.47`` -> ``8.47x``."""
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def speed_change(value: float | None) -> str:
    """A measured speed-up factor (old time / new time) in words, a slowdown as one:
    ``2.49`` -> ``2.49x faster``; ``0.72`` -> ``1.39x slower`` (never ``0.72x faster``)."""
    if value is None or not math.isfinite(value) or value <= 0:
        return "-"
    return f"{value:.2f}x faster" if value >= 1 else f"{1 / value:.2f}x slower"


def speed_range(lo: float, hi: float) -> str:
    """The range of measured speed-up factors ``lo <= hi`` in words, slowdowns as slowdowns:
    ``(1.24, 6.19)`` -> ``1.24x to 6.19x faster``; ``(0.43, 0.72)`` -> ``1.39x to 2.33x slower``;
    ``(0.72, 2.49)`` -> ``from 1.39x slower to 2.49x faster``."""
    if lo >= 1:
        return f"{lo:.2f}x to {hi:.2f}x faster"
    if hi < 1:
        return f"{1 / hi:.2f}x to {1 / lo:.2f}x slower"
    return f"from {speed_change(lo)} to {speed_change(hi)}"


def share(value: float | None) -> str:
    """A fraction as a percentage: ``0.123`` -> ``12.3%``."""
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def number(value: float | None, digits: int = 1) -> str:
    """A measured float with thousands separators: ``1234.5`` -> ``1,234.5``."""
    return "-" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"
