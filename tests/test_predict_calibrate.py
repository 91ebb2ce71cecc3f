"""Calibration (issue 19) on a fake timer and a stepping clock: what it fits, resuming after an interrupt,
the samples file, the CLI's one-line refusals. The fake prices each grid point from its features with known
coefficients (``tests/predict_fakes.py``), so the fitted numbers are checked against them; no real time is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_fakes import one_line_error, run
from predict_fakes import TRUE_COEF, TRUE_PER_CALL, TRUE_SCALE, FakeTimer, StepClock, true_seconds

from mbcost.predict.calibrate import calibrate
from mbcost.predict.predictor import predict
from mbcost.predict.profile import load_profile, read_samples
from mbcost.predict.sampling import BATCH

#: A whole model small enough to build in a test: MobileNetV1 at width 0.25.
MODELS = ("v1@0.25",)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MBCOST_PROFILE_DIR")
    monkeypatch.chdir(tmp_path)


def _calibrate(timer: FakeTimer, budget_minutes: float = 1.0, **kw):  # noqa: ANN202
    # one clock step per read: the kernel phase (75% of 60 s) lasts about 45 reads, two per batch
    return calibrate(threads=1, budget_minutes=budget_minutes, models=MODELS, time_fn=timer, clock=StepClock(1.0),
                     measure_peaks=False, **{"warm_zoo": False, **kw})


def test_calibration_fits_the_fake_devices_rates():
    report = _calibrate(FakeTimer())
    prof = load_profile(report.path)
    conv = prof.kernels["conv"]
    # the fake's times are exact: 2 us per call, 0.1 ns per MAC, 0.05 ns per byte
    assert conv.coef[0] == pytest.approx(TRUE_COEF[0], rel=1e-4)
    assert conv.coef[1] == pytest.approx(TRUE_COEF[1], rel=1e-4)
    assert conv.coef[3] == pytest.approx(TRUE_COEF[3], rel=1e-4)
    assert conv.mape < 1e-4
    assert report.kernel_samples > 2 * BATCH and report.resumed == 0
    assert set(report.models) == set(MODELS)
    # one model: the correction is its ratio, measured / kernel sum; the model is then predicted exactly
    p = predict("v1@0.25", None, threads=1, profile=report.path)
    assert p.seconds == pytest.approx(report.models["v1@0.25"], rel=1e-6)
    assert prof.correction.models == 1


def test_an_interrupted_calibration_resumes_with_its_samples():
    timer = FakeTimer(interrupt_at=3)  # two batches timed, the third interrupted
    with pytest.raises(KeyboardInterrupt):
        _calibrate(timer)
    cache = Path.cwd() / "cache" / "mbcost" / "profiles"
    [samples] = list(cache.glob("*.samples.jsonl"))
    first = samples.read_text().splitlines()
    assert len(first) == 2 * BATCH  # every timed sample was kept, nothing of the interrupted batch
    assert not list(cache.glob("*-t1.json"))  # no profile from an unfinished run
    report = _calibrate(FakeTimer())
    assert report.resumed == 2 * BATCH
    assert samples.read_text().splitlines()[:2 * BATCH] == first  # kept as they were
    assert report.kernel_samples > 2 * BATCH


def test_a_torn_last_line_is_skipped_on_resume():
    with pytest.raises(KeyboardInterrupt):
        _calibrate(FakeTimer(interrupt_at=2))
    [samples] = list((Path.cwd() / "cache" / "mbcost" / "profiles").glob("*.samples.jsonl"))
    with samples.open("a") as fh:
        fh.write('{"type": "kernel", "kind": "co')  # a write cut short by the interrupt
    key = json.loads(samples.read_text().splitlines()[0])["key"]
    from mbcost.predict.profile import ProfileKey

    assert len(read_samples(samples, ProfileKey(**key))) == BATCH
    assert _calibrate(FakeTimer()).resumed == BATCH


def test_samples_record_what_a_fake_timer_returned():
    report = _calibrate(FakeTimer())
    lines = [json.loads(ln) for ln in Path(report.samples_path).read_text().splitlines()]
    kernels = [s for s in lines if s["type"] == "kernel"]
    assert all(s["seconds"] == pytest.approx(true_seconds(s["features"])) for s in kernels)
    [model] = [s for s in lines if s["type"] == "model"]
    expected = TRUE_SCALE * sum(true_seconds(f) for _, f in model["kernels"]) + TRUE_PER_CALL * len(model["kernels"])
    assert model["seconds"] == pytest.approx(expected)


@pytest.mark.parametrize(("args", "words"), [
    (["--runtime", "openvino"], "calibration covers --runtime eager and onnxruntime"),
    (["--runtime", "nope"], "unknown runtime"),
    (["--precision", "int8"], "float32"),
    (["--budget", "0"], "--budget"),
    (["--threads", "0"], "--threads"),
])
def test_calibrate_refusals_are_one_line(args, words):
    assert words in one_line_error(run("calibrate", *args))


def test_a_calibration_model_that_cannot_be_built_is_skipped_and_named():
    report = calibrate(threads=1, budget_minutes=1.0, models=("v1@0.25", "no_such_module_xyz:factory"),
                       time_fn=FakeTimer(), clock=StepClock(1.0), measure_peaks=False)
    assert set(report.models) == {"v1@0.25"}
    assert "no_such_module_xyz" in report.skipped["no_such_module_xyz:factory"]


def test_fresh_discards_earlier_samples():
    with pytest.raises(KeyboardInterrupt):
        _calibrate(FakeTimer(interrupt_at=2))
    assert _calibrate(FakeTimer(), fresh=True).resumed == 0


def test_calibration_leaves_the_zoos_analyses_in_the_cache(monkeypatch, tmp_path):
    """So that a zoo model's first ``mbcost predict`` needs no torch (``tests/test_predict_cache.py``)."""
    import mbcost
    from mbcost.predict import cache
    from mbcost.zoo.catalog import list_models

    monkeypatch.setenv("MBCOST_ANALYSIS_DIR", str(tmp_path / "analyses"))
    assert all(cache.load(cache.cache_key(name, None, 1, 1000)) is None for name in list_models())
    _calibrate(FakeTimer(), warm_zoo=True)
    for name in list_models():
        found = cache.load(cache.cache_key(name, None, 1, 1000))
        assert found is not None and found.macs == mbcost.analyze(name).macs
