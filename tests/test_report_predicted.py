"""mbcost report: predicted against measured latency (issue 19), with a hand-made device profile."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from predict_fakes import hand_profile
from report_samples import CPU, typed_records_for

import mbcost
from mbcost.bench.records import ModelRecord
from mbcost.predict.profile import ProfileKey, save_profile
from mbcost.report import data as rdata
from mbcost.report.figures import report_figures
from mbcost.report.html import render_html

MODELS = ("v1", "v2")


@pytest.fixture(scope="module")
def records() -> list:
    """CPU eager float32 records of v1 and v2; each model's timed runs spread, the fastest 10 % under the median."""
    out = []
    for r in typed_records_for(CPU, MODELS):
        if isinstance(r, ModelRecord):
            r = replace(r, times_ms=(r.median_ms * 1.2, r.median_ms * 0.9, r.median_ms))
        out.append(r)
    return out


def run_key(r: ModelRecord) -> ProfileKey:
    """The setup the sample CPU run was measured under, as a profile key (what calibrating there would write)."""
    return ProfileKey(device="cpu", device_name=CPU["device_name"], runtime="eager", precision="float32",
                      threads=CPU["threads"], torch=r.env.torch, runtime_version=r.env.torch)


def test_a_matching_profile_in_the_cache_adds_the_figure_with_mbcost_predicts_numbers(records, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setenv("MBCOST_PROFILE_DIR", str(tmp_path))
    model = next(r for r in records if isinstance(r, ModelRecord))
    profile = hand_profile(run_key(model))
    save_profile(profile)
    data = rdata.gather(",".join(MODELS), 224, records=records, claims=False)
    pred = data.predicted
    assert pred is not None and not pred.forced and data.predicted_hint == ""
    # the same numbers mbcost.predict gives on its own, from the model spec and the profile
    direct = {m: mbcost.predict(m, 224, profile=profile) for m in MODELS}
    assert [p.model for p in pred.points] == [direct[m].model for m in MODELS]
    for p in pred.points:
        assert p.predicted_ms == pytest.approx(direct[p.model].predicted_ms, rel=1e-12)
        assert p.interval_ms == pytest.approx(direct[p.model].interval_ms, rel=1e-12)
        rec = next(r for r in records if isinstance(r, ModelRecord) and r.model == p.model)
        assert p.measured_ms == rec.median_ms * 0.9  # the fastest of (1.2, 0.9, 1.0) x median
        assert p.error == pytest.approx(p.predicted_ms / p.measured_ms - 1)
    fig = report_figures(data)["predicted"]
    points = next(t for t in fig.data if t.name == "models")
    assert list(points.y) == [direct[m].predicted_ms for m in MODELS]
    assert list(points.text) == list(MODELS)
    line = next(t for t in fig.data if t.name == "predicted = measured")
    assert list(line.x) == list(line.y)  # y = x
    page = render_html(data, {"predicted": fig})
    assert "data-figure='predicted'" in page and "<table id='predicted-table'>" in page
    assert "FORCED" not in page and "predicted-hint" not in page


def test_without_a_profile_no_figure_and_one_line_naming_mbcost_calibrate(records, tmp_path, monkeypatch):
    monkeypatch.setenv("MBCOST_PROFILE_DIR", str(tmp_path))
    data = rdata.gather(",".join(MODELS), 224, records=records, claims=False)
    assert data.predicted is None and "predicted" not in report_figures(data)
    assert "\n" not in data.predicted_hint
    assert "run mbcost calibrate --device cpu --runtime eager --precision float32 --threads 2" in data.predicted_hint
    assert "<p class='small' id='predicted-hint'>predicted vs measured latency: no device profile" in \
        render_html(data, {})
    nothing = rdata.gather("v2", 224, claims=False)  # nothing measured: the hint says what is needed
    assert nothing.predicted is None and "mbcost calibrate" in nothing.predicted_hint


def test_cli_profile_made_elsewhere_is_forced_and_said_so(cli, records, tmp_path):
    f = tmp_path / "cpu.jsonl"
    f.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records), encoding="utf-8")
    prof = save_profile(hand_profile(), tmp_path / "other.json")  # made on "Test CPU 9000", 1 thread, torch 2.0.0
    out = tmp_path / "r.html"
    r = cli("report", "--models", "v1,v2", "--no-bench", "--from", str(f), "--profile", str(prof), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "mbcost: warning: forced: profile made for another setup (device_name 'Test CPU 9000' vs " \
           f"'{CPU['device_name']}'; threads 1 vs 2;" in r.stderr
    page = out.read_text(encoding="utf-8")
    assert "data-figure='predicted'" in page and "FORCED: the profile was made for another setup" in page


def test_cli_corrupt_profile_is_one_line_exit_2_before_measuring(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "key": ', encoding="utf-8")
    r = cli("report", "--models", "v2", "--profile", str(bad), "--out", str(tmp_path / "r.html"))  # would measure
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [f"mbcost: error: corrupt device profile {bad}: Expecting value at line 1"]
    assert not (tmp_path / "r.html").exists()
