"""The CI gate: baseline format, drift rows, exit codes (0 match, 1 drift, 2 usage/input), --update,
configuration, GitHub step summary, MACs tolerance, and the project's own committed baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gate_models
import pytest
from module_counts import module_counts
from typer.testing import CliRunner

from mbcost.errors import BaselineError, SpecError, UnknownModelError
from mbcost.gate import (
    SCHEMA_VERSION,
    DiffRow,
    Entry,
    GateConfig,
    LayerCount,
    compare,
    dumps,
    load_config,
    loads,
    measure,
    read_baseline,
    run_gate,
    update_baseline,
)
from mbcost.zoo import build_model

ROOT = Path(__file__).resolve().parent.parent
TOY = "gate_models:toy"
SIZE = (8, 8)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Toy models importable, the base variant, no real job summary, and no pyproject.toml above
    the cwd (tmp_path), so only what a test passes configures the gate."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setattr(gate_models, "VARIANT", "base")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.chdir(tmp_path)


def gate(*args: str):
    from mbcost.cli import app

    return CliRunner().invoke(app, ["gate", *args])


def toy_baseline(tmp_path: Path) -> Path:
    path = tmp_path / "baseline.json"
    r = gate("--models", TOY, "--input", "8", "--baseline", str(path), "--update")
    assert r.exit_code == 0, r.output
    return path


def one_error_line(r) -> str:
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mbcost: error: "), r.stderr
    assert "Traceback" not in r.output
    return lines[0]


# -- measuring -------------------------------------------------------------------------------

def test_measure_toy_layers_are_modules_with_own_params_and_macs():
    e = measure(TOY, SIZE)
    assert e.spec == TOY and e.input == SIZE and e.batch == 1
    assert dict(e.layers) == {
        "stem": LayerCount(216, 13_824),  # 3*8*9; 216*8*8
        "bn": LayerCount(16, 0),          # weight + bias of 8 channels
        "body": LayerCount(584, 36_864),  # 8*8*9 + 8; 576*8*8
        "head": LayerCount(90, 80),       # 8*10 + 10; 8*10
    }  # act, pool, flat: no params, no MACs -> not listed
    assert (e.params, e.macs) == (906, 50_768)


def test_measure_zoo_layers_equal_the_module_tree_counted_with_hooks():
    e = measure("mobilenet_v2", (224, 224))
    assert e.spec == "v2"  # canonical label
    assert (e.params, e.macs) == (3_504_872, 300_774_272)  # torchvision's parameter count; the paper's 300M
    # every layer: the module's own parameters and its forward-hook MACs (tests/module_counts.py), not the engine
    expected = {path: LayerCount(params, macs)
                for path, (params, macs) in module_counts(build_model("v2"), (1, 3, 224, 224)).items()
                if params or macs}
    assert dict(e.layers) == expected
    assert list(e.layers)[0] == "features.0.0"


def test_unattributed_params_are_a_layer():
    e = measure("gate_models:with_spare", SIZE)
    assert e.layers["(unattributed)"] == LayerCount(36, 0)  # spare: 5*6 + 6, never run
    assert e.layers["used"] == LayerCount(16, 12)  # 3*4 + 4; 3*4
    assert e.params == 52


# -- baseline file ---------------------------------------------------------------------------

def test_baseline_json_is_versioned_stable_and_round_trips():
    from mbcost.gate.baseline import make_baseline

    b = make_baseline([measure("v2", (224, 224)), measure(TOY, SIZE), measure("v1", (192, 192))])
    text = dumps(b)
    doc = json.loads(text)
    assert doc["mbcost_gate_baseline"] == SCHEMA_VERSION == 1
    assert doc["generated_by"].startswith("mbcost ")
    assert "MACs" in doc["conventions"] and "params" in doc["conventions"]
    assert [(m["spec"], m["input"]) for m in doc["models"]] == [
        (TOY, [8, 8]), ("v1", [192, 192]), ("v2", [224, 224])]  # sorted, whatever the order measured
    assert list(doc["models"][0]) == ["spec", "input", "batch", "params", "macs", "peak_activation_bytes", "layers"]
    assert '        "stem": {"params": 216, "macs": 13824},\n' in text  # one layer per line
    assert loads(text) == b
    assert dumps(loads(text)) == text


@pytest.mark.parametrize(("content", "reason"), [
    ("", "is empty"),
    ("   \n", "is empty"),
    ("{\"mbcost_gate_baseline\": 1, \"models\": [", "not valid JSON"),
    ("[1, 2]", "not an mbcost gate baseline"),
    ("{\"models\": []}", "no 'mbcost_gate_baseline' version field"),
    ("{\"mbcost_gate_baseline\": 0, \"models\": []}", "schema version 0 (from an older mbcost); this mbcost reads "
                                                      "version 1; regenerate it with `mbcost gate --update`"),
    ("{\"mbcost_gate_baseline\": 2, \"models\": []}", "schema version 2 (from a newer mbcost); this mbcost reads "
                                                      "version 1; upgrade mbcost or regenerate"),
    ("{\"mbcost_gate_baseline\": \"1\", \"models\": []}", "malformed schema version '1'"),
    ("{\"mbcost_gate_baseline\": 1, \"models\": [{\"spec\": \"v1\"}]}", "models[0] has no 'input'"),
    ("{\"mbcost_gate_baseline\": 1, \"models\": [{\"spec\": \"v1\", \"input\": [224, 224], \"params\": -1, "
     "\"macs\": 0, \"layers\": {}}]}", "models[0].params must be a non-negative integer"),
    ("{\"mbcost_gate_baseline\": 1, \"models\": [{\"spec\": \"v1\", \"input\": [224, 224], \"params\": 1, "
     "\"macs\": NaN, \"layers\": {}}]}", "not valid JSON"),
])
def test_bad_baselines_are_refused_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match="regenerate it with"):
        read_baseline(path)
    line = one_error_line(gate("--baseline", str(path), "--models", "v1"))
    assert reason in line


def test_missing_baseline_exit_2(tmp_path):
    line = one_error_line(gate("--baseline", str(tmp_path / "nope.json"), "--models", "v1"))
    assert line == "mbcost: error: no baseline at nope.json; create one with `mbcost gate --update`"


def test_baseline_naming_an_unknown_model_exit_2(tmp_path):
    path = toy_baseline(tmp_path)
    doc = json.loads(path.read_text())
    doc["models"].append({**doc["models"][0], "spec": "resnet999"})
    path.write_text(json.dumps(doc))
    with pytest.raises(UnknownModelError):
        run_gate(GateConfig(baseline=path))
    line = one_error_line(gate("--baseline", str(path)))
    assert "names model 'resnet999', which cannot be built: unknown model 'resnet999'; known models: v1" in line
    # even when the configured models do not include it
    assert "resnet999" in one_error_line(gate("--baseline", str(path), "--models", TOY, "--input", "8"))
    # and a factory that no longer imports
    doc["models"][-1]["spec"] = "gate_models:gone"
    path.write_text(json.dumps(doc))
    assert "has no attribute 'gone'" in one_error_line(gate("--baseline", str(path)))


def test_unknown_model_in_config_exit_2(tmp_path):
    path = toy_baseline(tmp_path)
    line = one_error_line(gate("--baseline", str(path), "--models", "resnet999"))
    assert "unknown model 'resnet999'" in line


# -- the verdict -----------------------------------------------------------------------------

def test_unchanged_model_passes(tmp_path):
    path = toy_baseline(tmp_path)
    result = run_gate(GateConfig(baseline=path))  # models and inputs from the baseline
    assert result.passed and result.exit_code == 0 and result.rows == ()
    assert [(e.model, e.input, e.status) for e in result.entries] == [(TOY, SIZE, "ok")]
    r = gate("--baseline", str(path))
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    assert "mbcost gate: passed: 1 model x input entry match baseline.json" in r.stdout


def test_drift_gives_exactly_the_widened_added_and_removed_layers(tmp_path, monkeypatch):
    path = toy_baseline(tmp_path)
    monkeypatch.setattr(gate_models, "VARIANT", "drifted")
    result = run_gate(GateConfig(baseline=path))
    assert result.exit_code == 1 and not result.passed
    assert result.rows == (
        DiffRow(TOY, SIZE, 1, "body", "removed", 584, None, 36_864, None),
        DiffRow(TOY, SIZE, 1, "extra", "added", None, 72, None, 4_096),
        DiffRow(TOY, SIZE, 1, "head", "changed", 90, 108, 80, 96),
    )
    body, extra, head = result.rows
    assert (body.params_delta, body.params_percent, body.macs_delta, body.macs_percent) == (-584, -100.0, -36_864,
                                                                                             -100.0)
    assert (extra.params_delta, extra.params_percent, extra.macs_delta) == (72, None, 4_096)
    assert (head.params_delta, head.params_percent, head.macs_delta, head.macs_percent) == (18, 20.0, 16, 20.0)
    (entry,) = result.entries
    assert entry.status == "drift"
    assert (entry.params_before, entry.params_after) == (906, 412)  # 216+16+72+108
    assert (entry.macs_before, entry.macs_after) == (50_768, 18_016)  # 13824+4096+96

    r = gate("--baseline", str(path))
    assert r.exit_code == 1
    assert r.stderr == ""  # drift is the output, not an error
    out = r.stdout
    assert "DRIFT (3 layers)" in out
    for text in ("│ body ", "removed", "│ extra ", "added", "│ head ", "changed", "+18", "+20.00%", "-100.00%"):
        assert text in out, text
    assert "FAILED: 1 of 1 entries drifted (3 layers)" in out and "mbcost gate --update" in out


def test_drift_json_and_markdown(tmp_path, monkeypatch):
    path = toy_baseline(tmp_path)
    monkeypatch.setattr(gate_models, "VARIANT", "drifted")
    r = gate("--baseline", str(path), "--format", "json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["passed"] is False and doc["exit_code"] == 1 and doc["macs_tolerance"] == 0.0
    rows = doc["entries"][0]["rows"]
    assert [(x["layer"], x["change"], x["params_before"], x["params_after"], x["params_delta"]) for x in rows] == [
        ("body", "removed", 584, None, -584), ("extra", "added", None, 72, 72), ("head", "changed", 90, 108, 18)]
    assert doc["entries"][0]["status"] == "drift" and "MACs" in doc["conventions"]

    r = gate("--baseline", str(path), "--format", "markdown")
    assert r.exit_code == 1
    assert r.stdout.startswith("### mbcost gate: FAILED")
    assert "| gate_models:toy | 8x8 | head | changed | 90 | 108 | +18 | +20.00% | 80 | 96 | +16 | +20.00% |" \
        in r.stdout


def test_added_and_removed_models_are_drift(tmp_path):
    path = toy_baseline(tmp_path)
    r = gate("--baseline", str(path), "--models", f"{TOY},gate_models:with_spare", "--input", "8")
    assert r.exit_code == 1
    assert "DRIFT: not in baseline" in r.stdout
    r = gate("--baseline", str(path), "--models", "gate_models:with_spare", "--input", "8")
    assert r.exit_code == 1
    assert "DRIFT: in baseline, not gated" in r.stdout
    result = run_gate(GateConfig(models=(TOY,), inputs=((8, 8), (16, 16)), baseline=path))
    assert [(e.input, e.status) for e in result.entries] == [((8, 8), "ok"), ((16, 16), "added")]


def test_macs_tolerance_is_relative_and_params_stay_exact(tmp_path):
    path = toy_baseline(tmp_path)
    doc = json.loads(path.read_text())
    entry = doc["models"][0]
    entry["layers"]["stem"]["macs"] = 13_824 - 100  # measured now: 100 more, +0.73%
    entry["macs"] -= 100
    path.write_text(json.dumps(doc))
    assert gate("--baseline", str(path)).exit_code == 1
    assert gate("--baseline", str(path), "--macs-tolerance", "0.005").exit_code == 1  # 0.5% < 0.73%
    r = gate("--baseline", str(path), "--macs-tolerance", "0.01")
    assert r.exit_code == 0, r.output
    assert "MACs may differ by up to 1%" in r.stdout
    entry["layers"]["bn"]["params"] = 17
    entry["params"] += 1
    path.write_text(json.dumps(doc))
    result = run_gate(GateConfig(baseline=path, macs_tolerance=0.5))
    assert [(r.layer, r.params_before, r.params_after) for r in result.rows] == [("bn", 17, 16)]
    assert one_error_line(gate("--baseline", str(path), "--macs-tolerance", "-0.1")).endswith("(got -0.1)")


def test_totals_alone_can_drift(tmp_path):
    """A hand-edited total with unchanged layers still fails (no layer row to show)."""
    b = measure(TOY, SIZE)
    edited = Entry(b.spec, b.input, b.batch, b.params + 1, b.macs, b.layers)
    result = compare([edited], [b])
    assert result.exit_code == 1 and result.rows == () and result.entries[0].status == "drift"


# -- --update --------------------------------------------------------------------------------

def test_update_round_trips_and_says_what_changed(tmp_path, monkeypatch):
    path = tmp_path / "baseline.json"
    r = gate("--models", TOY, "--input", "8", "--baseline", str(path), "--update")
    assert r.exit_code == 0
    assert "baseline created at baseline.json (1 entry)" in r.stdout
    created = path.read_text()
    assert gate("--baseline", str(path)).exit_code == 0

    r = gate("--baseline", str(path), "--update")
    assert r.exit_code == 0 and "unchanged (1 entry match); nothing written" in r.stdout
    assert path.read_text() == created

    monkeypatch.setattr(gate_models, "VARIANT", "drifted")
    assert gate("--baseline", str(path)).exit_code == 1
    r = gate("--baseline", str(path), "--update")
    assert r.exit_code == 0, r.output
    assert "updated: 1 changed, 0 added, 0 removed (3 layer rows)" in r.stdout
    assert "│ head " in r.stdout and "│ extra " in r.stdout and "│ body " in r.stdout
    assert gate("--baseline", str(path)).exit_code == 0  # the round trip
    assert read_baseline(path).entries[0] == measure(TOY, SIZE)


def test_update_replaces_an_unreadable_baseline_and_drops_unknown_models(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text("{not json")
    r = gate("--models", TOY, "--input", "8", "--baseline", str(path), "--update")
    assert r.exit_code == 0, r.output
    assert "replaced an unreadable baseline (baseline baseline.json is not valid JSON" in r.stdout
    assert gate("--baseline", str(path)).exit_code == 0
    doc = json.loads(path.read_text())
    doc["models"].append({**doc["models"][0], "spec": "resnet999"})
    path.write_text(json.dumps(doc))
    outcome = update_baseline(GateConfig(models=(TOY,), inputs=(SIZE,), baseline=path))
    assert [(e.model, e.status) for e in outcome.changes.entries] == [(TOY, "ok"), ("resnet999", "removed")]
    assert [e.spec for e in read_baseline(path).entries] == [TOY]
    # with no models configured, the baseline's own models are re-measured: an unknown one is refused
    path.write_text(json.dumps(doc))
    assert "resnet999" in one_error_line(gate("--baseline", str(path), "--update"))


def test_update_into_a_missing_directory_exit_2(tmp_path):
    line = one_error_line(gate("--models", "v1", "--baseline", str(tmp_path / "no" / "b.json"), "--update"))
    assert "does not exist" in line


def test_nothing_to_gate_exit_2(tmp_path):
    line = one_error_line(gate("--baseline", str(tmp_path / "b.json"), "--update"))
    assert "no models to gate" in line


# -- configuration ---------------------------------------------------------------------------

def write_pyproject(directory: Path, body: str) -> Path:
    path = directory / "pyproject.toml"
    path.write_text("[project]\nname = \"demo\"\n\n[tool.mbcost.gate]\n" + body)
    return path


def test_config_is_found_upward_and_paths_are_relative_to_it(tmp_path, monkeypatch):
    write_pyproject(tmp_path, f'models = ["{TOY}"]\ninputs = [8, "8x16", [16, 8]]\nbaseline = "ci/b.json"\n'
                              "macs_tolerance = 0.02\n")
    (tmp_path / "ci").mkdir()
    sub = tmp_path / "src" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    cfg = load_config()
    assert cfg.models == (TOY,) and cfg.inputs == ((8, 8), (8, 16), (16, 8))
    assert cfg.baseline == tmp_path / "ci" / "b.json" and cfg.macs_tolerance == 0.02
    r = gate("--update")
    assert r.exit_code == 0, r.output
    assert [e.input for e in read_baseline(tmp_path / "ci" / "b.json").entries] == [(8, 8), (8, 16), (16, 8)]
    assert gate().exit_code == 0
    # command-line options override the file
    r = gate("--input", "8", "--format", "json")
    assert r.exit_code == 1  # the 8x16 and 16x8 entries are no longer gated: removed
    assert [e["status"] for e in json.loads(r.stdout)["entries"]] == ["ok", "removed", "removed"]
    assert json.loads(r.stdout)["macs_tolerance"] == 0.02


@pytest.mark.parametrize(("body", "reason"), [
    ("colour = 1\n", "unknown key 'colour'; known keys: models, inputs, baseline, macs_tolerance"),
    ("models = [1]\n", "models must be a list of model specs"),
    ("inputs = [\"big\"]\n", "bad input size 'big'"),
    ("inputs = [true]\n", "inputs must be sizes"),
    ("macs_tolerance = 2\n", "macs_tolerance must be a number in [0, 1)"),
    ("baseline = 3\n", "baseline must be a path"),
    ("models = [\n", "is not valid TOML"),
])
def test_bad_config_exit_2(tmp_path, body, reason):
    write_pyproject(tmp_path, body)
    with pytest.raises(SpecError):
        load_config()
    assert reason in one_error_line(gate())


def test_repeated_inputs_and_config_batch(tmp_path):
    write_pyproject(tmp_path, f'models = ["{TOY}"]\nbatch = 2\n')
    r = gate("--input", "8", "--input", "16,8x16", "--update", "--format", "json")
    assert r.exit_code == 0, r.output
    entries = read_baseline(tmp_path / "mbcost-baseline.json").entries
    assert [(e.input, e.batch) for e in entries] == [((8, 8), 2), ((8, 16), 2), ((16, 16), 2)]
    assert (entries[0].params, entries[0].macs) == (906, 2 * 50_768)  # params do not scale with batch
    write_pyproject(tmp_path, "batch = 0\n")
    assert "batch must be an integer" in one_error_line(gate())


def test_explicit_config_must_exist(tmp_path):
    assert "config file" in one_error_line(gate("--config", str(tmp_path / "missing.toml")))


def test_bad_command_line_values_exit_2(tmp_path):
    path = toy_baseline(tmp_path)
    assert "bad input size" in one_error_line(gate("--baseline", str(path), "--input", "8,x"))
    assert "no models given" in one_error_line(gate("--baseline", str(path), "--models", " , "))
    assert "--format" in one_error_line(gate("--baseline", str(path), "--format", "csv"))


# -- CI integration --------------------------------------------------------------------------

def test_github_step_summary_is_appended(tmp_path, monkeypatch):
    path = toy_baseline(tmp_path)
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert gate("--baseline", str(path)).exit_code == 0
    monkeypatch.setattr(gate_models, "VARIANT", "drifted")
    assert gate("--baseline", str(path), "--format", "json").exit_code == 1
    text = summary.read_text()
    assert text.startswith("# earlier step\n### mbcost gate: passed")
    assert text.count("### mbcost gate") == 2
    assert "### mbcost gate: FAILED" in text and "| extra | added |" in text


def test_unwritable_step_summary_warns_and_keeps_the_verdict(tmp_path, monkeypatch):
    path = toy_baseline(tmp_path)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "no-such-dir" / "s.md"))
    r = gate("--baseline", str(path))
    assert r.exit_code == 0
    assert r.stderr.startswith("mbcost: warning: $GITHUB_STEP_SUMMARY: cannot append")


def test_project_gates_itself():
    """The committed baseline matches the zoo (v1, v1-conv, v2, vgg16, vgg16-bn at 224)."""
    cfg = load_config(ROOT / "pyproject.toml")
    assert set(cfg.models) == {"v1", "v1-conv", "v2", "vgg16", "vgg16-bn"} and cfg.inputs == ((224, 224),)
    result = run_gate(cfg)
    assert result.passed, [(e.model, e.status) for e in result.drifted]
    totals = {e.model: (e.params_after, e.macs_after) for e in result.entries}
    assert totals["v1"] == (4_231_976, 568_740_352)
    assert totals["vgg16"] == (138_357_544, 15_470_264_320)
    assert read_baseline(cfg.baseline).version == SCHEMA_VERSION


def test_gate_cli_import_stays_light():
    code = "import sys, mbcost.cli.gate, mbcost.gate.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- activation memory ---------------------------------------------------------------------------


def test_a_change_that_grows_activation_memory_fails_with_equal_params_and_macs(tmp_path, monkeypatch):
    path = toy_baseline(tmp_path)
    stored = json.loads(path.read_text())["models"][0]
    # at 8x8, float32, at the body conv: the input (3x8x8, held), its input and output (8x8x8 each) and its
    # im2col columns (8 x 3x3 x 8x8: a small convolution takes ATen's plain path on the CPU)
    assert stored["peak_activation_bytes"] == (3 * 64 + 2 * 8 * 64 + 8 * 9 * 64) * 4
    monkeypatch.setattr(gate_models, "VARIANT", "upsampled")
    r = gate("--baseline", str(path))
    assert r.exit_code == 1, r.output
    assert "DRIFT (activation memory)" in r.stdout
    e = run_gate(GateConfig(baseline=path)).entries[0]
    assert (e.params_before, e.macs_before) == (e.params_after, e.macs_after)
    # the upsampled 32x32x8 tensor and the body's output it came from, with the input
    assert e.memory_after == (3 * 64 + 8 * 64 + 8 * 1024) * 4 and e.memory_drift


def test_memory_tolerance_is_relative():
    from mbcost.gate.baseline import Entry
    from mbcost.gate.check import compare_entry

    before = Entry("v2", (224, 224), 1, 10, 10, peak_activation_bytes=1000)
    after = Entry("v2", (224, 224), 1, 10, 10, peak_activation_bytes=1040)  # +4%
    assert compare_entry(before, after, memory_tolerance=0.05).status == "ok"
    assert compare_entry(before, after, memory_tolerance=0.03).status == "drift"
    # a baseline written before peaks were stored gates params and MACs only
    old = Entry("v2", (224, 224), 1, 10, 10)
    assert compare_entry(old, after).status == "ok"


def test_training_step_memory_is_gated_when_asked(tmp_path):
    path = tmp_path / "baseline.json"
    r = gate("--models", TOY, "--input", "8", "--baseline", str(path), "--update", "--mode", "train")
    assert r.exit_code == 0, r.output
    stored = json.loads(path.read_text())["models"][0]
    assert stored["train_peak_activation_bytes"] > stored["peak_activation_bytes"]
    assert gate("--baseline", str(path), "--mode", "train").exit_code == 0
    assert gate("--baseline", str(path), "--mode", "fly").exit_code == 2

