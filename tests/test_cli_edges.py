"""What a new user meets at the edges of every command (issue 22): a factory module that does not
import, ``--batch`` with a full shape, a real run too big for memory, JSON for a parameter-free model,
token-id inputs in the gate, the training fields in every format, an embedding's parameters, and the
small refusals. The models are ``tests/cli_models.py``, whose counts are worked out by hand there.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from bench_fakes import FakeMeasure, one_line_error, run
from torch import nn

import mbcost
from mbcost.errors import AnalysisError, SpecError


def _strict_json(text: str):  # noqa: ANN202
    """Parse as a strict parser does: a bare NaN or Infinity is an error (RFC 8259 has neither)."""
    def refuse(name: str):  # noqa: ANN202
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """tests/ importable (cli_models), no pyproject.toml above the cwd, no job summary."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.chdir(tmp_path)


# --- a factory module that fails to import -------------------------------------------------------

BROKEN = {
    "SyntaxError": "def model(:\n    pass\n",
    "ValueError": "raise ValueError('bad configuration at import')\n",
    "NameError": "undefined_name + 1\n",
}


def _commands(spec: str, tmp_path: Path) -> dict[str, list[str]]:
    ckpt = tmp_path / "w.pt"
    torch.save({"weight": torch.zeros(1)}, ckpt)
    return {
        "compare": ["compare", "--models", spec, "--no-bench"],
        "layers": ["layers", spec],
        "memory": ["memory", spec],
        "reconcile": ["reconcile", spec, "--counters", "torch"],
        "bench": ["bench", "--models", spec],
        "profile": ["profile", spec],
        "report": ["report", "--models", spec, "--no-bench", "--out", str(tmp_path / "r.html")],
        "weights": ["weights", str(ckpt), "--model", spec],
        "gate --update": ["gate", "--models", spec, "--update", "--baseline", str(tmp_path / "b.json")],
    }


@pytest.mark.parametrize("error", sorted(BROKEN))
def test_a_factory_module_that_fails_to_import_is_one_line_on_every_command(tmp_path, monkeypatch, error):
    module = f"broken_{error.lower()}"
    (tmp_path / f"{module}.py").write_text(BROKEN[error])
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = FakeMeasure(run_fn=False)
    for command, args in _commands(f"{module}:model", tmp_path).items():
        line = one_line_error(run(*args, measure=fake))
        assert f"cannot import module '{module}'" in line and error in line, (command, line)
    assert not (tmp_path / "b.json").exists() and not (tmp_path / "r.html").exists()


def test_a_factory_that_raises_when_called_is_one_line_too(tmp_path, monkeypatch):
    (tmp_path / "raising.py").write_text("def model():\n    raise RuntimeError('no weights here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for command, args in _commands("raising:model", tmp_path).items():
        line = one_line_error(run(*args, measure=FakeMeasure(run_fn=False)))
        assert "factory 'raising:model' raised RuntimeError: no weights here" in line, (command, line)


@pytest.mark.parametrize("where", ["at import", "when called"])
def test_a_factory_that_calls_sys_exit_is_one_line_not_a_silent_exit(tmp_path, monkeypatch, where):
    # sys.exit(3) in a user's module ended mbcost silently with exit status 3
    body = "import sys\nsys.exit(3)\n" if where == "at import" else "import sys\ndef model():\n    sys.exit(3)\n"
    (tmp_path / "exiting.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    line = one_line_error(run("layers", "exiting:model"))
    assert "exiting" in line and "sys.exit(3)" in line, line


# --- --batch with a full shape -------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["compare", "--models", "v2@0.35", "--no-bench"], ["layers", "v2@0.35"], ["memory", "v2@0.35"],
    ["bench", "--models", "v2@0.35"], ["reconcile", "v2@0.35", "--counters", "torch"],
    ["report", "--models", "v2@0.35", "--no-bench", "--out", "r.html"], ["profile", "v2@0.35"],
], ids=lambda c: c[0])
def test_batch_that_a_full_shape_would_override_is_refused_everywhere(command):
    line = one_line_error(run(*command, "--input", "1x3x32x32", "--batch", "4", measure=FakeMeasure(run_fn=False)))
    assert "batch 4 conflicts with the full shape 1x3x32x32" in line and "4x3x32x32" in line


def test_gate_batch_that_a_full_shape_would_override_is_refused(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.mbcost.gate]\nmodels = ["v2@0.35"]\nbatch = 4\n')
    line = one_line_error(run("gate", "--input", "1x3x32x32", "--update"))
    assert "batch 4 conflicts with the full shape 1x3x32x32" in line
    assert not (tmp_path / "mbcost-baseline.json").exists()


def test_batch_agreeing_with_the_full_shape_is_that_batch():
    r = run("compare", "--models", "v2@0.35", "--input", "4x3x32x32", "--batch", "4", "--no-bench", "--format", "json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)["models"][0]
    assert m["batch"] == 4 and m["macs"] == 4 * mbcost.analyze("v2@0.35", 32).macs  # costs scale with the batch
    with pytest.raises(SpecError, match="conflicts with the full shape 1x3x32x32"):
        mbcost.analyze("v2@0.35", (1, 3, 32, 32), batch=4)
    with pytest.raises(SpecError, match="conflicts with the full shape 2x3x32x32"):
        mbcost.analyze(nn.Conv2d(3, 8, 3), torch.empty(2, 3, 32, 32), batch=4)  # a tensor carries its batch too
    assert mbcost.analyze("v2@0.35", 32, batch=4).batch == 4  # the image shorthand takes it


# --- what params count ---------------------------------------------------------------------------


def test_params_wording_says_frozen_parameters_are_counted():
    model = __import__("cli_models").frozen()
    cost = mbcost.analyze(model, 16)
    assert cost.params == sum(p.numel() for p in model.parameters()) == 808  # 224 frozen + 584
    assert cost.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad) == 584
    from mbcost.gate.baseline import CONVENTIONS
    from mbcost.render.conventions import PARAMS

    r = run("compare", "--models", "cli_models:frozen", "--input", "16", "--no-bench", "--format", "json")
    doc_params = json.loads(r.stdout)["conventions"]["params"]
    table = run("compare", "--models", "cli_models:frozen", "--input", "16", "--no-bench").stdout
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `params` |"))
    for text in (doc_params, PARAMS, CONVENTIONS.split(";")[0], row):
        assert "unique trainable" not in text and "frozen" in text, text
    assert "frozen ones (requires_grad=False) included" in " ".join(table.split())


# --- --execute real is guarded by the memory estimate ---------------------------------------------


def test_a_real_run_too_big_for_memory_is_refused_before_anything_is_allocated(monkeypatch):
    import mbcost.cost.walker as walker

    def no_real_forward(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the real forward was started")

    monkeypatch.setattr(walker, "_real_inputs", no_real_forward)
    # Conv2d(3, 64, 3, pad 1) on 1x3x64x64: weights (64*27 + 64) * 4 = 7,168 B, input 3*64*64*4 = 49,152 B,
    # output 64*64*64*4 = 1,048,576 B. Weights (x2) and input alone fit in 200 kB; the activations do not.
    monkeypatch.setattr("mbcost.host.available_cpu_memory", lambda: 200_000)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU())
    with pytest.raises(AnalysisError, match=r"real CPU forward would need about .* 2 x activations .* only 200.00 kB"):
        mbcost.analyze(model, 64, execute="real")
    r = run("compare", "--models", "cli_models:tiny", "--input", "512", "--batch", "8", "--execute", "real",
            "--no-bench")
    assert "real CPU forward would need about" in one_line_error(r)


# --- strict JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["paper", "fvcore"])
def test_json_for_a_parameter_free_model_has_null_ratios_never_nan(convention):
    r = run("compare", "--models", "cli_models:noparams,cli_models:tiny", "--input", "16", "--format", "json",
            "--no-bench", "--convention", convention)
    assert r.exit_code == 0, r.output
    doc = _strict_json(r.stdout)
    noparams, tiny = doc["models"]
    assert tiny["ratios"]["cli_models:noparams"] == {"params": None, "macs": None}  # nothing to divide by
    assert noparams["ratios"]["cli_models:tiny"]["params"] == 0.0  # 0 / 224
    assert "nan" not in r.stdout.lower()
    csv_rows = list(csv.DictReader(io.StringIO(run("compare", "--models", "cli_models:noparams,cli_models:tiny",
                                                   "--input", "16", "--format", "csv", "--no-bench").stdout)))
    assert csv_rows[1]["params_vs_cli_models:noparams"] == ""


def test_to_json_writes_null_for_non_finite_floats():
    from mbcost.render.table import to_json

    assert _strict_json(to_json({"a": float("nan"), "b": [float("inf"), 1.5], "c": (-float("inf"),)})) == \
        {"a": None, "b": [None, 1.5], "c": [None]}


def test_bench_csv_inputs_cell_is_json():
    r = run("bench", "--models", "v2@0.35", "--input", "2x3x64x64", "--threads", "1", "--format", "csv",
            measure=FakeMeasure(run_fn=False))
    assert r.exit_code == 0, r.output
    row = next(csv.DictReader(io.StringIO(r.stdout)))
    assert _strict_json(row["inputs"]) == [{"shape": [2, 3, 64, 64], "dtype": "float32"}]


# --- the gate reads --input as every command does ------------------------------------------------


def test_gate_checks_a_model_taking_int64_token_ids(tmp_path):
    baseline = tmp_path / "b.json"
    r = run("gate", "--models", "cli_models:tokens", "--input", "1x64:int64", "--baseline", str(baseline), "--update")
    assert r.exit_code == 0, r.output
    entry = json.loads(baseline.read_text())["models"][0]
    assert (entry["input"], entry["batch"]) == ("1x64:int64", 1)
    assert entry["macs"] == 64 * 16 * 4  # Linear(16, 4) on 64 tokens
    assert entry["layers"] == {"emb": {"params": 100 * 16, "macs": 0}, "fc": {"params": 16 * 4 + 4, "macs": 4096}}
    assert run("gate", "--baseline", str(baseline)).exit_code == 0  # the baseline's own entries
    same = run("gate", "--models", "cli_models:tokens", "--input", "[1, 64]:int64", "--baseline", str(baseline))
    assert same.exit_code == 0, same.output  # the same input, spelt as a bracketed shape
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.mbcost.gate]\nmodels = ["cli_models:tokens"]\ninputs = ["1x64:int64"]\nbaseline = "{baseline.name}"\n')
    assert run("gate").exit_code == 0


def test_gate_inputs_one_configuration_each():
    from mbcost.gate import parse_inputs

    assert parse_inputs(["224,192", "[1,64]:int64", "[1,64]", "1x3x8x16x16", "mask=1x8:int64", "96:float16"]) == (
        (224, 224), (192, 192), "1x64:int64", "[1,64]", (1, 3, 8, 16, 16), "mask=1x8:int64", "96x96:float16")
    line = one_line_error(run("gate", "--models", "v2", "--input", "big"))
    assert "bad input size 'big'" in line and ":DTYPE (1x64:int64" in line and "[1,64]" in line


# --- --mode train in every format ----------------------------------------------------------------


def test_train_fields_in_csv_and_table_as_in_json():
    args = ("--models", "cli_models:tokens", "--input", "1x5:int64", "--mode", "train", "--no-bench")
    doc = json.loads(run("compare", *args, "--format", "json").stdout)["models"][0]
    row = next(csv.DictReader(io.StringIO(run("compare", *args, "--format", "csv").stdout)))
    keys = ["mode", "optimizer", "forward_macs", "backward_macs", "backward_elementwise_ops", "optimizer_ops",
            "optimizer_state_bytes", "trainable_params", "train_peak_memory_bytes", "train_peak_activation_bytes",
            "train_peak_op"]
    assert {k: row[k] for k in keys} == {k: "" if doc[k] is None else str(doc[k]) for k in keys}
    # Linear(16, 4) on 5 tokens: 320 MACs; backward: grad input (the embedding's output needs one) + grad weight
    assert (doc["forward_macs"], doc["backward_macs"]) == (320, 2 * 320)
    assert doc["optimizer_ops"] == 2 * 1668  # sgd: 2 per trainable element

    layer_args = ("layers", "cli_models:tokens", "--input", "1x5:int64", "--mode", "train")
    layers = json.loads(run(*layer_args, "--format", "json").stdout)["layers"]
    rows = list(csv.DictReader(io.StringIO(run(*layer_args, "--format", "csv").stdout)))
    fc = next(r for r in rows if r["name"] == "fc")
    assert int(fc["backward_macs"]) == next(x["backward_macs"] for x in layers if x["name"] == "fc") == 640
    table = run(*layer_args).stdout
    assert "backward MACs" in table and "training step (sgd)" in table
    inference = run("layers", "cli_models:tokens", "--input", "1x5:int64", "--format", "csv").stdout
    assert "backward_macs" not in inference.splitlines()[0]


# --- an embedding's parameters belong to its module ----------------------------------------------


def test_embedding_parameters_are_attributed_to_their_module_and_shown():
    cost = mbcost.analyze(__import__("cli_models").tokens(), "1x5:int64")
    assert cost.unattributed_params == 0 and [u.module for u in cost.unpriced_params] == ["emb"]
    assert cost.categories["other"].params == 100 * 16  # the embedding table
    doc = json.loads(run("layers", "cli_models:tokens", "--input", "1x5:int64", "--format", "json").stdout)
    assert doc["unpriced_params"] == [{"module": "emb", "module_type": "Embedding", "op": "embedding",
                                       "params": 1600}]
    rows = list(csv.DictReader(io.StringIO(run("layers", "cli_models:tokens", "--input", "1x5:int64", "--format",
                                               "csv").stdout)))
    assert [(r["name"], r["params"]) for r in rows] == [("emb", "1600"), ("fc", "68")]
    assert sum(int(r["params"]) for r in rows) == doc["params"] == 1668
    table = run("layers", "cli_models:tokens", "--input", "1x5:int64").stdout
    assert "emb (embedding, no formula)" in table and "1.60 k" in table
    # a module the forward never runs still has its parameters under (unattributed)
    from mbcost.gate.baseline import measure

    assert measure("gate_models:with_spare", (8, 8)).layers["(unattributed)"].params > 0


# --- small refusals ------------------------------------------------------------------------------


def test_report_from_a_directory_says_it_is_a_directory(tmp_path):
    line = one_line_error(run("report", "--models", "v2@0.35", "--no-bench", "--from", str(tmp_path), "--out",
                              str(tmp_path / "r.html")))
    assert "is a directory" in line and "does not exist" not in line


def test_report_refuses_a_negative_threshold(tmp_path):
    line = one_line_error(run("report", "--models", "v2@0.35", "--no-bench", "--threshold", "-1", "--out",
                              str(tmp_path / "r.html")))
    assert "--threshold must be a number >= 0" in line
    assert not (tmp_path / "r.html").exists()


def test_memory_with_no_models_does_not_suggest_an_option_it_lacks():
    line = one_line_error(run("memory", ""))
    assert "no models given" in line and "--models" not in line


def test_a_model_given_twice_is_one_column_as_in_the_gate():
    # v1@0.25 twice (or v2 and v2@1): the table showed two columns and 'params vs v1@0.25' twice, the JSON
    # one empty 'ratios' per copy; the gate already keeps one entry per model
    result = run("compare", "--models", "v1@0.25,v2,v1@0.25,v2@1", "--input", "32", "--no-bench", "--format", "json")
    assert result.exit_code == 0, result.output
    models = json.loads(result.stdout)["models"]
    assert [m["label"] for m in models] == ["v1@0.25", "v2"]
    assert list(models[0]["ratios"]) == ["v2"]


def test_a_full_shape_too_large_says_the_range_it_missed():
    # the bound is above, not below: the line said "every dimension must be >= 1" for 1x3x9999999999x32
    line = one_line_error(run("layers", "v1@0.25", "--input", "1x3x9999999999x32"))
    assert "out of range" in line and "4194304" in line


def test_output_through_a_symlink_writes_the_file_it_points_at(tmp_path):
    # the atomic rename replaced the link itself with a regular file, leaving the file it pointed at unchanged
    real = tmp_path / "shared" / "results.json"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "results.json"
    link.symlink_to(real)
    result = run("layers", "v1@0.25", "--input", "32", "--format", "json", "--output", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert json.loads(real.read_text())["label"] == "v1@0.25"
