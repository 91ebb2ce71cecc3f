"""Measured activation memory (``mbcost.bench.memory``) next to the engine's estimate.

The memory pass is real (one small forward under the profiler); the timing is faked
(``FakeMeasure``), so these tests are fast and never assert a latency.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
import torch
from bench_fakes import FakeMeasure, run

from mbcost.bench import model_bench
from mbcost.bench.devices import resolve_device
from mbcost.bench.memory import Allocation, measure_peak_memory, peak_of
from mbcost.bench.model_bench import BenchSettings, ForwardArgs, bench_models, plan_models
from mbcost.bench.records import ModelRecord
from mbcost.bench.store import load_records, record_line
from mbcost.render.bench import bench_table, compare_rows, memory_difference
from mbcost.zoo.spec import resolve_sources

SMALL = ["--models", "v2@0.35", "--input", "64"]



@pytest.fixture
def one_thread():
    prior = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prior)


@pytest.fixture(scope="module")
def record() -> ModelRecord:
    settings = BenchSettings(resolve_device("cpu"), threads=1).validated()
    plans = plan_models(resolve_sources("v2@0.35"), (64, 64), [1], settings)
    return bench_models(plans, settings, measure_fn=FakeMeasure(run_fn=False))[0]


# -- the measurement itself ------------------------------------------------------------------------


def test_peak_is_the_largest_running_sum_in_time_order():
    events = [Allocation(30, -100), Allocation(10, 100), Allocation(20, 50), Allocation(25, -50), Allocation(40, 70)]
    assert peak_of(events) == 150  # 100, then +50 live together; later 70 alone
    assert peak_of([]) == 0


def test_the_input_copy_is_inside_the_measured_region():
    x = torch.randn(2, 3, 8, 8)
    # an identity allocates nothing: the peak is exactly the input's copy, 2*3*8*8*4 bytes
    assert measure_peak_memory(torch.nn.Identity(), ForwardArgs((x,), {}), "cpu") == 1536
    kw = measure_peak_memory(torch.nn.Identity(), ForwardArgs((), {"input": x}), resolve_device("cpu"))
    assert kw == 1536  # keyword inputs are copied too


def test_single_conv_peak_holds_input_and_output(one_thread):
    conv = torch.nn.Conv2d(3, 16, 3, padding=1).eval()
    x = torch.randn(1, 3, 32, 32)
    in_bytes, out_bytes = 1 * 3 * 32 * 32 * 4, 1 * 16 * 32 * 32 * 4  # 12,288 + 65,536
    peak = measure_peak_memory(conv, ForwardArgs((x,), {}), "cpu")
    assert peak >= in_bytes + out_bytes
    # workspace on top: PyTorch's native convolution here (1 thread, a small input) adds im2col
    # columns of 3*3*3 x 32*32 floats = 110,592 bytes (188,416 in all, 2.4x); oneDNN would add a
    # blocked copy of the output and of the weights instead. Either way within 3x.
    assert peak <= 3 * (in_bytes + out_bytes)


def test_weights_made_before_the_pass_are_not_counted(one_thread):
    big = torch.nn.Linear(1024, 1024).eval()  # 4 MB of weights, 4 kB of activations
    peak = measure_peak_memory(big, ForwardArgs((torch.randn(1, 1024),), {}), "cpu")
    assert 8192 <= peak < 100_000  # input 4,096 + output 4,096 (+ small workspace at most)


# -- records: filled by bench, round-tripped through --save -------------------------------------------


def test_bench_fills_both_figures(record):
    import mbcost

    assert record.estimated_peak_memory_bytes == mbcost.analyze("v2@0.35", 64).peak_activation_bytes
    assert isinstance(record.peak_memory_bytes, int) and record.peak_memory_bytes > 0
    # at least the input (3x64x64 floats, copied inside the pass) and the widest activation
    assert record.peak_memory_bytes >= 3 * 64 * 64 * 4
    assert record.peak_memory_difference_bytes == record.peak_memory_bytes - record.estimated_peak_memory_bytes
    d = json.loads(record_line(record))
    assert d["peak_memory_bytes"] == record.peak_memory_bytes
    assert d["estimated_peak_memory_bytes"] == record.estimated_peak_memory_bytes


def test_fields_round_trip_through_save_and_the_store(fake, tmp_path):
    save = tmp_path / "runs.jsonl"
    result = run("bench", *SMALL, "--threads", "1", "--save", str(save), "--format", "json", measure=fake)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)["results"][0]
    (saved,) = load_records(save)
    assert saved["kind"] == "model"
    assert saved["peak_memory_bytes"] == printed["peak_memory_bytes"] > 0
    assert saved["estimated_peak_memory_bytes"] == printed["estimated_peak_memory_bytes"] > 0


def test_old_records_without_the_fields_still_load(record, tmp_path):
    from mbcost.report.data import label_runs

    old = record.to_dict()
    del old["peak_memory_bytes"], old["estimated_peak_memory_bytes"]  # a file from before the fields
    unmeasured = dict(record.to_dict(), peak_memory_bytes=None, estimated_peak_memory_bytes=None)
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in (old, unmeasured, record.to_dict())) + "\n")
    loaded = load_records(path)
    assert len(loaded) == 3
    kept, runs, skipped = label_runs(loaded)
    assert skipped == [] and kept and runs


def test_a_memory_pass_that_fails_leaves_none_and_a_log_line(monkeypatch, caplog):
    def broken(*_a, **_k):
        raise RuntimeError("Profiler is already enabled on this thread")

    monkeypatch.setattr("mbcost.bench.memory.measure_peak_memory", broken)
    settings = BenchSettings(resolve_device("cpu"), threads=1).validated()
    plans = plan_models(resolve_sources("v2@0.35"), (64, 64), [1], settings)
    with caplog.at_level(logging.WARNING, logger=model_bench.__name__):
        (rec,) = bench_models(plans, settings, measure_fn=FakeMeasure(run_fn=False))
    assert rec.peak_memory_bytes is None and rec.estimated_peak_memory_bytes is not None
    assert "memory not measured" in caplog.text
    assert rec.median_ms > 0  # the timing stands
    assert memory_difference(rec) == "-"


# -- tables ------------------------------------------------------------------------------------------


def test_bench_table_shows_estimate_and_measurement(fake):
    result = run("bench", *SMALL, "--threads", "1", "--format", "markdown", measure=fake)
    assert result.exit_code == 0, result.output
    assert "act. peak est." in result.stdout and "act. peak measured (vs est.)" in result.stdout
    assert "activation peak = bytes of live activations" in result.stdout
    assert "difference = measured - estimated" in result.stdout


def test_bench_table_cells(record):
    r = replace(record, peak_memory_bytes=12_246_400, estimated_peak_memory_bytes=9_633_792)
    row = bench_table([r], []).rows[0]
    assert row[8] == "9.63 MB"
    assert row[9] == "12.25 MB (+27.1%)"  # 12,246,400 / 9,633,792 - 1


def test_compare_rows_show_both_figures_and_the_difference(record):
    more = replace(record, peak_memory_bytes=12_246_400, estimated_peak_memory_bytes=9_633_792)
    less = replace(record, model="other", peak_memory_bytes=900_000, estimated_peak_memory_bytes=1_000_000)
    rows = {row[0]: row[1:] for row in compare_rows([more.model, "other"], [more, less], [])}
    assert rows["activation peak, estimated (lifetimes)"] == ["9.63 MB", "1.00 MB"]
    assert rows["activation peak, measured (cpu)"] == ["12.25 MB", "900.00 kB"]
    # measured - estimated: 2,612,608 bytes more; 100,000 bytes less (shown, never hidden)
    assert rows["difference (workspace, allocator), cpu"] == ["+2.61 MB (+27.1%)", "-100.00 kB (-10.0%)"]


def test_compare_shows_the_measured_rows(fake):
    result = run("compare", *SMALL, "--format", "markdown", measure=fake)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    estimated = next(ln for ln in lines if ln.startswith("| activation peak, estimated (lifetimes)"))
    measured = next(ln for ln in lines if ln.startswith("| activation peak, measured (cpu)"))
    difference = next(ln for ln in lines if ln.startswith("| difference (workspace, allocator), cpu"))
    assert "kB" in estimated and "kB" in measured
    assert "%)" in difference and ("+" in difference or "-" in difference.split("|")[2])
    doc = json.loads(run("compare", *SMALL, "--format", "json", measure=fake).stdout)
    m = doc["models"][0]["measured"][0]
    assert m["peak_memory_bytes"] > 0 and m["estimated_peak_memory_bytes"] == doc["models"][0]["peak_activation_bytes"]


# -- CUDA (marked; skipped without a GPU) ----------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@needs_cuda
def test_cuda_peak_holds_input_and_output():
    conv = torch.nn.Conv2d(3, 16, 3, padding=1, device="cuda").eval()
    x = torch.randn(8, 3, 64, 64, device="cuda")
    in_bytes, out_bytes = 8 * 3 * 64 * 64 * 4, 8 * 16 * 64 * 64 * 4
    before = torch.cuda.memory_allocated()
    peak = measure_peak_memory(conv, ForwardArgs((x,), {}), "cuda")
    assert peak >= in_bytes + out_bytes
    assert peak <= 4 * (in_bytes + out_bytes) + (64 << 20)  # cuDNN workspace: generous
    assert torch.cuda.memory_allocated() == before  # nothing left behind


@pytest.mark.cuda
@needs_cuda
def test_bench_on_cuda_records_the_measured_peak():
    result = run("bench", *SMALL, "--device", "cuda", "--min-time", "0.001", "--max-time", "0.01", "--format", "json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)["results"][0]
    assert rec["peak_memory_bytes"] >= 3 * 64 * 64 * 4 and rec["estimated_peak_memory_bytes"] > 0
