"""Timing: a thin wrapper over ``torch.utils.benchmark.Timer`` (``measure``) and the statistics of its
samples (``summarize``, a pure function tested with synthetic samples).

The clock is injectable (``clock=``): tests drive the whole path with a seeded fake clock that
the measured function itself advances, so no test depends on real time.
"""

from __future__ import annotations

import math
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_BUDGET", "QUICK_BUDGET", "WIDE_SPREAD", "Budget", "Clock", "MeasureFn", "Measurement", "Stats",
    "benchmark_timer", "device_clock", "measure", "quantile", "summarize",
]

Clock = Callable[[], float]

#: A measurement whose IQR is above this fraction of its median is flagged ``wide_spread``.
#: ``torch.utils.benchmark`` warns at the same level ("could indicate system fluctuation").
WIDE_SPREAD = 0.10


@dataclass(frozen=True)
class Stats:
    """Order statistics of per-call times, in seconds. Quantiles interpolate linearly
    (the rule of ``numpy.quantile`` and ``torch.quantile``)."""

    median: float
    p25: float
    p75: float
    mean: float
    minimum: float
    maximum: float
    runs: int
    threshold: float = WIDE_SPREAD

    @property
    def iqr(self) -> float:
        return self.p75 - self.p25

    @property
    def relative_iqr(self) -> float:
        """IQR / median (``inf`` for a zero median)."""
        return self.iqr / self.median if self.median > 0 else math.inf

    @property
    def wide_spread(self) -> bool:
        """True when the IQR exceeds ``threshold`` times the median: the figure is shown, but flagged."""
        return self.relative_iqr > self.threshold


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, linear interpolation between ranks.

    Example:
        >>> quantile([1.0, 2.0, 3.0, 4.0], 0.25)
        1.75
    """
    if not sorted_values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1] (got {q})")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def summarize(times: Sequence[float], threshold: float = WIDE_SPREAD) -> Stats:
    """Statistics of per-call times (seconds).

    Args:
        times: one per-call time per timed run (a run may have averaged a block of calls).
        threshold: IQR / median above which the result is flagged as a wide spread.

    Returns:
        ``Stats`` with median, quartiles, mean, extremes and the number of runs.

    Example:
        >>> s = summarize([0.010, 0.011, 0.012, 0.013])
        >>> round(s.median, 4), s.runs, s.wide_spread
        (0.0115, 4, False)
    """
    if not times:
        raise ValueError("no timed runs to summarize")
    if any(not math.isfinite(t) or t < 0 for t in times):
        raise ValueError("times must be finite and non-negative")
    s = sorted(float(t) for t in times)
    return Stats(median=quantile(s, 0.5), p25=quantile(s, 0.25), p75=quantile(s, 0.75), mean=sum(s) / len(s),
                 minimum=s[0], maximum=s[-1], runs=len(s), threshold=threshold)


@dataclass(frozen=True)
class Budget:
    """How long to measure one thing.

    ``warmup`` untimed calls come first (the fastest gives a rough per-call time). The timed loop
    then runs for at least ``max(min_run_time, min_runs x that rough time)`` seconds and stops as
    soon as the spread is below ``threshold`` or ``max_run_time`` is spent (raised to fit
    ``min_runs`` for a slow module); fewer than ``min_runs`` runs (calls that slowed down after the
    warm-up) are topped up with runs of the same size.
    """

    min_run_time: float = 3.0
    max_run_time: float = 10.0
    threshold: float = WIDE_SPREAD
    min_runs: int = 5
    warmup: int = 2

    def __post_init__(self) -> None:
        if self.min_run_time <= 0 or self.max_run_time < self.min_run_time:
            raise ValueError("need 0 < min_run_time <= max_run_time")
        if self.min_runs < 1 or self.warmup < 1:
            raise ValueError("min_runs and warmup must be >= 1")


#: ``mbcost bench`` default: 3 to 10 seconds of timed runs per configuration. On a VM whose speed
#: drifts by +/-10 % from one second to the next, a 1-second window snapshots the drift; three
#: seconds or more average it out (two runs of v2 agree within a few per cent).
DEFAULT_BUDGET = Budget()
#: ``mbcost compare`` and ``conv --bench``: a short look (VGG16 at 224 on 2 cores: ~6 s).
QUICK_BUDGET = Budget(min_run_time=0.2, max_run_time=1.5, min_runs=4, warmup=1)


@dataclass(frozen=True)
class Measurement:
    """Raw per-call times (seconds) of one timed function, and their statistics."""

    times: tuple[float, ...]
    number_per_run: int
    threshold: float = WIDE_SPREAD
    stats: Stats = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stats", summarize(self.times, self.threshold))

    @property
    def median(self) -> float:
        return self.stats.median

    @property
    def iqr(self) -> float:
        return self.stats.iqr

    @property
    def runs(self) -> int:
        return self.stats.runs

    @property
    def wide_spread(self) -> bool:
        return self.stats.wide_spread

    @property
    def median_ms(self) -> float:
        return self.stats.median * 1e3

    @property
    def iqr_ms(self) -> float:
        return self.stats.iqr * 1e3

    @property
    def times_ms(self) -> list[float]:
        return [t * 1e3 for t in self.times]


#: The measuring function's signature, so callers (sweep, roofline, CLI tests) can inject another.
MeasureFn = Callable[..., Measurement]


def device_clock(device_type: str) -> Clock:
    """A wall clock that first waits for the device: ``cuda`` synchronises before reading it.

    Synchronising only at block boundaries (``Timer`` sizes blocks so that this overhead is
    below 0.01 % of the block) measures what the GPU did, not how fast kernels were queued.
    """
    if device_type == "cuda":
        import torch

        def cuda_clock() -> float:
            torch.cuda.synchronize()
            return timeit.default_timer()

        return cuda_clock
    return timeit.default_timer


def benchmark_timer() -> type:
    """``torch.utils.benchmark.Timer``, imported with ``torch.utils.cpp_extension``'s logger quieted (its import
    logs a CUDA_HOME warning on CUDA builds without a GPU; nothing about mbcost's measurement)."""
    import logging
    import sys

    if "torch.utils.benchmark" not in sys.modules:
        noisy = logging.getLogger("torch.utils.cpp_extension")
        level = noisy.level
        noisy.setLevel(logging.ERROR)
        try:
            import torch.utils.benchmark  # noqa: F401
        finally:
            noisy.setLevel(level)
    from torch.utils.benchmark import Timer

    return Timer


def measure(fn: Callable[[], Any], budget: Budget = DEFAULT_BUDGET, *, threads: int | None = None,
            device_type: str = "cpu", clock: Clock | None = None) -> Measurement:
    """Time ``fn()`` with ``torch.utils.benchmark.Timer.adaptive_autorange``.

    Args:
        fn: the call to time (a model's forward pass on a prepared input, a matmul...). Run it
            under ``torch.inference_mode`` yourself if it should be.
        budget: warm-up calls and the time budget.
        threads: intra-op threads during the measurement (``Timer`` sets and restores them;
            default: the current ``torch.get_num_threads()``).
        device_type: ``"cpu"`` or ``"cuda"`` (picks the synchronising clock).
        clock: a clock in seconds replacing the real one (tests pass a seeded fake).

    Example:
        >>> m = measure(lambda: sum(range(1000)), Budget(min_run_time=0.05, max_run_time=0.2))
        >>> m.runs >= 5
        True
    """
    import torch

    Timer = benchmark_timer()
    clock = clock or device_clock(device_type)
    threads = threads or torch.get_num_threads()
    warm = []
    for _ in range(budget.warmup):
        start = clock()
        fn()
        warm.append(clock() - start)
    rough = max(min(warm), 0.0)  # the first call may include compilation or autotuning
    min_run_time = max(budget.min_run_time, budget.min_runs * rough)
    max_run_time = max(budget.max_run_time, 1.5 * min_run_time)
    timer = Timer(stmt="fn()", globals={"fn": fn}, timer=clock, num_threads=threads)
    m = timer.adaptive_autorange(threshold=budget.threshold, min_run_time=min_run_time, max_run_time=max_run_time)
    times = [float(t) for t in m.times]
    while len(times) < budget.min_runs:  # calls slowed after the warm-up (a load spike) spent the budget early
        times.append(float(timer.timeit(m.number_per_run).times[0]))
    return Measurement(times=tuple(times), number_per_run=int(m.number_per_run), threshold=budget.threshold)
