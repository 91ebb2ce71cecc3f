"""The standard vs separable sweep: the grid, the record arithmetic, and Ctrl-C keeping finished records."""

from __future__ import annotations

from fractions import Fraction

import pytest
from bench_fakes import FakeMeasure

from mbcost.bench.devices import resolve_device
from mbcost.bench.model_bench import BenchSettings
from mbcost.bench.store import RecordWriter, load_records
from mbcost.bench.sweep import ConvPoint, grid, parse_int_list, run_sweep
from mbcost.bench.timer import Budget
from mbcost.errors import SpecError

TINY = Budget(min_run_time=0.001, max_run_time=0.01, min_runs=3, warmup=1)


@pytest.fixture(scope="module")
def settings():
    return BenchSettings(resolve_device("cpu"), threads=1, budget=TINY).validated()


def test_parse_int_list():
    assert parse_int_list("32, 64,,128", "--channels") == [32, 64, 128]
    for bad in ("", "a", "0", "3,-1"):
        with pytest.raises(SpecError, match="--channels"):
            parse_int_list(bad, "--channels")


def test_grid_is_every_combination():
    points = grid([16, 32], [3, 5], [7, 14, 28])
    assert len(points) == 12
    assert points[0] == ConvPoint(16, 16, 3, (7, 7))
    with pytest.raises(SpecError, match="does not fit"):
        grid([8], [6], [1])  # padding (6-1)//2 = 2: 1 + 2*2 < 6


def test_sweep_records_hold_the_exact_and_formula_ratios(settings):
    # standard calls take 4 ms, separable 1 ms: measured speed-up 4x
    fake = FakeMeasure(times_for=lambda i: (0.004,) * 5 if i % 2 else (0.001,) * 5)
    records = run_sweep(grid([16], [3, 5], [8]), settings, measure_fn=fake)
    assert [r.k for r in records] == [3, 5]
    r = records[0]
    assert r.measured_speedup == pytest.approx(4.0)
    assert (r.standard_ms, r.separable_ms, r.median_ms) == pytest.approx((4.0, 1.0, 1.0))
    # M = N = 16, K = 3, 8x8: standard 3*3*16*16*64, separable (3*3*16 + 16*16)*64
    assert r.standard_macs == 3 * 3 * 16 * 16 * 64
    assert r.separable_macs == (3 * 3 * 16 + 16 * 16) * 64
    assert r.macs_ratio == pytest.approx(float(Fraction(r.separable_macs, r.standard_macs)))
    assert r.formula_ratio == pytest.approx(1 / 16 + 1 / 9)
    assert r.macs_ratio == pytest.approx(r.formula_ratio)  # stride 1, same padding: exact agreement
    assert r.to_dict()["size"] == [8, 8]


def test_ctrl_c_keeps_the_finished_records(tmp_path, settings):
    path = tmp_path / "sweep.jsonl"
    fake = FakeMeasure(interrupt_at=6, run_fn=False)  # 2 measurements per point: points 1 and 2 finish
    with pytest.raises(KeyboardInterrupt):
        with RecordWriter(path) as out:
            run_sweep(grid([8, 16, 32], [3], [8]), settings, measure_fn=fake, on_record=out.write)
    saved = load_records(path)
    assert [r["cin"] for r in saved] == [8, 16]
    assert all(r["kind"] == "conv" for r in saved)


def test_progress_is_reported(settings):
    seen = []
    run_sweep(grid([8], [3], [8, 9]), settings, measure_fn=FakeMeasure(run_fn=False),
              progress=lambda done, total, what: seen.append((done, total)))
    assert seen == [(0, 2), (1, 2), (2, 2)]
