"""Runtimes (``mbcost.bench.runtimes``): every runtime measured for real on a tiny conv net in float32 and int8
(their own toolchains export, quantize, lower and load it), the output check against eager float32, the
refusals, calibration files, thread settings and records written before runtimes existed.

The real measurements run once per module (``measured``) with a tiny budget; no test asserts a latency.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_fakes import FakeMeasure, one_line_error, run

from mbcost.bench.devices import resolve_device
from mbcost.bench.model_bench import BenchSettings, bench_runtimes, plan_models
from mbcost.bench.records import RunConfig, parse_record
from mbcost.bench.runtimes import EXTRA, PRECISIONS, RUNTIMES, Runtime, base
from mbcost.bench.runtimes.calibration import CHECK_SAMPLES, load_calibration, reestimate_batchnorm
from mbcost.bench.runtimes.check import check_outputs
from mbcost.bench.runtimes.eager import EAGER
from mbcost.bench.store import RecordWriter, load_records
from mbcost.bench.timer import Budget
from mbcost.cost.analyze import analyze
from mbcost.errors import SpecError
from mbcost.zoo.spec import parse_models

ROOT = Path(__file__).resolve().parents[1]
TINY_NET = "fixtures_models:tiny_convnet"
INPUT = "1x3x16x16"
BUDGET = Budget(min_run_time=0.005, max_run_time=0.02, min_runs=3, warmup=1)
TINY = ["--min-time", "0.001", "--max-time", "0.01", "--threads", "1"]
SMALL = ["--models", "v2@0.35", "--input", "32"]

needs_runtimes = pytest.mark.skipif(
    any(RUNTIMES[r].missing(p) for r in RUNTIMES for p in PRECISIONS),
    reason=f"needs every runtime's package: pip install '{EXTRA}'")


# -- every runtime, for real ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """{(runtime, precision): ModelRecord} of the tiny net on every runtime, and the JSON Lines file they were
    written to as they were measured (what ``--save`` does)."""
    path = tmp_path_factory.mktemp("runtimes") / "runs.jsonl"
    records = {}
    with RecordWriter(path) as out:
        for precision in PRECISIONS:
            settings = BenchSettings(resolve_device("cpu"), threads=1, precision=precision, budget=BUDGET).validated()
            plans = plan_models(parse_models(TINY_NET), INPUT, [1], settings)
            done = bench_runtimes(plans, settings, list(RUNTIMES), on_record=out.write)
            assert not done.failures, [f.message for f in done.failures]
            records.update({(r.runtime, precision): r for r in done.records})
    return records, path


@needs_runtimes
@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_float32_on_every_runtime_matches_eager(measured, runtime):
    r = measured[0][(runtime, "float32")]
    c = r.output_check
    assert (r.runtime, r.precision, r.dtype) == (runtime, "float32", "float32")
    assert c.reference == "eager float32" and c.passed
    if runtime == "eager":  # the reference itself: nothing run twice
        assert c.samples == 0 and c.rel_error == 0.0 and c.note == "the reference itself"
    else:
        # (top-1 agreement is not asserted: a random network's logits can tie within float32's rounding)
        assert c.samples == CHECK_SAMPLES and c.rel_error <= 1e-3 and c.top1_agreement is not None
    dist = RUNTIMES[runtime].dist
    assert r.runtime_version == (torch.__version__ if dist == "torch" else version(dist))
    assert r.median_ms > 0 and r.runs >= 3 and r.compile == (runtime == "compile")


# The one-time phases each toolchain goes through (the module docstrings of mbcost.bench.runtimes).
PHASES = {
    ("eager", "float32"): set(), ("eager", "int8"): {"quantize"},
    ("compile", "float32"): {"compile"}, ("compile", "int8"): {"export", "quantize", "compile"},
    ("onnxruntime", "float32"): {"export", "load"}, ("onnxruntime", "int8"): {"export", "quantize", "load"},
    ("openvino", "float32"): {"convert", "compile"}, ("openvino", "int8"): {"convert", "quantize", "compile"},
    ("executorch", "float32"): {"export", "lower", "load"},
    ("executorch", "int8"): {"quantize", "export", "lower", "load"},
}


@needs_runtimes
@pytest.mark.parametrize("key", list(PHASES), ids=lambda k: f"{k[0]}-{k[1]}")
def test_one_time_costs_are_recorded_by_phase(measured, key):
    r = measured[0][key]
    assert set(r.one_time_s) == PHASES[key]
    assert all(s >= 0 for s in r.one_time_s.values())


# The setting each runtime takes its intra-op threads from; openvino and executorch report theirs back.
THREAD_SETTINGS = {"eager": "intra_op_threads", "compile": "intra_op_threads", "onnxruntime": "intra_op_num_threads",
                   "openvino": "INFERENCE_NUM_THREADS", "executorch": "threadpool_threads"}


@needs_runtimes
@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_the_same_thread_count_is_set_on_every_runtime(measured, runtime):
    for precision in PRECISIONS:
        r = measured[0][(runtime, precision)]
        assert r.runtime_settings[THREAD_SETTINGS[runtime]] == 1 == r.threads
    assert measured[0][("onnxruntime", "float32")].runtime_settings["inter_op_num_threads"] == 1
    assert measured[0][("openvino", "float32")].runtime_settings["INFERENCE_PRECISION_HINT"] == "f32"


@needs_runtimes
@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_int8_is_quantized_calibrated_and_checked(measured, runtime):
    r, f32 = measured[0][(runtime, "int8")], measured[0][(runtime, "float32")]
    c = r.output_check
    assert r.precision == "int8" and r.dtype == "float32"
    assert r.estimated_peak_memory_bytes is None  # the analytic estimate counts float32 activations
    assert r.calibration.startswith("random: 8 batches") and r.batchnorm_reestimated
    assert c.passed and c.top1_agreement is not None
    # Rounding to int8 moves the outputs by far more than float32's kernel differences: a runtime that left
    # the network in float would land at the float32 row's error.
    assert c.rel_error > 100 * max(f32.output_check.rel_error, 1e-7)


@needs_runtimes
def test_records_read_back_from_the_saved_file(measured):
    records, path = measured
    lines = load_records(path)
    assert len(lines) == len(records) == 2 * len(RUNTIMES)
    for d in lines:
        back = parse_record(d)
        original = records[(back.runtime, back.precision)]
        assert back.to_dict() == json.loads(json.dumps(original.to_dict()))
        assert back.output_check == original.output_check


# -- the output check --------------------------------------------------------------------------------


def test_check_outputs_by_hand():
    ref = [[torch.tensor([[1.0, 4.0], [3.0, 2.0]])], [torch.tensor([[0.5, -2.0], [1.0, 0.0]])]]
    out = [[torch.tensor([[1.0, 4.002], [3.0, 2.0]])], [torch.tensor([[0.5, -2.0], [-1.0, 0.0]])]]
    c = check_outputs(ref, out, "int8")
    # max |out - ref| = |-1 - 1| = 2 (sample 2, row 2); max |ref| = 4 -> 0.5; top-1 agrees on 3 rows of 4
    assert c.max_abs_error == pytest.approx(2.0) and c.rel_error == pytest.approx(0.5)
    assert c.top1_agreement == 0.75 and c.samples == 2 and c.passed  # int8 fails only above 0.5
    f32 = check_outputs(ref[:1], out[:1], "float32")
    assert f32.rel_error == pytest.approx(0.002 / 4, rel=1e-4) and f32.passed  # 5e-4 <= 1e-3
    assert not check_outputs(ref, [[o[0] * 1.01] for o in ref], "float32").passed  # 1% of 4: 1e-2 > 1e-3


def test_check_outputs_fails_shapes_counts_nan_and_zero_references():
    r = [[torch.ones(1, 3)]]
    assert "shape" in check_outputs(r, [[torch.ones(1, 4)]], "float32").note
    assert "output(s)" in check_outputs(r, [[torch.ones(1, 3), torch.ones(1)]], "float32").note
    assert "NaN" in check_outputs(r, [[torch.tensor([[1.0, float("nan"), 1.0]])]], "int8").note
    zero = check_outputs([[torch.zeros(1, 3)]], [[torch.ones(1, 3)]], "int8")
    assert not zero.passed and zero.rel_error is None and zero.max_abs_error == 1.0
    assert check_outputs([[torch.zeros(1, 3)]], [[torch.zeros(1, 3)]], "float32").passed


class OnePercentOff(Runtime):
    """Eager, with every output it answers 1% too large: a wrong runtime."""

    name = "wrong"
    title = "wrong"
    packages = {"float32": ()}

    def prepare(self, model, inputs, job):  # noqa: ANN001, ANN201
        prepared = EAGER.prepare(model, inputs, job)
        right = prepared.run
        prepared.run = lambda x: [t * 1.01 for t in right(x)]
        return prepared


def test_a_wrong_answer_is_flagged_next_to_its_speed(monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(RUNTIMES, "wrong", OnePercentOff())
    save = tmp_path / "runs.jsonl"
    result = run("bench", *SMALL, *TINY, "--runtime", "eager,wrong", "--save", str(save), measure=FakeMeasure())
    assert result.exit_code == 0, result.output
    rows = [ln for ln in result.stdout.splitlines() if "v2@0.35" in ln]
    assert len(rows) == 2 and "!!" not in rows[0] and "11.00 ms !!" in rows[1]
    assert "OUTPUT CHECK FAILED" in result.stdout
    assert any("on wrong: OUTPUT CHECK FAILED: max relative error 0.01 above 0.001" in m for m in caplog.messages)
    right, wrong = (parse_record(d) for d in load_records(save))
    assert right.output_check.passed and right.output_check.rel_error == 0.0
    # every output 1.01 x the reference: max |0.01 ref| / max |ref| = 0.01
    assert not wrong.output_check.passed and wrong.output_check.rel_error == pytest.approx(0.01, rel=1e-4)


# -- refusals and failures ---------------------------------------------------------------------------


def test_a_missing_runtime_package_names_the_extra(monkeypatch, fake, tmp_path):
    monkeypatch.setattr(base, "installed", lambda package: package != "openvino")
    save = tmp_path / "runs.jsonl"
    line = one_line_error(run("bench", *SMALL, *TINY, "--runtime", "eager,openvino", "--save", str(save),
                              measure=fake))
    assert "openvino" in line and f"pip install '{EXTRA}'" in line
    assert fake.calls == 0 and not save.exists()


@needs_runtimes
def test_an_unexportable_model_fails_its_runtime_and_keeps_the_others(tmp_path):
    save = tmp_path / "runs.jsonl"
    result = run("bench", "--models", "fixtures_models:data_dependent", "--input", INPUT, *TINY,
                 "--runtime", "eager,onnxruntime", "--save", str(save), measure=FakeMeasure())
    line = one_line_error(result)
    # torch.export (under torch.onnx.export) cannot trace `if y.sum() > 0`: its own words
    assert "on onnxruntime float32: torch.onnx.export (dynamo) failed" in line and "data-dependent" in line
    kept = [parse_record(d) for d in load_records(save)]
    assert [r.runtime for r in kept] == ["eager"]
    assert "fixtures_models:data_dependent" in result.stdout and "not measured:" in result.stdout


@pytest.mark.parametrize("args, words", [
    (["--precision", "int8", "--dtype", "bfloat16"], "quantizes the float32 network"),
    (["--runtime", "onnxruntime", "--dtype", "bfloat16"], "runs float32 networks"),
    (["--calibration", "x.npy"], "add --precision int8"),
    (["--compile", "--runtime", "eager,onnxruntime"], "alias of --runtime compile"),
    (["--runtime", "tensorrt"], "unknown runtime 'tensorrt'"),
    (["--runtime", "onnxruntime", "--mode", "train"], "eager runtime only"),
    (["--precision", "int8", "--mode", "train"], "--precision int8 is for inference"),
    (["--runtime", "eager,openvino", "--channels-last"], "chooses its own layouts"),
])
def test_impossible_requests_are_one_line(args, words, fake):
    assert words in one_line_error(run("bench", *SMALL, *TINY, *args, measure=fake))
    assert fake.calls == 0


def test_compile_is_an_alias_of_the_compile_runtime():
    from mbcost.cli.bench import runtime_names

    assert runtime_names(None, True) == ["compile"] and runtime_names("compile", True) == ["compile"]
    assert runtime_names(None, False) == ["eager"]
    assert runtime_names("onnxruntime, eager,onnxruntime", False) == ["onnxruntime", "eager"]


def test_profile_refuses_other_runtimes(fake):
    line = one_line_error(run("profile", "v2@0.35", "--input", "32", *TINY, "--runtime", "onnxruntime",
                              measure=fake))
    assert "module hooks" in line and "mbcost bench --runtime onnxruntime" in line


def test_threads_above_the_cpus_are_refused_or_said(fake):
    cpus = len(os.sched_getaffinity(0))
    over = ["--threads", str(cpus + 1)]
    line = one_line_error(run("bench", *SMALL, "--min-time", "0.001", "--max-time", "0.01", *over, measure=fake))
    assert f"--threads {cpus + 1} is more than the {cpus} CPU" in line and "--oversubscribe" in line
    result = run("bench", *SMALL, "--min-time", "0.001", "--max-time", "0.01", *over, "--oversubscribe",
                 "--format", "json", measure=fake)
    env = json.loads(result.stdout)["results"][0]["env"]
    assert env["oversubscribed"] is True and env["usable_cpus"] == cpus and env["threads"] == cpus + 1
    table = run("bench", *SMALL, "--min-time", "0.001", "--max-time", "0.01", *over, "--oversubscribe",
                "--format", "markdown", measure=fake).stdout
    assert f"{cpus + 1} threads on {cpus} CPU" in table and "oversubscribed" in table


# -- calibration ------------------------------------------------------------------------------------


def test_calibration_files_are_cut_into_batches(tmp_path):
    cost = analyze(parse_models(TINY_NET)[0], "4x3x16x16")
    samples = np.random.default_rng(0).standard_normal((10, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "c.npy", samples)
    cal = load_calibration(tmp_path / "c.npy", cost)
    assert len(cal.batches) == 2 and cal.describe() == "file: 2 batches from c.npy"  # 10 samples // 4
    assert torch.equal(cal.batches[1].args[0], torch.from_numpy(samples[4:8]))
    np.savez(tmp_path / "c.npz", a=samples[:3], b=samples[3:8])
    assert len(load_calibration(tmp_path / "c.npz", cost).batches) == 2  # 3 + 5 samples
    torch.save([torch.from_numpy(s) for s in samples[:4]], tmp_path / "c.pt")  # four single samples
    assert torch.equal(load_calibration(tmp_path / "c.pt", cost).batches[0].args[0], torch.from_numpy(samples[:4]))
    np.save(tmp_path / "small.npy", samples[:3])
    with pytest.raises(SpecError, match="fewer than one batch of 4"):
        load_calibration(tmp_path / "small.npy", cost)
    np.save(tmp_path / "wrong.npy", samples[:, :, :8])
    with pytest.raises(SpecError, match="does not fit"):
        load_calibration(tmp_path / "wrong.npy", cost)
    with pytest.raises(SpecError, match="expected a .npy"):
        load_calibration(tmp_path / "c.txt", cost)


def test_int8_calibrates_on_a_file(tmp_path):
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32))
    result = run("bench", "--models", TINY_NET, "--input", INPUT, *TINY, "--precision", "int8",
                 "--calibration", str(tmp_path / "calib.npy"), "--format", "json", measure=FakeMeasure())
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)["results"][0]
    assert rec["precision"] == "int8" and rec["calibration"] == "file: 3 batches from calib.npy"
    bad = one_line_error(run("bench", *SMALL, *TINY, "--precision", "int8", "--calibration",
                             str(tmp_path / "calib.npy"), measure=FakeMeasure()))
    assert "does not fit v2@0.35's input 1x3x32x32" in bad


def test_batchnorm_statistics_are_those_of_the_calibration_inputs():
    norm = torch.nn.BatchNorm2d(3)
    model = torch.nn.Sequential(norm).eval()
    gen = torch.Generator().manual_seed(0)
    batches = tuple(base.ForwardArgs((torch.randn(2, 3, 4, 4, generator=gen) * 5 + 2,), {}) for _ in range(2))
    assert reestimate_batchnorm(model, batches)
    seen = torch.cat([b.args[0] for b in batches])
    assert torch.allclose(norm.running_mean, seen.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(norm.running_var, seen.var((0, 2, 3), unbiased=True), atol=1e-4)
    assert norm.momentum == 0.1 and not model.training
    assert not reestimate_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)), batches)


# -- records written before runtimes -----------------------------------------------------------------


def test_records_without_a_runtime_read_as_eager_at_their_dtype():
    old = [parse_record(d) for d in load_records(ROOT / "tests" / "data" / "bench_record_before_runtimes.jsonl")]
    assert [(r.runtime, r.precision) for r in old] == [("eager", "float32"), ("compile", "bfloat16")]
    assert old[0].output_check is None and old[0].runtime_settings == {} and old[0].one_time_s == {}
    assert old[0].env.usable_cpus is None and not old[0].env.oversubscribed
    # comparable with a record measured today under the same settings
    assert old[0].config.key == RunConfig("cpu", "AMD EPYC", "float32", 1, 1).key
    assert old[0].config.key != RunConfig("cpu", "AMD EPYC", "float32", 1, 1, runtime="onnxruntime").key
