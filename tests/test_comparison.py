"""``mbcost.comparison``: the library result ``mbcost compare`` renders, its renderers, and the one CPU + CUDA loop.

Counter totals are checked against the live libraries called here directly; measured figures against the fake
timer's fixed times (``bench_fakes.FakeMeasure``: 10, 11, 12, 13, 10 ms, median 11 ms).
"""

from __future__ import annotations

import copy
import json

import pytest
from bench_fakes import run

import mbcost
from mbcost.bench.devices import available_devices
from mbcost.bench.model_bench import each_device
from mbcost.comparison import Comparison, SkippedDevice, compare_models, measure_conv
from mbcost.errors import MbcostError, SpecError
from mbcost.render.comparison import comparison_document, comparison_records, comparison_table
from mbcost.render.costs import conv_document, conv_records, conv_table
from mbcost.render.table import to_json

MODELS = "v1@0.25,v2@0.35"
SIZE = 64
FAKE_TIMES_MS = [10.0, 11.0, 12.0, 13.0, 10.0]  # bench_fakes.FakeMeasure's default times, in ms


@pytest.fixture(scope="module")
def full() -> Comparison:
    """Every part at once: the fvcore convention, fvcore's and thop's own totals, measured on a fake timer."""
    pytest.importorskip("fvcore")
    pytest.importorskip("thop")
    from bench_fakes import FakeMeasure

    return compare_models(MODELS, SIZE, counters="fvcore,thop", convention="fvcore", bench=True,
                          measure_fn=FakeMeasure(run_fn=False))


def _live_totals(spec: str) -> dict[str, float]:
    """fvcore's and thop's totals, each library called directly on a freshly built module (zero input)."""
    import thop
    import torch
    from fvcore.nn import FlopCountAnalysis

    x = torch.zeros(1, 3, SIZE, SIZE)
    with torch.no_grad():
        fca = FlopCountAnalysis(mbcost.build_model(spec).eval(), (x,))
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        ops, _params = thop.profile(mbcost.build_model(spec).eval(), inputs=(x,), verbose=False)
    return {"fvcore": fca.total(), "thop": ops}


# -- the library result holds raw numbers ------------------------------------------------------------------


def _flop_counter(spec: str) -> int:
    """FlopCounterMode's total on a freshly built module (zero input): 2 FLOPs per MAC of the convolutions and
    matrix products, bias excluded, so twice the paper's MACs on the zoo's models."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        mbcost.build_model(spec).eval()(torch.zeros(1, 3, SIZE, SIZE))
    return counter.get_total_flops()


def test_costs_equal_a_live_flop_counter_and_the_modules_parameters(full):
    for spec, cost, cc in zip(MODELS.split(","), full.costs, full.convention_costs, strict=True):
        assert 2 * cost.macs == _flop_counter(spec)
        assert cost.params == sum(p.numel() for p in mbcost.build_model(spec).parameters())
        assert cc.convention == "fvcore"  # its total against fvcore itself: test_counter_totals_equal_the_live_...
    assert full.convention == "fvcore" and full.labels == ["v1@0.25", "v2@0.35"]


def test_counter_totals_equal_the_live_libraries(full):
    assert full.counters == ("fvcore", "thop")
    for spec, results, presets in zip(MODELS.split(","), full.counter_results, full.preset_totals, strict=True):
        live = _live_totals(spec)
        assert {r.counter: r.total for r in results} == live
        assert presets == live  # every preset reproduces its library on the zoo
    assert [full.preset_gap(m, c) for m in (0, 1) for c in ("fvcore", "thop")] == [0, 0, 0, 0]
    # the convention's total is the fvcore preset, so it equals fvcore's own count too
    assert [cc.total for cc in full.convention_costs] == [_live_totals(s)["fvcore"] for s in MODELS.split(",")]


def test_measured_records_carry_the_fake_timers_times(full):
    devices = available_devices()
    assert [(r.model, r.device) for r in full.measured] == [(m, d) for d in devices for m in full.labels]
    for r in full.measured:
        assert r.times_ms == pytest.approx(FAKE_TIMES_MS)
        assert r.median_ms == pytest.approx(11.0)
        assert r.runs == 5
    assert full.skipped == ()
    assert full.measured_for("v2@0.35") == [r for r in full.measured if r.model == "v2@0.35"]


def test_speedups_are_the_measured_median_ratio_next_to_the_mac_ratio(monkeypatch):
    from bench_fakes import FakeMeasure

    monkeypatch.setattr("mbcost.bench.devices.available_devices", lambda: ["cpu"])
    # one timed call per model, in order: v1@0.25 takes 10 ms, v2@0.35 takes 30 ms
    fake = FakeMeasure(run_fn=False, times_for=lambda call: (0.010,) * 5 if call % 2 else (0.030,) * 5)
    c = compare_models(MODELS, SIZE, bench=True, measure_fn=fake)
    ups = {(s.model, s.other): s for s in c.speedups}
    assert fake.calls == 2 and ups[("v1@0.25", "v2@0.35")].measured == pytest.approx(3.0)  # 30 ms / 10 ms
    assert ups[("v2@0.35", "v1@0.25")].measured == pytest.approx(1 / 3)
    v1, v2 = (_flop_counter(s) for s in MODELS.split(","))  # FLOPs = 2 x MACs: the ratio is the MAC ratio
    assert ups[("v1@0.25", "v2@0.35")].macs_ratio == pytest.approx(v2 / v1, rel=1e-12)


def test_counters_run_only_when_asked_and_measuring_is_on_unless_turned_off(fake, monkeypatch):
    monkeypatch.setattr("mbcost.bench.devices.available_devices", lambda: ["cpu"])
    c = compare_models("v1@0.25", SIZE, measure_fn=fake)  # as mbcost compare: measured unless --no-bench
    assert c.convention == "paper" and c.counters == () and c.counter_results == ()
    assert c.bench and [r.device for r in c.measured] == ["cpu"] and fake.calls == 1
    c = compare_models("v1@0.25", SIZE, bench=False, measure_fn=fake)
    assert not c.bench and c.measured == () and fake.calls == 1
    assert c.convention_costs[0].total == c.costs[0].macs  # the paper's convention is the analytic MACs


def test_a_device_that_cannot_run_is_skipped_with_its_reason(monkeypatch, fake):
    monkeypatch.setattr("mbcost.bench.devices.available_devices", lambda: ["cpu", "tpu"])
    c = compare_models("v1@0.25", SIZE, bench=True, measure_fn=fake)
    assert [r.device for r in c.measured] == ["cpu"]
    assert c.skipped == (SkippedDevice("tpu", "unknown device 'tpu'; use cpu or cuda (cuda:N for a given GPU)"),)
    rows = comparison_table(c).rows
    assert ["measured: tpu skipped (unknown device 'tpu'; use cpu or cuda (cuda:N for a given GPU))", ""] in rows


@pytest.mark.parametrize("kwargs,message", [
    ({"models": []}, "no models given"),
    ({"models": "v1", "convention": "flops"}, "unknown convention 'flops'"),
    ({"models": "v1", "counters": "nope"}, "unknown counter 'nope'"),
])
def test_bad_arguments_raise_one_typed_error(kwargs, message):
    with pytest.raises(SpecError, match=message):
        compare_models(inputs=SIZE, **kwargs)


# -- render: pure functions -------------------------------------------------------------------------------


def test_render_functions_leave_the_comparison_unchanged(full):
    before = copy.deepcopy(full)
    table, records, document = comparison_table(full), comparison_records(full), comparison_document(full)
    assert full == before
    # a second rendering is the same, and is built afresh: changing what one returned changes nothing else
    assert comparison_table(full) == table and comparison_records(full) == records
    assert comparison_document(full) == document
    document["models"][0]["counter_details"]["fvcore"]["unsupported"]["x"] = 1
    document["conventions"]["macs"] = "changed"
    records[0]["convention"] = "changed"
    table.rows.clear()
    assert full == before
    assert comparison_document(full)["conventions"]["macs"].startswith("fvcore convention: ")
    assert comparison_records(full)[0]["convention"] == "fvcore" and comparison_table(full).rows


def test_rendered_outputs_show_the_comparisons_numbers(full):
    v1 = full.costs[0]
    doc = comparison_document(full)
    entry = doc["models"][0]
    assert doc["convention"] == "fvcore"
    assert entry["macs"] == full.convention_costs[0].total and entry["convention_macs"] == full.convention_costs[0].macs
    assert entry["counters"] == {r.counter: r.total for r in full.counter_results[0]}
    assert entry["counter_details"]["thop"]["preset_total"] == full.preset_totals[0]["thop"]
    assert [m["median_ms"] for m in entry["measured"]] == [r.median_ms for r in full.measured_for(v1.label)]
    row = comparison_records(full)[0]
    assert row["convention"] == "fvcore" and row["convention_total"] == full.convention_costs[0].total
    assert row["fvcore_total"] == full.counter_results[0][0].total and row["cpu_median_ms"] == pytest.approx(11.0)
    table = comparison_table(full)
    names = [r[0] for r in table.rows]
    assert names.index("fvcore total (MACs + counted elementwise ops (fvcore calls them flops))") \
        == names.index("elementwise ops") + 1  # the convention's figures follow the paper's counts
    assert "fvcore preset vs library" in names and "CPU float32 latency (median, batch 1)" in names
    assert table.rows[names.index("fvcore preset vs library")][1:] == ["exact", "exact"]
    assert table.title.endswith(", with the fvcore convention's figures")


def test_the_cli_only_renders_the_library_result(cli):
    r = cli("compare", "--models", MODELS, "--input", str(SIZE), "--convention", "thop", "--no-bench",
            "--format", "json")
    assert r.exit_code == 0, r.output
    c = compare_models(MODELS, SIZE, convention="thop", bench=False)
    assert json.loads(r.stdout) == json.loads(to_json(comparison_document(c)))


# -- mbcost conv --bench ----------------------------------------------------------------------------------


def test_conv_render_leaves_the_comparison_and_the_record_unchanged(fake):
    c = mbcost.compare_conv(16, 16, 3, 8)
    r = measure_conv(c, measure_fn=fake)
    assert (r.standard_ms, r.separable_ms) == (pytest.approx(11.0), pytest.approx(11.0))
    assert fake.calls == 2  # the standard conv, then the separable pair
    c0, r0 = copy.deepcopy(c), copy.deepcopy(r)
    table, records, document = conv_table(c, r), conv_records(c, r), conv_document(c, r)
    assert c == c0 and r == r0
    plain = conv_table(c)
    assert table.rows[: len(plain.rows)] == plain.rows and len(table.rows) == len(plain.rows) + 3
    assert table.rows[-1][0] == "measured speed-up (standard / separable)" and table.rows[-1][-1].startswith("1.00x")
    assert records[0]["measured_speedup"] == pytest.approx(1.0) and "standard_ms" not in conv_records(c)[0]
    assert document["measured"] == r.to_dict() and document == {**c.to_dict(), "measured": r.to_dict()}
    document["ratio"] = "changed"
    assert conv_document(c) == c.to_dict() and "measured" not in conv_document(c)


# -- the one CPU + CUDA loop ------------------------------------------------------------------------------


def test_each_device_plans_each_device_or_says_why_not():
    seen = []

    def plan(settings):
        seen.append(settings.device.type)
        return []

    runs = list(each_device(plan, devices=["cpu", "tpu"]))
    assert [r.device for r in runs] == ["cpu", "tpu"] and seen == ["cpu"]
    assert runs[0].settings is not None and runs[0].settings.dtype == "float32" and runs[0].error is None
    assert runs[1].settings is None and isinstance(runs[1].error, MbcostError)
    assert "unknown device 'tpu'" in str(runs[1].error)
    assert [r.device for r in each_device(plan)] == available_devices()


def test_a_refusing_plan_is_a_skipped_device():
    from mbcost.bench.errors import MemoryRefusal

    def plan(settings):
        raise MemoryRefusal("needs 1 TB")

    (only,) = each_device(plan, devices=["cpu"])
    assert only.settings is None and str(only.error) == "needs 1 TB"


def test_report_measurement_raises_for_its_first_device():
    from mbcost.report.measure import measure_now
    from mbcost.zoo.spec import resolve_sources

    with pytest.raises(MbcostError, match="unknown device 'tpu'"):
        measure_now(resolve_sources("v1@0.25"), SIZE, devices=["tpu", "cpu"])


def test_compare_measures_through_the_cli_on_the_fake_timer(fake):
    result = run("compare", "--models", "v2@0.35", "--input", str(SIZE), "--format", "json", measure=fake)
    assert result.exit_code == 0, result.output
    measured = json.loads(result.stdout)["models"][0]["measured"]
    assert [m["device"] for m in measured] == available_devices()
    assert all(m["median_ms"] == pytest.approx(11.0) for m in measured)
