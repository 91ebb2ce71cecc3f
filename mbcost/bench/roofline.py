"""The roofline: a device's attainable compute and memory bandwidth, and where a layer sits under them.

A layer doing ``W`` operations on ``B`` bytes (arithmetic intensity ``I = W / B``) cannot run
faster than ``max(W / peak_compute, B / peak_bandwidth)``; equivalently its rate is bounded by
``min(peak_compute, I x peak_bandwidth)``. Depthwise convolutions have an intensity of a few
FLOP/byte, far left of the ridge point, so their bound is the memory bandwidth: that is why their
8-9x fewer MACs buy much less time.

The peaks are measured, not taken from a datasheet: compute as the rate of a large ``n x n``
matmul in the chosen dtype (``2 n^3`` FLOPs), bandwidth as a large tensor copy (bytes read +
bytes written), median of timed runs. They are cached per device, dtype, thread count and torch
version in ``$XDG_CACHE_HOME/mbcost/roofline.json`` (default ``~/.cache/mbcost``).

Caveat shown with the numbers: the bandwidth is main-memory bandwidth; a small layer whose data
stays in cache can beat it, so a bound fraction above 1 means "cache-resident", not an error.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mbcost.bench.devices import Device
from mbcost.bench.store import jsonable
from mbcost.bench.timer import Budget, MeasureFn, Measurement, measure
from mbcost.errors import UsageError
from mbcost.io import write_text_atomic

__all__ = [
    "Peaks", "bound_fraction", "cache_key", "cache_path", "default_sizes", "get_peaks", "measure_peaks", "peak_record",
    "ridge_point", "roofline_bound",
]

log = logging.getLogger(__name__)

PEAK_BUDGET = Budget(min_run_time=0.3, max_run_time=3.0, min_runs=5, warmup=2)
CACHE_VERSION = 1


@dataclass(frozen=True)
class Peaks:
    """Measured attainable compute (GFLOP/s, in ``dtype``) and memory bandwidth (GB/s, 10^9 B/s)."""

    device: str
    device_name: str
    dtype: str
    threads: int
    torch: str
    peak_gflops: float
    peak_gbps: float
    matmul_n: int
    copy_bytes: int
    matmul_ms: float
    matmul_iqr_ms: float
    matmul_runs: int
    copy_ms: float
    copy_iqr_ms: float
    copy_runs: int
    measured_at: str
    matmul_times_ms: tuple[float, ...] = ()
    copy_times_ms: tuple[float, ...] = ()
    cached: bool = False

    @property
    def ridge_point(self) -> float:
        """The intensity (FLOP/byte) where the compute and bandwidth roofs meet."""
        return ridge_point(self.peak_gflops, self.peak_gbps)

    def bound(self, intensity: float) -> float:
        return roofline_bound(intensity, self.peak_gflops, self.peak_gbps)


def roofline_bound(intensity: float, peak_gflops: float, peak_gbps: float) -> float:
    """Attainable GFLOP/s at ``intensity`` FLOP/byte: ``min(peak_gflops, intensity x peak_gbps)``.

    Example:
        >>> roofline_bound(2.0, peak_gflops=100.0, peak_gbps=20.0)   # memory-bound: 2 x 20
        40.0
        >>> roofline_bound(10.0, peak_gflops=100.0, peak_gbps=20.0)  # compute-bound
        100.0
    """
    if intensity < 0 or peak_gflops <= 0 or peak_gbps <= 0:
        raise ValueError("intensity must be >= 0 and peaks > 0")
    return min(peak_gflops, intensity * peak_gbps)


def ridge_point(peak_gflops: float, peak_gbps: float) -> float:
    """``peak_gflops / peak_gbps``: below this intensity a layer is memory-bound."""
    return peak_gflops / peak_gbps


def bound_fraction(achieved_gflops: float, bound_gflops: float) -> float | None:
    """``achieved / bound``; 1.0 means the layer runs at its roof. ``None`` without a bound."""
    if not bound_gflops or not math.isfinite(achieved_gflops):
        return None
    return achieved_gflops / bound_gflops


def cache_path() -> Path:
    """``$XDG_CACHE_HOME/mbcost/roofline.json`` (``~/.cache/mbcost/roofline.json`` by default)."""
    from mbcost.io import cache_dir

    return cache_dir("roofline.json")


def cache_key(device: Device, dtype: str, threads: int) -> str:
    import torch

    return f"{device.type}|{device.name}|{dtype}|threads={threads}|torch={torch.__version__}"


def _load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable roofline cache %s (%s)", path, exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    return data.get("peaks", {}) if isinstance(data.get("peaks"), dict) else {}


def default_sizes(device: Device) -> tuple[int, int]:
    """(matmul n, copy bytes): large enough to reach the roofs, small enough to stay quick.

    CPU: a 2048^3 matmul (17 GFLOP) and a 256 MiB copy (well past any last-level cache).
    CUDA: an 8192^3 matmul (1.1 TFLOP) and a 1 GiB copy.
    """
    if device.type == "cuda":
        return 8192, 1 << 30
    return 2048, 256 << 20


def measure_peaks(device: Device, dtype: str, threads: int, *, budget: Budget = PEAK_BUDGET,
                  measure_fn: MeasureFn | None = None, matmul_n: int | None = None,
                  copy_bytes: int | None = None) -> Peaks:
    """Measure the attainable compute and bandwidth of ``device`` in ``dtype`` (call inside
    ``devices.runtime`` so that the thread count applies)."""
    from datetime import datetime, timezone

    import torch

    n_default, bytes_default = default_sizes(device)
    n = matmul_n or n_default
    dev, tdtype = device.torch_device, getattr(torch, dtype)
    size = torch.empty((), dtype=tdtype).element_size()
    numel = max(1, (copy_bytes or bytes_default) // size)

    def timed(fn: Any) -> Measurement:
        return (measure_fn or measure)(fn, budget, threads=threads, device_type=device.type)

    def time_matmul() -> Measurement:
        a, b, c = (torch.randn(n, n, device=dev, dtype=tdtype) for _ in range(3))
        return timed(lambda: torch.mm(a, b, out=c))

    def time_copy() -> Measurement:
        src = torch.ones(numel, device=dev, dtype=tdtype)
        dst = torch.empty_like(src)
        return timed(lambda: dst.copy_(src))

    with torch.inference_mode():
        mm = time_matmul()
        cp = time_copy()
    copy_bytes_moved = 2 * numel * size  # read + write
    return Peaks(
        device=device.type, device_name=device.name, dtype=dtype, threads=threads, torch=torch.__version__,
        peak_gflops=2 * n**3 / mm.median / 1e9, peak_gbps=copy_bytes_moved / cp.median / 1e9,
        matmul_n=n, copy_bytes=copy_bytes_moved, matmul_ms=mm.median_ms, matmul_iqr_ms=mm.iqr_ms,
        matmul_runs=mm.runs, copy_ms=cp.median_ms, copy_iqr_ms=cp.iqr_ms, copy_runs=cp.runs,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        matmul_times_ms=tuple(mm.times_ms), copy_times_ms=tuple(cp.times_ms),
    )


def get_peaks(device: Device, dtype: str, threads: int, *, refresh: bool = False, path: Path | None = None,
              measure_fn: MeasureFn | None = None, budget: Budget = PEAK_BUDGET, matmul_n: int | None = None,
              copy_bytes: int | None = None) -> Peaks:
    """Cached peaks for (device, dtype, threads, torch version); measured and cached when missing.

    A cache that cannot be written is logged and ignored: the peaks are still returned.
    """
    path = path or cache_path()
    key = cache_key(device, dtype, threads)
    entries = _load_cache(path)
    if not refresh and key in entries:
        try:
            entry = {k: v for k, v in entries[key].items() if k != "cached"}
            for k in ("matmul_times_ms", "copy_times_ms"):
                entry[k] = tuple(entry.get(k, ()))
            return Peaks(**entry, cached=True)
        except TypeError:
            log.warning("ignoring a stale roofline cache entry for %s", key)
    peaks = measure_peaks(device, dtype, threads, measure_fn=measure_fn, budget=budget, matmul_n=matmul_n,
                          copy_bytes=copy_bytes)
    entries[key] = {k: v for k, v in asdict(peaks).items() if k != "cached"}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(jsonable({"version": CACHE_VERSION, "peaks": entries}), indent=2,
                                           sort_keys=True, allow_nan=False) + "\n")
    except (OSError, UsageError) as exc:
        log.warning("cannot write the roofline cache %s: %s", path, exc)
    return peaks


def peak_record(peaks: Peaks, config: Any, env: Any) -> Any:
    """The ``peak`` record of measured peaks (``median_ms`` is the matmul's)."""
    from mbcost.bench.records import PeakRecord, Record
    from mbcost.bench.timer import WIDE_SPREAD

    return PeakRecord(
        **Record.common(config, env), median_ms=peaks.matmul_ms, iqr_ms=peaks.matmul_iqr_ms, runs=peaks.matmul_runs,
        wide_spread=peaks.matmul_iqr_ms > WIDE_SPREAD * peaks.matmul_ms, times_ms=peaks.matmul_times_ms,
        peak_gflops=peaks.peak_gflops, peak_gbps=peaks.peak_gbps, matmul_n=peaks.matmul_n,
        copy_bytes=peaks.copy_bytes, copy_median_ms=peaks.copy_ms, copy_iqr_ms=peaks.copy_iqr_ms,
        cached=peaks.cached,
    )
