"""The record schema (the JSON Lines contract with ``mbcost report``) and the append-only store."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re

import pytest
from bench_fakes import FakeMeasure

from mbcost.bench.devices import resolve_device
from mbcost.bench.model_bench import BenchSettings, bench_models, plan_models, speedups
from mbcost.bench.records import ConvRecord, LayerRecord, PeakRecord, RunConfig, capture_env
from mbcost.bench.store import RecordWriter, load_records, record_line
from mbcost.bench.timer import Budget, Measurement
from mbcost.errors import SpecError
from mbcost.zoo.spec import resolve_sources

COMMON = {"kind", "device", "device_name", "dtype", "batch", "threads", "channels_last", "compile", "median_ms",
          "iqr_ms", "runs", "env", "label"}
ENV = {"mbcost", "torch", "device_name", "cpu", "threads", "cuda", "cudnn", "cudnn_benchmark", "platform", "python",
       "timestamp"}
MODEL = {"model", "input", "params", "macs", "flops", "throughput_ips", "achieved_gflops", "wide_spread"}
LAYER = {"model", "input", "layer", "category", "macs", "flops", "elementwise_ops", "bytes_moved",
         "arithmetic_intensity", "time_share", "mac_share", "achieved_gflops", "roofline_bound_gflops",
         "bound_fraction"}
CONV = {"cin", "cout", "k", "size", "stride", "standard_ms", "separable_ms", "measured_speedup", "macs_ratio",
        "formula_ratio"}
PEAK = {"peak_gflops", "peak_gbps"}


@pytest.fixture(scope="module")
def settings():
    return BenchSettings(resolve_device("cpu"), budget=Budget(min_run_time=0.01, max_run_time=0.02)).validated()


@pytest.fixture(scope="module")
def records(settings):
    plans = plan_models(resolve_sources("v2@0.35,v1@0.25"), (64, 64), [1, 2], settings)
    # v2@0.35 takes 10 ms, v1@0.25 4 ms, whatever the batch: a fake clock's world
    fake = FakeMeasure(times_for=lambda i: (0.010,) * 5 if i <= 2 else (0.004, 0.004, 0.005, 0.004, 0.004),
                       run_fn=False)
    return bench_models(plans, settings, measure_fn=fake)


def test_model_record_has_the_contract_keys(records):
    d = records[0].to_dict()
    assert COMMON | MODEL <= set(d)
    assert ENV <= set(d["env"])
    assert d["kind"] == "model"
    assert d["model"] == "v2@0.35"
    assert d["input"] == [64, 64]
    assert d["device"] == "cpu"
    assert d["label"] == f"{d['device_name']} float32"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d["env"]["timestamp"])
    assert d["times_ms"] == pytest.approx([10.0] * 5)
    json.loads(record_line(records[0]))  # serialisable as one line


def test_model_record_arithmetic(records):
    r = records[1]  # v2@0.35 at batch 2, 10 ms
    assert r.batch == 2
    assert r.median_ms == pytest.approx(10.0)
    assert r.throughput_ips == pytest.approx(2 / 0.010)
    assert r.achieved_gflops == pytest.approx(r.flops / 0.010 / 1e9)
    assert r.flops == 2 * r.macs
    assert r.runs == 5 and r.iqr_ms == 0.0 and not r.wide_spread


def test_speedups_pair_only_comparable_records(records):
    ups = speedups(records)
    assert len(ups) == 4  # two batches x two ordered pairs
    up = next(s for s in ups if s.model == "v1@0.25" and s.other == "v2@0.35" and s.config.batch == 1)
    assert up.measured == pytest.approx(10.0 / 4.0)
    v1 = next(r for r in records if r.model == "v1@0.25" and r.batch == 1)
    v2 = next(r for r in records if r.model == "v2@0.35" and r.batch == 1)
    assert up.macs_ratio == pytest.approx(v2.macs / v1.macs)
    assert up.realised == pytest.approx(up.measured / up.macs_ratio)


def _common(settings):
    m = Measurement(times=(0.001, 0.002), number_per_run=1)
    from mbcost.bench.records import Record

    return Record.common(settings.config(1), capture_env(settings.device, 2), m)


def test_every_kind_has_its_contract_keys(settings):
    common = _common(settings)
    layer = LayerRecord(**common, model="v2", input=(224, 224), layer="features.0.0", module_type="Conv2d",
                        category="conv", ops=("convolution",), macs=10, flops=20, elementwise_ops=0, bytes_moved=8,
                        arithmetic_intensity=2.5, time_share=0.1, mac_share=0.2, achieved_gflops=1.0,
                        roofline_bound_gflops=None, bound_fraction=None)
    conv = ConvRecord(**common, cin=8, cout=8, k=3, size=(14, 14), stride=1, standard_ms=2.0, separable_ms=1.0,
                      standard_iqr_ms=0.1, standard_runs=5, standard_wide_spread=False, standard_times_ms=(2.0,),
                      standard_macs=90, separable_macs=20, measured_speedup=2.0,
                      macs_ratio=2 / 9, formula_ratio=1 / 8 + 1 / 9)
    peak = PeakRecord(**common, peak_gflops=100.0, peak_gbps=20.0, matmul_n=64, copy_bytes=1024, copy_median_ms=1.0,
                      copy_iqr_ms=0.0)
    for rec, keys, kind in ((layer, LAYER, "layer"), (conv, CONV, "conv"), (peak, PEAK, "peak")):
        d = json.loads(record_line(rec))
        assert COMMON | keys <= set(d), kind
        assert d["kind"] == kind
    assert json.loads(record_line(conv))["size"] == [14, 14]


def test_non_finite_numbers_become_null(settings):
    d = json.loads(record_line({"kind": "model", "median_ms": float("inf"), "x": [float("nan")]}))
    assert d == {"kind": "model", "median_ms": None, "x": [None]}


def test_run_config_label_and_key():
    c = RunConfig("cpu", "Xeon", "bfloat16", 8, 2)
    assert c.run_label == "Xeon bfloat16"
    assert dataclasses.replace(c, batch=1).key != c.key  # the batch is part of the key
    assert RunConfig("cpu", "Xeon", "bfloat16", 8, 2, label="laptop").run_label == "laptop"


# -- store -----------------------------------------------------------------------------------------


def test_writer_appends_and_flushes_each_record(tmp_path, records):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"kind": "model", "model": "earlier"}\n')
    with RecordWriter(path) as out:
        out.write(records[0])
        # flushed: readable while the writer is still open (what Ctrl-C would leave behind)
        assert [r.get("model") for r in load_records(path)] == ["earlier", "v2@0.35"]
        out.write(records[1])
    assert out.written == 2
    assert len(load_records(path)) == 3


def test_truncated_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path, records, caplog):
    path = tmp_path / "runs.jsonl"
    line = record_line(records[0])
    path.write_text(line + "\n" + line[: len(line) // 2])  # killed mid-write
    with caplog.at_level(logging.WARNING, logger="mbcost.bench.store"):
        assert len(load_records(path)) == 1
    assert "truncated" in caplog.text
    with RecordWriter(path) as out:
        out.write(records[1])
    loaded = load_records(path)
    assert [r["batch"] for r in loaded] == [1, 2]  # the half line stays skipped, the new record is intact


def test_load_merges_files_in_order_and_skips_blank_lines(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"kind": "model", "n": 1}\n\n{"kind": "mystery", "n": 2}\n')
    b.write_text('{"kind": "peak", "n": 3}\n[1, 2]\n')
    assert [r["n"] for r in load_records([a, b])] == [1, 2, 3]  # unknown kinds kept; non-objects skipped


def test_missing_results_file_is_a_one_line_error(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_records(tmp_path / "nope.jsonl")


def test_writer_refuses_a_directory(tmp_path):
    with pytest.raises(SpecError, match="directory"):
        with RecordWriter(tmp_path):
            pass


def test_writer_without_a_path_is_a_no_op(records):
    with RecordWriter(None) as out:
        out.write(records[0])
    assert out.written == 0


def test_busy_cpus_are_sampled_from_proc_stat():
    from mbcost.bench.records import busy_cpus_now

    busy = busy_cpus_now(0.05)
    assert busy is None or 0.0 <= busy <= (os.cpu_count() or 1) + 1e-9


def test_busy_machine_is_recorded_and_warned(settings, records):
    from dataclasses import replace

    from mbcost.render.bench import env_line

    quiet = capture_env(settings.device, 2, busy_cpus=0.2)
    busy = replace(quiet, busy_cpus=1.9, cpu_count=2)
    assert quiet.busy_cpus == 0.2 and not replace(quiet, cpu_count=2).busy
    assert busy.busy
    assert not replace(quiet, busy_cpus=3.0, cpu_count=16).busy  # 3 of 16 CPUs: a quarter is 4
    assert "machine was busy (other work kept 1.9 of 2 CPUs busy)" in env_line(replace(records[0], env=busy))
    assert "busy" not in env_line(replace(records[0], env=replace(quiet, cpu_count=2)))


# -- one record type: what bench writes is what readers get back ------------------------------------------------


def test_every_kind_round_trips_through_a_results_file(records, settings, tmp_path):
    from mbcost.bench.layers import ModuleTimes, join_layers
    from mbcost.bench.records import RecordError, parse_record
    from mbcost.bench.roofline import Peaks, peak_record
    from mbcost.bench.sweep import grid, run_sweep
    from mbcost.cost.analyze import analyze

    config, env = settings.config(1), capture_env(settings.device, 2)
    convs = run_sweep(grid([16], [3], [8]), settings, measure_fn=FakeMeasure(times_for=lambda i: (0.002,) * 3))
    peaks = Peaks("cpu", "Test CPU", "float32", 2, "2.13", 100.0, 10.0, 256, 1 << 20, 0.5, 0.01, 5, 0.2, 0.01, 5,
                  "2026-01-02T03:04:05Z", (0.5, 0.5), (0.2, 0.2))
    cost = analyze("v1@0.25", 32)
    names = ("", *dict.fromkeys(lc.module for lc in cost.layers))
    times = ModuleTimes(names=names, children={"": names[1:], **dict.fromkeys(names[1:], ())},
                        totals={"": (1e-3,) * 3, **{n: (1e-5,) * 3 for n in names[1:]}},
                        nested={"": (1e-5 * (len(names) - 1),) * 3})
    layers = join_layers(cost, times, config, env, peaks=peaks).layers
    written = [*records, *convs, peak_record(peaks, config, env), *layers[:3]]
    path = tmp_path / "runs.jsonl"
    with RecordWriter(path) as out:
        for r in written:
            out.write(r)
    back = [parse_record(d) for d in load_records(path)]
    assert back == written  # typed, equal field by field (tuples, Env and all)
    assert [r.kind for r in back] == [r.kind for r in written] and {r.kind for r in back} == {"model", "conv", "peak",
                                                                                              "layer"}
    with pytest.raises(RecordError, match="^model record with non-numeric median_ms$"):
        parse_record(dict(written[0].to_dict(), median_ms="fast"))
    with pytest.raises(RecordError, match="^conv record without standard_ms$"):
        parse_record({k: v for k, v in convs[0].to_dict().items() if k != "standard_ms"})
    with pytest.raises(RecordError, match="^unknown kind 'modle'$"):
        parse_record(dict(written[0].to_dict(), kind="modle"))
