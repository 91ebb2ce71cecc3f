"""Fakes for the measurement tests (tests/ is on sys.path): a seeded clock and a measuring function.

Nothing here reads real time, so no test that uses them can be flaky.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from mbcost.bench.timer import Budget, Measurement


class FakeClock:
    """A clock (seconds) that only moves when the timed function moves it.

    ``work()`` is the function to time: each call advances the clock by one draw from a seeded
    normal distribution (``mean`` seconds, relative spread ``noise``), never below zero.
    """

    def __init__(self, mean: float = 0.010, noise: float = 0.01, seed: int = 0) -> None:
        self.now = 0.0
        self.mean = mean
        self.noise = noise
        self.calls = 0
        self.rng = random.Random(seed)

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.calls += 1
        self.now += max(0.0, self.rng.gauss(self.mean, self.mean * self.noise))


class FakeMeasure:
    """Stands in for ``mbcost.bench.timer.measure`` (pass it as ``measure_fn=``, or to ``run(..., measure=)``
    for the CLI): calls ``fn`` once (so the code path runs) and returns
    ``times`` (or ``times_for(call_index)``); raises ``KeyboardInterrupt`` on call ``interrupt_at``."""

    def __init__(self, times: tuple[float, ...] = (0.010, 0.011, 0.012, 0.013, 0.010),
                 times_for: Callable[[int], tuple[float, ...]] | None = None, interrupt_at: int | None = None,
                 run_fn: bool = True) -> None:
        self.times = times
        self.times_for = times_for
        self.interrupt_at = interrupt_at
        self.run_fn = run_fn
        self.calls = 0

    def __call__(self, fn: Callable[[], Any], budget: Budget | None = None, **_kw: Any) -> Measurement:
        self.calls += 1
        if self.interrupt_at is not None and self.calls >= self.interrupt_at:
            raise KeyboardInterrupt
        if self.run_fn:
            fn()
        times = self.times_for(self.calls) if self.times_for else self.times
        return Measurement(times=tuple(times), number_per_run=1)


def run(*args: str, measure: Any = None):  # noqa: ANN201
    """The mbcost CLI in-process (``run("bench", "--models", "v2")``): a click Result. ``measure``
    (a ``FakeMeasure``) is what the measuring commands time with, given as the app's context object."""
    from typer.testing import CliRunner

    from mbcost.cli import app

    return CliRunner().invoke(app, list(args), obj=measure)


def one_line_error(result: Any, code: int = 2) -> str:
    """Assert ``result`` failed with ``code`` and one ``mbcost: error:`` line on stderr; return it."""
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mbcost: error: ")
    return lines[0]
