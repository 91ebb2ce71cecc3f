"""Roofline arithmetic and the per-device peaks cache (a fake measuring function: no real timing)."""

from __future__ import annotations

import json
import logging

import pytest
from bench_fakes import FakeMeasure

from mbcost.bench.devices import Device
from mbcost.bench.roofline import (
    bound_fraction,
    cache_path,
    get_peaks,
    peak_record,
    ridge_point,
    roofline_bound,
)

CPU = Device("cpu", None, "Test CPU")


def test_bound_is_the_lower_roof():
    # peak 200 GFLOP/s, 20 GB/s: ridge at 10 FLOP/byte
    assert ridge_point(200.0, 20.0) == 10.0
    assert roofline_bound(2.25, 200.0, 20.0) == pytest.approx(45.0)  # depthwise-like: 2.25 x 20
    assert roofline_bound(10.0, 200.0, 20.0) == pytest.approx(200.0)  # at the ridge both roofs meet
    assert roofline_bound(50.0, 200.0, 20.0) == 200.0  # compute-bound
    assert roofline_bound(0.0, 200.0, 20.0) == 0.0


def test_bound_fraction_equals_bound_time_over_time():
    # a layer: 1e9 FLOPs moving 2e8 bytes (intensity 5) in 20 ms, on 200 GFLOP/s and 20 GB/s
    ops, nbytes, seconds = 1e9, 2e8, 0.020
    achieved = ops / seconds / 1e9  # 50 GFLOP/s
    bound = roofline_bound(ops / nbytes, 200.0, 20.0)  # 100 GFLOP/s, memory-bound
    assert bound_fraction(achieved, bound) == pytest.approx(0.5)
    bound_time = max(ops / 200e9, nbytes / 20e9)  # the time the roofs allow: 5 ms computing, 10 ms moving bytes
    assert bound_time / seconds == pytest.approx(0.5)  # 10 ms allowed of 20 ms
    assert bound_fraction(achieved, 0.0) is None


def test_bad_roofline_inputs_are_refused():
    with pytest.raises(ValueError):
        roofline_bound(-1.0, 200.0, 20.0)
    with pytest.raises(ValueError):
        roofline_bound(1.0, 0.0, 20.0)


def test_cache_path_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_path() == tmp_path / "mbcost" / "roofline.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_path().parts[-3:] == (".cache", "mbcost", "roofline.json")


def _fake():
    # call 1: the 64^3 matmul takes 1 ms; call 2: the copy takes 0.5 ms
    return FakeMeasure(times_for=lambda i: (0.001,) * 5 if i % 2 else (0.0005,) * 5)


def test_peaks_are_measured_once_then_cached(tmp_path):
    path = tmp_path / "roofline.json"
    fake = _fake()
    first = get_peaks(CPU, "float32", 2, path=path, measure_fn=fake, matmul_n=64, copy_bytes=4096)
    assert fake.calls == 2
    assert not first.cached
    assert first.peak_gflops == pytest.approx(2 * 64**3 / 0.001 / 1e9)
    assert first.peak_gbps == pytest.approx(2 * 4096 / 0.0005 / 1e9)  # read + write
    assert first.copy_bytes == 8192
    again = get_peaks(CPU, "float32", 2, path=path, measure_fn=fake)
    assert fake.calls == 2  # from the cache
    assert again.cached and again.peak_gflops == first.peak_gflops
    assert again.matmul_times_ms == first.matmul_times_ms
    other = get_peaks(CPU, "float32", 1, path=path, measure_fn=fake, matmul_n=64, copy_bytes=4096)
    assert fake.calls == 4 and not other.cached  # another thread count is another entry
    assert len(json.loads(path.read_text())["peaks"]) == 2
    get_peaks(CPU, "float32", 2, path=path, measure_fn=fake, refresh=True, matmul_n=64, copy_bytes=4096)
    assert fake.calls == 6


def test_a_corrupt_cache_is_ignored_and_replaced(tmp_path):
    path = tmp_path / "roofline.json"
    path.write_text("{not json")
    peaks = get_peaks(CPU, "float32", 2, path=path, measure_fn=_fake(), matmul_n=64, copy_bytes=4096)
    assert not peaks.cached
    assert json.loads(path.read_text())["version"] == 1


@pytest.mark.parametrize("where", ["under a file", "in a directory"])
def test_a_cache_that_cannot_be_written_is_logged_and_the_peaks_returned(where, tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    path = blocker / "roofline.json" if where == "under a file" else tmp_path / "cache"
    if where == "in a directory":
        path.mkdir()  # the cache path is a directory: the atomic write refuses it
    with caplog.at_level(logging.WARNING, logger="mbcost.bench.roofline"):
        peaks = get_peaks(CPU, "float32", 2, path=path, measure_fn=_fake(), matmul_n=64, copy_bytes=4096)
    assert peaks.peak_gflops == pytest.approx(2 * 64**3 / 0.001 / 1e9) and not peaks.cached
    assert "cannot write the roofline cache" in caplog.text


def test_peak_record_carries_the_peaks(tmp_path):
    from mbcost.bench.records import RunConfig, capture_env

    peaks = get_peaks(CPU, "float32", 2, path=tmp_path / "r.json", measure_fn=_fake(), matmul_n=64, copy_bytes=4096)
    rec = peak_record(peaks, RunConfig("cpu", "Test CPU", "float32", 1, 2), capture_env(CPU, 2)).to_dict()
    assert rec["kind"] == "peak"
    assert rec["peak_gflops"] == pytest.approx(peaks.peak_gflops)
    assert rec["median_ms"] == pytest.approx(1.0) and rec["runs"] == 5
