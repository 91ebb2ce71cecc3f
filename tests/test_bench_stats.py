"""Statistics of timed runs and the timer wrapper, driven by synthetic samples and a seeded fake clock."""

from __future__ import annotations

import math

import pytest
import torch
from bench_fakes import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

from mbcost.bench.timer import Budget, Measurement, measure, quantile, summarize


def test_quantiles_interpolate_linearly():
    s = summarize([4.0, 1.0, 3.0, 2.0])  # sorted 1 2 3 4: positions 0.75, 1.5, 2.25
    assert s.median == 2.5
    assert s.p25 == 1.75
    assert s.p75 == 3.25
    assert s.iqr == 1.5
    assert (s.minimum, s.maximum, s.runs, s.mean) == (1.0, 4.0, 4, 2.5)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=10.0), min_size=1, max_size=40))
def test_summary_matches_torch_quantile(times):
    s = summarize(times)
    t = torch.tensor(times, dtype=torch.float64)
    assert s.median == pytest.approx(t.quantile(0.5).item(), rel=1e-9, abs=1e-12)
    assert s.p25 == pytest.approx(t.quantile(0.25).item(), rel=1e-9, abs=1e-12)
    assert s.p75 == pytest.approx(t.quantile(0.75).item(), rel=1e-9, abs=1e-12)
    assert s.p25 <= s.median <= s.p75


def test_single_run_has_zero_spread():
    s = summarize([0.02])
    assert (s.median, s.iqr, s.runs, s.wide_spread) == (0.02, 0.0, 1, False)


def test_wide_spread_flag_uses_iqr_over_median():
    tight = summarize([0.100, 0.101, 0.102, 0.103, 0.104])  # IQR 0.002 / median 0.102: 2%
    wide = summarize([0.100, 0.120, 0.140, 0.160, 0.180])  # IQR 0.04 / 0.14: 29%
    assert not tight.wide_spread
    assert wide.wide_spread
    assert wide.relative_iqr == pytest.approx(0.04 / 0.14)
    assert summarize([0.100, 0.120, 0.140, 0.160, 0.180], threshold=0.5).wide_spread is False


@pytest.mark.parametrize("times", [[0.096, 0.0975, 0.100, 0.1065, 0.110],  # IQR 0.009 / median 0.100: 9%
                                   [0.094, 0.0955, 0.100, 0.1065, 0.110]])  # IQR 0.011 / 0.100: 11%
def test_the_default_threshold_is_torch_benchmarks(times):
    """The flag agrees with torch.utils.benchmark's own Measurement (it warns when IQR / median is not below 10%)."""
    from torch.utils.benchmark import Measurement as TorchMeasurement

    theirs = TorchMeasurement(number_per_run=1, raw_times=times, task_spec=_task_spec())
    assert summarize(times).wide_spread is (not theirs.meets_confidence())


def _task_spec():  # noqa: ANN202
    from torch.utils.benchmark.utils.common import TaskSpec

    return TaskSpec(stmt="pass", setup="pass")


def test_zero_median_is_flagged_not_divided_by_zero():
    s = summarize([0.0, 0.0, 0.0])
    assert math.isinf(s.relative_iqr)
    assert s.wide_spread


@pytest.mark.parametrize("bad", [[], [-1.0], [float("nan")], [float("inf")]])
def test_bad_samples_are_refused(bad):
    with pytest.raises(ValueError):
        summarize(bad)


def test_quantile_bounds():
    with pytest.raises(ValueError):
        quantile([1.0], 1.5)
    assert quantile([1.0, 3.0], 1.0) == 3.0


def test_measurement_derives_milliseconds_from_raw_times():
    m = Measurement(times=(0.010, 0.012, 0.011), number_per_run=4)
    assert m.median_ms == pytest.approx(11.0)
    assert m.iqr_ms == pytest.approx(1.0)  # p25 10.5, p75 11.5
    assert m.runs == 3
    assert m.times_ms == pytest.approx([10.0, 12.0, 11.0])


def test_budget_refuses_nonsense():
    with pytest.raises(ValueError):
        Budget(min_run_time=0)
    with pytest.raises(ValueError):
        Budget(min_run_time=2, max_run_time=1)


# -- the Timer wrapper with a fake clock: no real time is read -------------------------------------


def test_fake_clock_measurement_is_deterministic_and_centred():
    budget = Budget(min_run_time=0.5, max_run_time=2.0)
    a_clock, b_clock = FakeClock(seed=1), FakeClock(seed=1)
    a = measure(a_clock.work, budget, clock=a_clock)
    b = measure(b_clock.work, budget, clock=b_clock)
    assert a.times == b.times  # same seed, same samples
    assert a.median == pytest.approx(0.010, rel=0.02)  # the fake's mean per call
    assert not a.wide_spread
    assert a.runs >= 4
    assert sum(a.times) * a.number_per_run >= 0.5 - 1e-9  # ran at least min_run_time of fake time


def test_noisy_fake_is_flagged_and_stops_at_the_budget():
    clock = FakeClock(mean=0.010, noise=0.6, seed=3)
    budget = Budget(min_run_time=0.2, max_run_time=1.0, min_runs=5)
    m = measure(clock.work, budget, clock=clock)
    assert m.wide_spread
    timed = sum(m.times) * m.number_per_run
    assert timed <= 1.0 + 3 * 0.010 * m.number_per_run  # one block past the limit at most


def test_slow_function_still_gets_min_runs():
    clock = FakeClock(mean=1.0, noise=0.001, seed=0)  # "one second" per call; budget would allow one
    m = measure(clock.work, Budget(min_run_time=0.1, max_run_time=0.5, min_runs=5, warmup=1), clock=clock)
    assert m.runs >= 5
    assert m.number_per_run == 1
    assert m.median == pytest.approx(1.0, rel=0.01)


def test_measure_restores_thread_count():
    before = torch.get_num_threads()
    clock = FakeClock()
    measure(clock.work, Budget(min_run_time=0.05, max_run_time=0.1), clock=clock, threads=1)
    assert torch.get_num_threads() == before


def test_a_slow_first_call_does_not_inflate_the_budget():
    clock = FakeClock(mean=0.010, noise=0.01, seed=2)
    first = [True]

    def work() -> None:  # the first call "compiles" for 100 s
        if first[0]:
            clock.now += 100.0
            first[0] = False
        clock.work()

    m = measure(work, Budget(min_run_time=0.5, max_run_time=2.0, warmup=2), clock=clock)
    assert m.median == pytest.approx(0.010, rel=0.05)
    assert sum(m.times) * m.number_per_run <= 2.0 + 0.1  # the budget is judged on the fast calls


def test_a_load_spike_after_the_warm_up_still_gets_min_runs():
    """The warm-up call is fast, every later one slow (a shared VM's spike): the budget, sized from the warm-up,
    is spent after a run or two; ``min_runs`` is still honoured (the runs a tiny budget got under load: 2 of 3)."""
    clock = FakeClock(mean=0.001, noise=0.001, seed=0)
    calls = [0]

    def work() -> None:
        calls[0] += 1
        clock.mean = 0.001 if calls[0] == 1 else 1.0  # 1 ms warm-up, then 1 s per call
        clock.work()

    m = measure(work, Budget(min_run_time=0.005, max_run_time=0.02, min_runs=3, warmup=1), clock=clock)
    assert m.runs >= 3
    assert m.median == pytest.approx(1.0, rel=0.01)
