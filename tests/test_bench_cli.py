"""``mbcost bench / profile / sweep / roofline`` and the measured rows of ``compare`` and ``conv``.

Most tests run the commands on a fake timer (``run(..., measure=fake)``: fixed times, no real timing); one
smoke test measures a tiny network for real with a tiny budget and asserts only the shape of the
output, never a latency.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bench_fakes import FakeMeasure, one_line_error, run

from mbcost.bench import devices, roofline
from mbcost.bench.roofline import Peaks

TINY = ["--min-time", "0.001", "--max-time", "0.01", "--threads", "1"]  # 1 thread: robust on a busy machine
SMALL = ["--models", "v2@0.35", "--input", "64"]




# -- bad input: one line, exit 2 -------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
@pytest.mark.parametrize("command", [["bench", *SMALL], ["sweep"], ["profile", "v2"], ["roofline"]])
def test_cuda_without_cuda_is_one_line_exit_2(command, fake):
    line = one_line_error(run(*command, "--device", "cuda", measure=fake))
    assert "CUDA is not available" in line
    assert fake.calls == 0


def test_unsupported_dtype_on_the_device(monkeypatch, fake):
    monkeypatch.setattr(devices, "cpu_has_native", lambda dtype: dtype != "float16")
    line = one_line_error(run("bench", *SMALL, "--dtype", "float16", measure=fake))
    assert "float16 is not supported on this CPU" in line
    assert run("bench", *SMALL, "--dtype", "float64", measure=fake).exit_code == 2  # not a measurement dtype at all


def test_a_batch_that_does_not_fit_is_refused_before_anything_runs(monkeypatch, fake, tmp_path):
    monkeypatch.setattr(devices, "available_memory", lambda device: 200_000_000)
    save = tmp_path / "runs.jsonl"
    line = one_line_error(run("bench", "--models", "v2", "--batch", "1,256", "--save", str(save), measure=fake))
    assert "v2 at batch 256 needs about" in line and "200.00 MB is available" in line
    assert fake.calls == 0  # refused while planning: batch 1 was not measured either
    assert not save.exists()


@pytest.mark.parametrize("args", [["--min-time", "0"], ["--min-time", "2", "--max-time", "1"], ["--batch", "0"],
                                  ["--batch", "x"], ["--threads", "0"], ["--device", "tpu"]])
def test_bad_options_are_one_line_exit_2(args, fake):
    one_line_error(run("bench", *SMALL, *args, measure=fake))


def test_save_into_a_directory_is_refused(tmp_path, fake):
    assert "directory" in one_line_error(run("bench", *SMALL, "--save", str(tmp_path), measure=fake))


# -- bench ----------------------------------------------------------------------------------------


def test_bench_measures_for_real_and_appends_records(tmp_path):
    save = tmp_path / "runs.jsonl"
    result = run("bench", *SMALL, *TINY, "--format", "json", "--save", str(save))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    rec = doc["results"][0]
    for key in ("model", "device", "batch", "dtype", "median_ms", "iqr_ms", "runs", "env"):
        assert key in rec
    assert rec["model"] == "v2@0.35" and rec["device"] == "cpu" and rec["kind"] == "model"
    assert rec["median_ms"] > 0 and rec["runs"] >= 4 and len(rec["times_ms"]) == rec["runs"]
    assert rec["env"]["threads"] == rec["threads"] == 1
    assert json.loads(save.read_text().splitlines()[0])["median_ms"] == rec["median_ms"]
    assert run("bench", *SMALL, *TINY, "--save", str(save), "--format", "csv").exit_code == 0
    assert len(save.read_text().splitlines()) == 2  # appended, never overwritten


def test_bench_table_shows_speedups_next_to_the_mac_ratio(monkeypatch):
    fake = FakeMeasure(times_for=lambda i: (0.010,) * 5 if i == 1 else (0.004,) * 5, run_fn=False)
    result = run("bench", "--models", "v2@0.35,v1@0.25", "--input", "64", "--format", "markdown", measure=fake)
    assert result.exit_code == 0, result.output
    assert "vs v2@0.35: measured (MACs)" in result.stdout
    assert "2.50x (" in result.stdout  # v1@0.25 runs 10 / 4 times faster in the fake world
    assert "GFLOP/s = analytic FLOPs" in result.stdout


def test_wide_spread_is_flagged_not_hidden(monkeypatch):
    timer = FakeMeasure(times=(0.01, 0.02, 0.03, 0.04), run_fn=False)
    result = run("bench", *SMALL, "--format", "markdown", measure=timer)
    assert " !" in result.stdout and "wide spread" in result.stdout
    doc = json.loads(run("bench", *SMALL, "--format", "json", measure=timer).stdout)
    assert doc["results"][0]["wide_spread"] is True


def test_bench_csv_flattens_env(fake):
    result = run("bench", *SMALL, "--batch", "1,2", "--format", "csv", measure=fake)
    header, *rows = result.stdout.strip().splitlines()
    assert len(rows) == 2
    assert "env_torch" in header and "median_ms" in header and "times_ms" not in header


# -- sweep ----------------------------------------------------------------------------------------


def test_sweep_json(fake):
    result = run("sweep", "--channels", "8,16", "--kernels", "3", "--sizes", "8", "--format", "json", measure=fake)
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)["results"]
    assert [r["cin"] for r in results] == [8, 16]
    assert all(r["kind"] == "conv" and r["measured_speedup"] == pytest.approx(1.0) for r in results)


def test_ctrl_c_in_a_sweep_exits_130_and_keeps_finished_records(monkeypatch, tmp_path):
    timer = FakeMeasure(interrupt_at=4, run_fn=False)
    save = tmp_path / "sweep.jsonl"
    result = run("sweep", "--channels", "8,16,32", "--kernels", "3", "--sizes", "8", "--save", str(save), measure=timer)
    line = one_line_error(result, 130)
    assert "interrupted during sweep; 1 finished record(s) kept in" in line
    lines = save.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["cin"] == 8  # point 1 finished; point 2 was cut


# -- profile and roofline ---------------------------------------------------------------------------


def _peaks() -> Peaks:
    return Peaks(device="cpu", device_name="Test CPU", dtype="float32", threads=2, torch="x", peak_gflops=100.0,
                 peak_gbps=10.0, matmul_n=64, copy_bytes=1, matmul_ms=1.0, matmul_iqr_ms=0.0, matmul_runs=5,
                 copy_ms=1.0, copy_iqr_ms=0.0, copy_runs=5, measured_at="now", cached=True)


def test_profile_joins_layers_and_places_them_on_the_roofline(monkeypatch, fake, tmp_path):
    monkeypatch.setattr(roofline, "get_peaks", lambda *a, **k: _peaks())
    save = tmp_path / "p.jsonl"
    result = run("profile", "v2@0.35", "--input", "64", *TINY, "--format", "json", "--save", str(save), measure=fake)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    kinds = [r["kind"] for r in doc["results"]]
    assert kinds[0] == "model" and set(kinds[1:]) == {"layer"}
    layers = doc["results"][1:]
    assert sum(r["mac_share"] for r in layers) == pytest.approx(1.0)
    assert sum(c["time_share"] for c in doc["categories"]) == pytest.approx(1.0)
    assert all(r["roofline_bound_gflops"] is not None for r in layers if r["arithmetic_intensity"] > 0)
    saved = [json.loads(line)["kind"] for line in save.read_text().splitlines()]
    assert saved == ["peak", *kinds]  # the peaks it was judged against travel with the run
    table = run("profile", "v2@0.35", "--input", "64", *TINY, "--top", "3", "--format", "markdown", measure=fake).stdout
    assert "time share vs MAC share" in table and "top 3 by time" in table and "of bound" in table


def test_profile_without_roofline(fake):
    result = run("profile", "v2@0.35", "--input", "64", *TINY, "--no-roofline", "--format", "csv", measure=fake)
    assert result.exit_code == 0, result.output
    assert "bound_fraction" in result.stdout.splitlines()[0]


def test_roofline_command_caches(monkeypatch, tmp_path, fake):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(roofline, "default_sizes", lambda device: (32, 4096))
    first = json.loads(run("roofline", "--format", "json", measure=fake).stdout)
    second = json.loads(run("roofline", "--format", "json", measure=fake).stdout)
    assert first["results"][0]["kind"] == "peak" and first["results"][0]["cached"] is False
    assert second["results"][0]["cached"] is True
    assert (tmp_path / "mbcost" / "roofline.json").exists()


# -- compare and conv -------------------------------------------------------------------------------


def test_compare_measures_by_default_and_no_bench_skips(fake):
    measured = run("compare", *SMALL, "--format", "markdown", measure=fake)
    assert measured.exit_code == 0, measured.output
    assert "CPU float32 latency (median, batch 1)" in measured.stdout
    doc = json.loads(run("compare", *SMALL, "--format", "json", measure=fake).stdout)
    assert doc["models"][0]["measured"][0]["median_ms"] == pytest.approx(11.0)
    calls = fake.calls
    plain = run("compare", *SMALL, "--no-bench", "--format", "markdown", measure=fake)
    assert "latency" not in plain.stdout
    assert fake.calls == calls


def test_compare_skips_a_dtype_it_cannot_measure(fake):
    result = run("compare", *SMALL, "--dtype", "float64", "--format", "markdown", measure=fake)
    assert result.exit_code == 0, result.output
    assert "measured: cpu skipped" in result.stdout


def test_conv_bench_adds_measured_rows(fake):
    result = run("conv", "--cin", "16", "--cout", "16", "--size", "8", "--bench", "--format", "markdown", measure=fake)
    assert result.exit_code == 0, result.output
    assert "measured speed-up (standard / separable)" in result.stdout
    doc = json.loads(run("conv", "--cin", "16", "--cout", "16", "--size", "8", "--bench", "--format", "json",
                         measure=fake).stdout)
    assert doc["measured"]["kind"] == "conv" and doc["measured"]["cin"] == 16
    assert "measured" not in json.loads(run("conv", "--cin", "16", "--format", "json", measure=fake).stdout)


# -- CUDA (marked; skipped without a GPU; the CPU suite never needs one) ---------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_bench_on_cuda_records_the_gpu_and_cudnn(dtype):
    result = run("bench", *SMALL, *TINY[:4], "--device", "cuda", "--dtype", dtype, "--cudnn-benchmark",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)["results"][0]
    assert rec["device"] == "cuda" and rec["dtype"] == dtype
    assert rec["device_name"] == torch.cuda.get_device_name()
    assert rec["env"]["cuda"] and rec["env"]["cudnn"] and rec["env"]["cudnn_benchmark"] is True
    assert rec["median_ms"] > 0


@pytest.mark.cuda
@needs_cuda
def test_profile_on_cuda_uses_events(monkeypatch):
    monkeypatch.setattr(roofline, "get_peaks", lambda *a, **k: _peaks())
    result = run("profile", "v2@0.35", "--input", "64", *TINY[:4], "--device", "cuda", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert all(r["device"] == "cuda" for r in doc["results"])
    assert sum(c["time_share"] for c in doc["categories"]) == pytest.approx(1.0)


@pytest.mark.cuda
@needs_cuda
def test_peaks_on_cuda(tmp_path):
    from mbcost.bench.devices import resolve_device
    from mbcost.bench.roofline import get_peaks
    from mbcost.bench.timer import Budget

    p = get_peaks(resolve_device("cuda"), "float16", 1, path=tmp_path / "r.json", matmul_n=1024,
                  copy_bytes=64 << 20, budget=Budget(min_run_time=0.01, max_run_time=0.1))
    assert p.peak_gflops > 0 and p.peak_gbps > 0 and p.device == "cuda"


# -- no stray noise -----------------------------------------------------------------------------------


def test_a_measuring_command_prints_only_its_own_lines(tmp_path):
    # A CUDA build of torch without a GPU logs "No CUDA runtime is found, using CUDA_HOME=..." when
    # torch.utils.benchmark imports torch.utils.cpp_extension; CUDA_HOME makes it find one here too.
    env = {**os.environ, "CUDA_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "mbcost", "compare", *SMALL, "--format", "csv"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "CUDA_HOME" not in done.stderr and "No CUDA runtime" not in done.stderr
    assert done.stderr.strip() == ""
