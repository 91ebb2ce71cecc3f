"""Predicted latency (issue 19): the fitted models' arithmetic, kinds and fusion, profiles and their refusals,
prediction without running the model, the CLI's JSON and one-line errors.

Expected numbers are derived by hand in the comments from the hand-made profile of ``tests/predict_fakes.py``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from bench_fakes import one_line_error, run
from predict_fakes import hand_profile, key
from torch import nn

import mbcost
from mbcost.predict.fit import KernelModel, fit_correction, fit_kernel, nnls, ratio_quantiles
from mbcost.predict.fusion import kernels_of
from mbcost.predict.kinds import model_kind
from mbcost.predict.predictor import current_key, find_profile, predict, predict_cost
from mbcost.predict.profile import ProfileError, Roofline, load_profile, profile_path, save_profile
from mbcost.predict.sets import CALIBRATION_MODELS, QUICK_TEST_MODELS, TEST_MODELS


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """tests/ importable (predict_models), an empty cache, the cwd a fresh directory."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MBCOST_PROFILE_DIR")
    monkeypatch.chdir(tmp_path)


def _here(**changes):  # noqa: ANN202
    """This machine's key for eager float32 at one thread, with ``changes``."""
    return replace(current_key("cpu", "eager", "float32", 1), **changes)


# --- fitting --------------------------------------------------------------------------------------

def test_nnls_matches_the_unconstrained_solution_when_it_is_non_negative():
    # y = 3 + 2 x at x = 0, 1, 2: exact, both coefficients positive
    assert [round(v, 9) for v in nnls([[1, 0], [1, 1], [1, 2]], [3, 5, 7])] == [3.0, 2.0]


def test_nnls_clamps_a_negative_coefficient():
    # y = 4 - x at x = 0..3: the slope would be -1; with it held at 0 the best constant is the mean, 2.5
    assert [round(v, 9) for v in nnls([[1, 0], [1, 1], [1, 2], [1, 3]], [4, 3, 2, 1])] == [2.5, 0.0]


def test_fit_kernel_recovers_known_rates():
    # t = 2 us + 0.1 ns per MAC + 0.05 ns per byte, exact: the fit finds the three and an error of zero
    rows = [(1.0, float(m), 0.0, float(b), 0.0, 0.0) for m in (1e5, 1e6, 1e7, 3e7) for b in (1e4, 1e5, 1e6)]
    secs = [2e-6 + 1e-10 * r[1] + 5e-11 * r[3] for r in rows]
    model = fit_kernel("conv", rows, secs)
    assert model.coef[0] == pytest.approx(2e-6, rel=1e-6)
    assert model.coef[1] == pytest.approx(1e-10, rel=1e-6)
    assert model.coef[3] == pytest.approx(5e-11, rel=1e-6)
    assert model.mape < 1e-6 and model.low == pytest.approx(1.0) and model.high == pytest.approx(1.0)


def test_kernel_model_and_roofline_arithmetic():
    # 1 us + 1e4 MACs x 1 ns = 11 us
    assert KernelModel("conv", (1e-6, 1e-9, 0, 0, 0, 0), 1, 1, 0, 1).seconds((1, 1e4, 5, 9, 9, 9)) == \
        pytest.approx(11e-6)
    # 1 us + max(2 x 1e6 / 100e9 = 20 us, 1e6 B / 10e9 = 100 us) = 101 us
    assert Roofline(100.0, 10.0, 1e-6).seconds(1e6, 1e6) == pytest.approx(101e-6)


def test_ratio_quantiles_interpolate():
    # 10th percentile of 1..11 is 2, 90th is 10
    assert ratio_quantiles([float(v) for v in range(1, 12)]) == (2.0, 10.0)


def test_fit_correction_recovers_a_scale_and_a_per_call_cost():
    # each model: 1.5 x its kernel seconds + 3 us per kernel; 8 models give room for the two-term variants
    models = [({"compute": 1e-3 * i, "memory": 2e-4 * i}, 50 * i + 7, 1.5 * 1.2e-3 * i + 3e-6 * (50 * i + 7))
              for i in range(1, 9)]
    corr = fit_correction(models)
    assert corr.mape < 1e-6
    assert corr.seconds({"compute": 1e-3, "memory": 2e-4}, 57) == pytest.approx(1.5 * 1.2e-3 + 3e-6 * 57)
    assert corr.models == 8


# --- kinds and fusion ------------------------------------------------------------------------------

@pytest.mark.parametrize(("conv", "kind"), [
    (nn.Conv2d(16, 16, 3, groups=16), "dwconv"),
    (nn.Conv2d(16, 32, 1), "pwconv"),
    (nn.Conv2d(16, 32, 3, groups=4), "grouped_conv"),
    (nn.Conv2d(16, 32, 5, stride=2), "conv"),
])
def test_model_kind_of_analysed_convolutions(conv, kind):
    cost = mbcost.analyze(conv, "1x16x14x14")
    assert model_kind(cost.layers[0]) == kind


def test_onnxruntime_fuses_conv_bn_and_a_fusable_activation_only():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8),
                        nn.Hardswish()).eval()
    cost = mbcost.analyze(net, "1x3x16x16")
    assert len(kernels_of(cost.layers, "eager")) == 6
    fused = kernels_of(cost.layers, "onnxruntime")
    # conv+bn+relu is one kernel; conv+bn another; ONNX Runtime does not fuse HardSwish into a conv here
    assert [(k.kind, len(k.layers)) for k in fused] == [("conv", 3), ("pwconv", 2), ("activation.hardswish", 1)]


def test_calibration_and_test_models_are_disjoint():
    assert not set(CALIBRATION_MODELS) & set(TEST_MODELS)
    assert len(TEST_MODELS) >= 20 and set(QUICK_TEST_MODELS) <= set(TEST_MODELS)


# --- prediction, by hand ---------------------------------------------------------------------------

def _conv_relu_expected() -> tuple[float, float]:
    # conv 3->8, 3x3 on 8x8: 8*8*8*27 = 13824 MACs: kernel 1 us + 13.824 us = 14.824 us; corrected x2 + 1 us
    conv = 2 * (1e-6 + 13824e-9) + 1e-6  # 30.648 us
    # relu on 8x8x8 float32: 2048 B read + 2048 B written = 4096 B: 0.5 us + 0.4096 us; x2 + 1 us
    relu = 2 * (5e-7 + 4096e-10) + 1e-6  # 2.8192 us
    return conv, relu


def test_predict_prices_each_kernel_and_corrects_the_total():
    from predict_models import ConvRelu

    conv, relu = _conv_relu_expected()
    p = predict(ConvRelu(), "1x3x8x8", threads=1, profile=hand_profile(_here()))
    assert [lp.seconds for lp in p.layers] == [pytest.approx(conv), pytest.approx(relu)]
    assert p.seconds == pytest.approx(conv + relu)  # 33.4672 us
    # the total's interval: the correction's leave-one-out quantiles 0.95 and 1.1; the conv's: 0.9 and 1.2
    assert (p.low_s, p.high_s) == (pytest.approx(0.95 * (conv + relu)), pytest.approx(1.1 * (conv + relu)))
    assert (p.layers[0].low_s, p.layers[0].high_s) == (pytest.approx(0.9 * conv), pytest.approx(1.2 * conv))
    assert not p.forced and not p.roofline_kinds


def test_a_kind_without_a_model_is_priced_by_the_roofline_and_flagged():
    from predict_models import ConvRelu

    p = predict(ConvRelu(), "1x3x8x8", threads=1, profile=hand_profile(_here(), conv_only=True))
    # relu: 1 us + max(0, 4096 B / 10 GB/s = 0.4096 us) = 1.4096 us; corrected x2 + 1 us = 3.8192 us
    assert p.layers[1].seconds == pytest.approx(3.8192e-6)
    assert p.layers[1].roofline and not p.layers[0].roofline
    assert p.roofline_kinds == ("activation.relu",)


def test_predict_does_not_run_the_model():
    from predict_models import MetaOnly

    with pytest.raises(RuntimeError, match="real data"):  # the forward refuses real tensors
        import torch

        MetaOnly()(torch.zeros(1, 3, 8, 8))
    conv, relu = _conv_relu_expected()
    p = predict(MetaOnly(), "1x3x8x8", threads=1, profile=hand_profile(_here()))
    assert p.seconds == pytest.approx(conv + relu)


def test_predict_cli_json_shape(tmp_path):
    path = save_profile(hand_profile(_here()), tmp_path / "p.json")
    r = run("predict", "predict_models:meta_only", "--input", "1x3x8x8", "--threads", "1", "--profile", str(path),
            "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    conv, relu = _conv_relu_expected()
    assert doc["predicted_ms"] == pytest.approx((conv + relu) * 1e3)
    assert doc["interval_ms"] == [pytest.approx(0.95 * (conv + relu) * 1e3), pytest.approx(1.1 * (conv + relu) * 1e3)]
    assert [lay["predicted_ms"] for lay in doc["layers"]] == [pytest.approx(conv * 1e3), pytest.approx(relu * 1e3)]
    assert doc["forced"] is False


def test_predict_table_names_the_profile(tmp_path):
    path = save_profile(hand_profile(_here()), tmp_path / "p.json")
    r = run("predict", "predict_models:conv_relu", "--input", "1x3x8x8", "--threads", "1", "--profile", str(path),
            "--format", "markdown")
    assert r.exit_code == 0, r.output
    assert "| total |" in r.stdout and "predicted, not measured" in r.stdout


def test_predict_names_the_model_with_its_width(tmp_path):
    # v1@0.25 was reported as "v1": the width, what tells it from v1, was dropped from the title and the JSON
    path = save_profile(hand_profile(_here()), tmp_path / "p.json")
    r = run("predict", "v1@0.25", "--input", "32", "--threads", "1", "--profile", str(path), "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["model"] == "v1@0.25"


# --- profiles: keys, refusals, corrupt files, atomic writes -------------------------------------------

def test_profile_round_trips_and_is_keyed_by_its_setup(tmp_path):
    k = key(threads=2, runtime="onnxruntime")
    assert profile_path(k).name == "cpu-onnxruntime-float32-t2.json"
    path = save_profile(hand_profile(k))
    assert path == profile_path(k)
    loaded = load_profile(path)
    assert loaded.key == k and loaded.kernels == hand_profile(k).kernels


def test_no_profile_names_mbcost_calibrate():
    line = one_line_error(run("predict", "predict_models:conv_relu", "--input", "1x3x8x8", "--threads", "1"))
    assert "no device profile" in line and "mbcost calibrate" in line and "--threads 1" in line


def test_a_profile_made_elsewhere_is_refused_naming_both():
    here = _here()
    save_profile(hand_profile(replace(here, torch="1.0.0", device_name="Other CPU")), profile_path(here))
    line = one_line_error(run("predict", "predict_models:conv_relu", "--input", "1x3x8x8", "--threads", "1"))
    assert "Other CPU" in line and here.device_name in line and "'1.0.0'" in line and "--profile" in line
    with pytest.raises(ProfileError):
        find_profile(here)


def test_profile_flag_forces_a_mismatched_profile_and_says_so(tmp_path):
    here = _here()
    path = save_profile(hand_profile(replace(here, threads=7)), tmp_path / "other.json")
    r = run("predict", "predict_models:conv_relu", "--input", "1x3x8x8", "--threads", "1", "--profile", str(path),
            "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["forced"] is True and any("threads 7 vs 1" in m for m in doc["mismatch"])
    assert "forced" in r.stderr
    table = run("predict", "predict_models:conv_relu", "--input", "1x3x8x8", "--threads", "1", "--profile", str(path),
                "--format", "markdown")
    assert "FORCED" in table.stdout


@pytest.mark.parametrize("text", ["{not json", "[]", '{"version": 1}', '{"version": 99}', ""])
def test_a_corrupt_profile_is_one_line_exit_2(tmp_path, text):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    line = one_line_error(run("predict", "predict_models:conv_relu", "--input", "1x3x8x8", "--profile", str(bad)))
    assert "profile" in line
    here = _here()
    profile_path(here).parent.mkdir(parents=True, exist_ok=True)
    profile_path(here).write_text(text)  # the cache's own file, corrupt
    one_line_error(run("predict", "predict_models:conv_relu", "--input", "1x3x8x8", "--threads", "1"))


def test_a_profile_with_negative_rates_is_corrupt(tmp_path):
    doc = json.loads(json.dumps(hand_profile(_here()).to_dict()))
    doc["kernels"]["conv"]["coef"][1] = -1.0
    bad = tmp_path / "neg.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ProfileError, match="corrupt"):
        load_profile(bad)


def test_save_profile_is_atomic(tmp_path, monkeypatch):
    path = save_profile(hand_profile(key()), tmp_path / "p.json")
    before = path.read_text()

    def broken_replace(src, dst):  # noqa: ANN001, ANN202
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(mbcost.errors.UsageError):
        save_profile(hand_profile(key(threads=3)), path)
    assert path.read_text() == before  # the old profile whole
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # no temporary file left behind


def test_predict_cost_sums_only_priced_kernels():
    cost = mbcost.analyze(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU()), "1x3x8x8")
    p = predict_cost(cost, hand_profile())
    assert math.isclose(p.seconds, sum(lp.seconds for lp in p.layers))
    assert p.seconds == pytest.approx(sum(_conv_relu_expected()))  # the hand-priced conv and relu, 33.4672 us
    assert p.macs == 13824  # 8*8*8*27


def test_predict_import_path_stays_light():
    """``mbcost predict`` loads neither scikit-learn nor torch.utils.benchmark (the measuring path)."""
    code = ("import sys, mbcost.cli.predict, mbcost.predict.predictor, mbcost.render.predict; "
            "print(sorted(m for m in ('sklearn', 'torch.utils.benchmark', 'scipy') if m in sys.modules))")
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": root}).stdout
    assert out.strip() == "[]"


def test_mbcost_predict_is_the_api_whether_or_not_the_package_was_imported():
    import importlib

    from predict_models import ConvRelu

    import mbcost.predict.predictor  # binds the package as ``mbcost.predict``

    conv, relu = _conv_relu_expected()
    assert importlib.import_module("mbcost").predict is mbcost.predict
    p = mbcost.predict(ConvRelu(), "1x3x8x8", threads=1, profile=hand_profile(_here()))
    assert isinstance(p, mbcost.predict.Prediction) and p.seconds == pytest.approx(conv + relu)


def test_compare_adds_predicted_latency_when_the_device_has_a_profile():
    conv, relu = _conv_relu_expected()
    args = ("compare", "--models", "predict_models:conv_relu", "--input", "1x3x8x8", "--no-bench")
    assert "predicted" not in run(*args, "--format", "markdown").stdout  # no profile: no row
    import torch

    save_profile(hand_profile(_here(threads=torch.get_num_threads())))  # compare runs at torch's threads
    doc = json.loads(run(*args, "--format", "json").stdout)
    [model] = doc["models"]
    assert model["predicted"]["predicted_ms"] == pytest.approx((conv + relu) * 1e3)
    table = run(*args, "--format", "markdown").stdout
    assert "| predicted latency (cpu, eager) | 0.03 ms (0.03-0.04) |" in table  # 33.47 us, 31.79-36.81 us


def test_a_sample_slowed_by_a_load_spike_does_not_move_the_fit():
    # t = 2 us + 0.1 ns per MAC, except one sample measured 5x slow (a spike): the trimmed fit ignores it
    rows = [(1.0, float(m), 0.0, 0.0, 0.0, 0.0) for m in (1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7)]
    secs = [2e-6 + 1e-10 * r[1] for r in rows]
    secs[3] *= 5
    model = fit_kernel("conv", rows, secs)
    assert model.coef[0] == pytest.approx(2e-6, rel=1e-6) and model.coef[1] == pytest.approx(1e-10, rel=1e-6)


@pytest.mark.parametrize(("args", "words"), [
    (["--runtime", "openvino"], "prediction covers --runtime eager and onnxruntime"),
    (["--runtime", "nope"], "unknown runtime"),
    (["--precision", "int8"], "float32"),
])
def test_predict_refusals_are_one_line(args, words):
    assert words in one_line_error(run("predict", "v2", *args))
