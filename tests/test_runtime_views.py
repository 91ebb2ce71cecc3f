"""Runtimes side by side in ``compare``, ``sweep`` and the report (``--runtime``, ``--precision int8``).

The networks and conv stacks are exported, quantized and checked by the real runtimes (tiny ones, 16x16 or 8x8
inputs); the timer is a fake whose times per call are given, so every speed-up below is checked against
arithmetic done by hand on those times, and every MAC ratio against a live ``FlopCounterMode``. The report tests
read hand-written JSON Lines records in the current format (``report_samples``), as ``--from`` does.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
import torch
from bench_fakes import FakeMeasure, one_line_error, run
from report_samples import CPU, typed_records_for, write_jsonl

import mbcost
from mbcost.bench.records import ConvRecord, ModelRecord, OutputCheck, parse_record
from mbcost.bench.runtimes import EXTRA, RUNTIMES, base
from mbcost.bench.store import load_records
from mbcost.comparison import compare_models
from mbcost.render.comparison import comparison_document, comparison_records, comparison_tables
from mbcost.report import data as rdata

TINY = "fixtures_models:tiny_convnet"  # 106,656 MACs at 1x3x16x16 (fixtures_models)
USER = "fixtures_models:factory"  # 139,680 MACs at 1x3x16x16 (fixtures_models.EXPECTED_MACS_16)
INPUT = "1x3x16x16"
QUICK = ["--min-time", "0.001", "--max-time", "0.01", "--threads", "1"]

needs_onnxruntime = pytest.mark.skipif(bool(RUNTIMES["onnxruntime"].missing("float32")),
                                       reason=f"needs onnxruntime: pip install '{EXTRA}'")


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr("mbcost.bench.devices.available_devices", lambda: ["cpu"])


def _macs(spec: str) -> float:
    """Half of FlopCounterMode's FLOPs on the real module: its MACs, counted by torch, not by mbcost."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        mbcost.build_model(spec).eval()(torch.zeros(1, 3, 16, 16))
    return counter.get_total_flops() / 2


def _times(*ms: float):  # noqa: ANN202
    """A fake timer's ``times_for``: call n (1-based) takes ``ms[n - 1]`` milliseconds, five runs each."""
    return lambda call: (ms[call - 1] / 1e3,) * 5


# -- compare --runtime ---------------------------------------------------------------------------------------


@needs_onnxruntime
def test_compare_puts_runtimes_side_by_side(cpu_only):
    # calls in order: the eager baseline (tiny, user), then onnxruntime (tiny, user)
    fake = FakeMeasure(times_for=_times(8.0, 20.0, 2.0, 4.0))
    c = compare_models(f"{TINY},{USER}", INPUT, runtime="eager,onnxruntime", measure_fn=fake)
    assert fake.calls == 4 and c.runtimes == ("eager", "onnxruntime") and c.failures == ()
    eager, ort = c.runtime_rows
    assert (eager.runtime, eager.is_baseline, ort.runtime, ort.precision) == ("eager", True, "onnxruntime", "float32")
    tiny, user = c.labels
    assert ort.vs_eager(tiny) == pytest.approx(8 / 2) and ort.vs_eager(user) == pytest.approx(20 / 4)
    assert eager.vs_eager(tiny) == pytest.approx(1.0)
    # between the models: the one with fewer MACs (tiny) against the other, measured and as the MACs predict
    (e_up,), (o_up,) = eager.speedups, ort.speedups
    assert (e_up.model, e_up.other) == (tiny, user)
    assert e_up.measured == pytest.approx(20 / 8) and o_up.measured == pytest.approx(4 / 2)
    assert o_up.macs_ratio == pytest.approx(_macs(USER) / _macs(TINY), rel=1e-12)  # 139,680 / 106,656
    for r in ort.records.values():  # exported by torch.onnx, run by ONNX Runtime, checked against eager float32
        assert r.output_check.passed and r.output_check.rel_error <= 1e-3 and set(r.one_time_s) == {"export", "load"}

    main, side = comparison_tables(c)
    assert [row[0] for row in side.rows] == ["eager", "onnxruntime"]
    assert side.rows[1][1:4] == ["2.00 ms (4.00x)", "4.00 ms (5.00x)", f"2.00x ({o_up.macs_ratio:.2f}x)"]
    assert side.rows[1][4].startswith("ok, rel <= ") and side.rows[0][4] == "reference"
    assert any("eager float32's median / this median" in n for n in side.notes)
    # the main table keeps eager's measured rows: onnxruntime's 2 ms is not eager's 8 ms
    latency = next(row for row in main.rows if row[0].startswith("CPU float32 latency"))
    assert latency[1:] == ["8.00 ms", "20.00 ms"]
    doc = comparison_document(c)
    assert [(r["runtime"], r["models"][tiny]["vs_eager"]) for r in doc["runtimes"]] == [("eager", 1.0),
                                                                                       ("onnxruntime", 4.0)]
    csv = {row["model"]: row for row in comparison_records(c)}
    assert (csv[tiny]["cpu_median_ms"], csv[tiny]["cpu_onnxruntime_float32_median_ms"]) == (8.0, 2.0)


@needs_onnxruntime
def test_compare_keeps_measuring_when_an_exporter_fails_and_says_so_in_one_line():
    result = run("compare", "--models", f"{TINY},fixtures_models:data_dependent", "--input", INPUT,
                 "--runtime", "onnxruntime", measure=FakeMeasure())
    line = one_line_error(result)
    # torch.export (under torch.onnx.export) cannot trace `if y.sum() > 0`: the exporter's own reason
    assert "fixtures_models:data_dependent (batch 1) on onnxruntime float32: torch.onnx.export (dynamo) failed" in line
    table = result.stdout
    assert "runtimes side by side" in table and "not measured: fixtures_models:data_dependent" in table
    ort = next(ln for ln in table.splitlines() if ln.strip("│ ").startswith("onnxruntime"))
    # tiny measured on onnxruntime (the fake: 10-13 ms everywhere, median 11, a wide spread "!"), the other not: "-"
    assert "11.00 ms ! (1.00x)" in ort and ort.count(" - ") == 2


def test_compare_runtime_bad_input_is_one_line(monkeypatch, fake):
    line = one_line_error(run("compare", "--models", TINY, "--input", INPUT, "--runtime", "tensorrt", measure=fake))
    assert "unknown runtime 'tensorrt'; choose from eager, compile" in line
    monkeypatch.setattr(base, "installed", lambda package: package != "openvino")
    line = one_line_error(run("compare", "--models", TINY, "--input", INPUT, "--runtime", "eager,openvino",
                              measure=fake))
    assert "openvino" in line and f"pip install '{EXTRA}'" in line
    line = one_line_error(run("compare", "--models", TINY, "--input", INPUT, "--runtime", "eager", "--no-bench"))
    assert "drop --no-bench" in line
    assert fake.calls == 0  # refused before anything was measured


def test_compare_precision_int8_measures_int8_next_to_the_float_baseline(cpu_only):
    fake = FakeMeasure(times_for=_times(6.0, 2.0))  # eager float32, then eager int8
    c = compare_models(TINY, INPUT, precision="int8", measure_fn=fake)
    assert c.runtimes == ("eager",) and c.precision == "int8"
    f32, i8 = c.runtime_rows
    assert (f32.precision, i8.precision) == ("float32", "int8") and i8.vs_eager(TINY) == pytest.approx(3.0)
    r = i8.records[TINY]
    assert r.calibration.startswith("random") and r.output_check.top1_agreement is not None
    assert r.runtime_settings["quantized_engine"] == "x86"  # torch.ao's x86 path, as mbcost bench --precision int8
    main, side = comparison_tables(c)
    assert "MACs (int8)" in main.to_text() and c.costs[0].precision == "int8"  # the analytic int8 rows stay
    assert side.rows[1][:2] == ["eager int8", "2.00 ms (3.00x)"]
    assert any("the latency is representative, the accuracy is not" in n for n in side.notes)


def test_compare_int8_without_eager_int8_here_notes_it_unless_eager_was_named(cpu_only, monkeypatch):
    from mbcost.bench.runtimes import RuntimeUnavailable
    from mbcost.bench.runtimes.eager import EAGER

    no_x86 = "needs torch's x86 quantized engine, which this build or CPU lacks"
    monkeypatch.setattr(EAGER, "refusal", lambda precision, *a, **k: no_x86 if precision == "int8" else None)
    fake = FakeMeasure(times_for=_times(6.0))
    c = compare_models(TINY, INPUT, precision="int8", measure_fn=fake)  # eager int8 by default: said, not fatal
    assert fake.calls == 1 and [(r.runtime, r.precision) for r in c.measured] == [("eager", "float32")]
    assert [(s.device, s.reason) for s in c.skipped] == [("cpu eager int8", no_x86)]
    assert f"cpu eager int8 skipped ({no_x86})" in comparison_tables(c)[1].notes
    with pytest.raises(RuntimeUnavailable, match="x86 quantized engine"):  # named: refused before measuring
        compare_models(TINY, INPUT, precision="int8", runtime="eager", measure_fn=fake)
    assert fake.calls == 1


# -- sweep --runtime -----------------------------------------------------------------------------------------


@needs_onnxruntime
def test_sweep_measures_both_stacks_on_each_runtime(tmp_path):
    save = tmp_path / "sweep.jsonl"
    # per point and runtime: standard, then separable: eager 4 ms / 2 ms, onnxruntime 3 ms / 0.5 ms
    result = run("sweep", "--channels", "16", "--kernels", "3", "--sizes", "8", *QUICK, "--runtime",
                 "eager,onnxruntime", "--save", str(save), measure=FakeMeasure(times_for=_times(4.0, 2.0, 3.0, 0.5)))
    assert result.exit_code == 0, result.output
    eager, ort = (parse_record(d) for d in load_records(save))
    assert (eager.runtime, ort.runtime) == ("eager", "onnxruntime")
    assert eager.measured_speedup == pytest.approx(2.0) and ort.measured_speedup == pytest.approx(6.0)
    assert eager.standard_macs == ort.standard_macs == 3 * 3 * 16 * 16 * 64  # M = N = 16, 3x3, 8x8
    for check in (ort.output_check, ort.standard_output_check):
        assert check.passed and check.samples == 4 and check.rel_error <= 1e-3
    assert set(ort.one_time_s) == set(ort.standard_one_time_s) == {"export", "load"}
    assert ort.runtime_settings["intra_op_num_threads"] == 1 and eager.output_check.note == "the reference itself"
    row = next(ln for ln in result.stdout.splitlines() if "onnxruntime" in ln and "8x8" in ln)
    assert "6.00x" in row and "ok, rel <= " in row
    assert "output check: each runtime's outputs against eager float32" in result.stdout


@needs_onnxruntime
def test_sweep_int8_is_quantized_and_checked():
    from mbcost.bench.devices import resolve_device
    from mbcost.bench.model_bench import BenchSettings
    from mbcost.bench.sweep import ConvPoint, bench_conv

    settings = BenchSettings(resolve_device("cpu"), threads=1, precision="int8").validated()
    # random weights and data from torch's global generator: seeded, so the int8 error (0.17-0.54 over seeds
    # 0-11 on a 16-channel separable conv; the check's bound is 0.5) does not depend on which tests ran before
    torch.manual_seed(0)
    with settings.runtime():
        r = bench_conv(ConvPoint(16, 16, 3, (8, 8)), settings, runtime="onnxruntime", measure_fn=FakeMeasure())
    assert (r.runtime, r.precision, r.dtype) == ("onnxruntime", "int8", "float32")
    assert set(r.one_time_s) == {"export", "quantize", "load"} and r.output_check.passed
    assert r.output_check.rel_error > 1e-4  # rounded to int8: far from float32's agreement


def test_sweep_runtime_bad_input_is_one_line(monkeypatch, fake):
    args = ["sweep", "--channels", "8", "--kernels", "3", "--sizes", "8", *QUICK]
    assert "unknown runtime 'tflite'" in one_line_error(run(*args, "--runtime", "tflite", measure=fake))
    monkeypatch.setattr(base, "installed", lambda package: package != "executorch")
    assert f"pip install '{EXTRA}'" in one_line_error(run(*args, "--runtime", "executorch", measure=fake))
    assert "alias of --runtime compile" in one_line_error(run(*args, "--compile", "--runtime", "onnxruntime",
                                                              measure=fake))
    assert fake.calls == 0


# -- the report, from saved runs of several runtimes ---------------------------------------------------------


def _check(precision: str, passed: bool = True) -> OutputCheck:
    return OutputCheck(reference="eager float32", samples=4, max_abs_error=1e-7, rel_error=3e-7 if passed else 0.2,
                       tolerance=1e-3 if precision == "float32" else 0.5, passed=passed,
                       top1_agreement=1.0 if precision == "int8" else None)


def _on(records, runtime: str, precision: str, model_ms: dict[str, float], conv_speedup: dict[int, float],
        passed: bool = True):  # noqa: ANN202
    """``records`` (eager float32, as report_samples writes them) as another runtime's: the same models with the
    given medians, the conv points with the given measured speed-ups (standard time kept)."""
    out = []
    for r in records:
        extra = dict(runtime=runtime, precision=precision, output_check=_check(precision, passed))
        if isinstance(r, ModelRecord) and r.model in model_ms:
            out.append(replace(r, **extra, median_ms=model_ms[r.model], runtime_version="9.9"))
        elif isinstance(r, ConvRecord):
            sep = r.standard_ms / conv_speedup[r.cin]
            out.append(replace(r, **extra, separable_ms=sep, median_ms=sep, measured_speedup=conv_speedup[r.cin],
                               standard_output_check=_check(precision)))
    return out


@pytest.fixture(scope="module")
def runtime_runs(tmp_path_factory):
    """One machine's runs on eager, onnxruntime and openvino int8 (hand-written records, current format)."""
    eager = [r for r in typed_records_for(CPU, ("v1", "v2")) if not hasattr(r, "layer")]
    times = {r.model: r.median_ms for r in eager if isinstance(r, ModelRecord)}
    ort = _on(eager, "onnxruntime", "float32", {"v1": times["v1"] / 2, "v2": times["v2"] / 4},
              {32: 0.8, 128: 2.0, 512: 5.0})
    ov8 = _on(eager, "openvino", "int8", {"v1": times["v1"] / 5, "v2": times["v2"] / 8},
              {32: 0.5, 128: 0.9, 512: 0.6})
    path = write_jsonl(tmp_path_factory.mktemp("runtimes") / "runs.jsonl", [r.to_dict() for r in eager + ort + ov8])
    return path, times


def test_runs_of_several_runtimes_are_told_apart_not_merged(runtime_runs):
    path, times = runtime_runs
    kept, runs, _ = rdata.label_runs(load_records([path], placeholders=True))
    label = f"{CPU['device_name']} float32"
    assert [(r.label, r.runtime, r.precision) for r in runs] == [
        (label, "eager", "float32"), (f"{label}, onnxruntime", "onnxruntime", "float32"),
        (f"{label}, openvino int8", "openvino", "int8")]
    v1 = {r.runtime: r.median_ms for r in kept if isinstance(r, ModelRecord) and r.model == "v1"}
    assert v1 == pytest.approx({"eager": times["v1"], "onnxruntime": times["v1"] / 2, "openvino": times["v1"] / 5})


def test_report_from_runs_of_several_runtimes(cli, tmp_path, runtime_runs):
    path, times = runtime_runs
    out = tmp_path / "r.html"
    r = cli("report", "--models", "v1,v2", "--no-bench", "--from", str(path), "--out", str(out))
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    table = page[page.index("<table id='runtimes'"):page.index("</table>", page.index("<table id='runtimes'"))]
    rows = [[" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)]
            for row in table.split("<tr>")[2:]]
    assert [row[0] for row in rows] == ["eager", "onnxruntime", "openvino int8"]
    # v1 and v2 against eager: the medians' ratios, by hand (onnxruntime at 1/2 and 1/4 of eager's times)
    assert rows[1][1].endswith(" 2.00x") and rows[1][2].endswith(" 4.00x")
    assert rows[2][1].endswith(" 5.00x") and rows[2][2].endswith(" 8.00x")
    # v2 vs v1 (v2 has fewer MACs) on openvino int8: v1's median / 5 against v2's / 8
    assert rows[2][3].startswith(f"{(times['v1'] / 5) / (times['v2'] / 8):.2f}x MACs ")
    assert "data-figure='runtimes'" in page and 'id="fig-runtimes"' in page
    figure, _ = json.JSONDecoder().raw_decode(page.split('"fig-runtimes",', 1)[1].lstrip())
    names = [t["name"] for t in figure if t.get("type") == "bar" and t.get("showlegend") is not False]
    assert names == ["eager", "onnxruntime", "openvino int8"]
    # claim 2: the realised saving per runtime, a slowdown said as one
    claim = page[page.index("data-claim='eight_to_nine'"):page.index("</tr>", page.index("data-claim='eight_to_nine'"))]
    assert "measured conv sweep, per runtime: eager:" in claim
    assert "onnxruntime: from 1.25x slower to 5.00x faster" in claim  # 0.8x is 1/0.8 = 1.25x slower
    assert "openvino int8: 1.11x to 2.00x slower" in claim and "slower at 3 of 3 points" in claim  # 1/0.9, 1/0.5
    assert "0.00x faster" not in page and "savings-runtimes" in page


def test_a_failed_output_check_is_flagged_in_the_report(tmp_path):
    eager = [r for r in typed_records_for(CPU, ("v2",)) if isinstance(r, (ModelRecord, ConvRecord))]
    wrong = _on(eager, "executorch", "float32", {"v2": 1.0}, {32: 2.0, 128: 2.0, 512: 2.0}, passed=False)
    data = rdata.gather("v2", 224, records=eager + wrong)
    (base_row, row) = data.runtime_rows
    assert row.failed_checks == ["v2"] and not base_row.failed_checks
    from mbcost.report.html import runtimes_html

    html = runtimes_html(data)
    assert "<b>!!</b>" in html and "!! FAILED: v2 rel 0.2 &gt; 0.001" in html
    assert "OUTPUT CHECK FAILED at 3 of 3 points" in data.claims.get("eight_to_nine").reason


def test_report_without_other_runtimes_has_no_runtime_section(tmp_path):
    data = rdata.gather("v2", 224, records=typed_records_for(CPU, ("v2",)))
    assert data.runtime_rows == ()
    from mbcost.report.figures import report_figures

    assert "runtimes" not in report_figures(data)


# -- report --runtime: measured now -------------------------------------------------------------------------


@needs_onnxruntime
def test_report_runtime_measures_now_and_an_exporter_failure_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setattr("mbcost.report.measure.measure_now", lambda *a, **k: ([], []))  # eager: not under test
    monkeypatch.setattr("mbcost.report.measure.SWEEP_CHANNELS", (8,))
    monkeypatch.setattr("mbcost.bench.devices.available_devices", lambda: ["cpu"])
    monkeypatch.setattr("mbcost.bench.model_bench.measure", FakeMeasure())
    out = tmp_path / "now.html"
    r = run("report", "--models", f"{TINY},fixtures_models:data_dependent", "--input", INPUT, "--runtime",
            "onnxruntime", "--out", str(out))
    line = one_line_error(r)
    assert "fixtures_models:data_dependent (batch 1) on onnxruntime float32: torch.onnx.export" in line
    assert r.stdout.startswith(f"wrote {out}")  # the page was written with everything else
    page = out.read_text(encoding="utf-8")
    assert "<table id='runtimes'" in page and "measured conv sweep, per runtime: onnxruntime:" in page
    assert "not measured: fixtures_models:data_dependent" in page and "--runtime onnxruntime" in page


def test_report_runtime_bad_input_is_one_line(cli, tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr("mbcost.report.measure.measure_now", lambda *a, **k: called.append(1) or ([], []))
    out = str(tmp_path / "x.html")
    assert "unknown runtime 'tvm'" in one_line_error(run("report", "--models", "v2", "--runtime", "tvm", "--out", out))
    assert "drop --no-bench" in one_line_error(run("report", "--models", "v2", "--runtime", "onnxruntime",
                                                   "--no-bench", "--out", out))
    monkeypatch.setattr(base, "installed", lambda package: package != "onnxruntime")
    line = one_line_error(run("report", "--models", "v2", "--runtime", "onnxruntime", "--out", out))
    assert "onnxruntime" in line and f"pip install '{EXTRA}'" in line
    assert called == []  # refused before anything was measured

