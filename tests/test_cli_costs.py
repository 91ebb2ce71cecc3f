"""CLI: compare, layers and conv; formats, JSON schema, and every bad input -> one line, exit 2."""

import csv
import io
import json
import subprocess
import sys

import pytest

CATS = ["conv", "dwconv", "pwconv", "linear", "other"]


def test_compare_json_schema(cli):
    r = cli("compare", "--input", "224", "--models", "v1,v2,vgg16", "--format", "json", "--no-bench")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    names = [m["name"] for m in doc["models"]]
    assert names == ["v1", "v2", "vgg16"]
    v1, v2, vgg = doc["models"]
    assert (v1["params"], v1["macs"], v1["flops"]) == (4_231_976, 568_740_352, 2 * 568_740_352)
    assert v1["input"] == [224, 224] and v1["batch"] == 1 and v1["width"] == 1.0
    assert vgg["width"] is None
    assert sorted(v1["categories"]) == sorted(CATS)
    assert all(set(v) >= {"params", "macs"} for v in v1["categories"].values())
    assert isinstance(v2["macs"], int)
    assert v1["ratios"]["vgg16"]["params"] == pytest.approx(4_231_976 / 138_357_544)


def test_compare_table_states_conventions(cli):
    r = cli("compare", "--models", "v1,vgg16", "--no-bench")
    assert r.exit_code == 0
    assert "1/32.7" in r.stdout  # "about 1/32 of VGG16's parameters"
    assert "Mult-Adds" in r.stdout and "FLOPs = 2 x MACs" in r.stdout


def test_compare_markdown_and_csv(cli, tmp_path):
    r = cli("compare", "--models", "v1,v2", "--format", "markdown", "--no-bench")
    assert r.stdout.startswith("**mbcost compare") and "| params |" in r.stdout
    out = tmp_path / "c.csv"
    r = cli("compare", "--models", "v1,v2@0.5", "--format", "csv", "--output", str(out), "--no-bench")
    assert r.exit_code == 0 and r.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [row["model"] for row in rows] == ["v1", "v2@0.5"]
    assert int(rows[0]["pwconv_macs"]) > 0


def test_layers_command(cli):
    r = cli("layers", "v1", "--input", "224", "--format", "json")
    doc = json.loads(r.stdout)
    first = doc["layers"][0]
    assert first["name"] == "features.0.0" and first["macs"] == 10_838_016
    assert first["kernel"] == [3, 3] and first["stride"] == [2, 2] and first["groups"] == 1
    assert first["input_shape"] == [1, 3, 224, 224] and first["output_shape"] == [1, 32, 112, 112]
    assert sum(layer["macs"] for layer in doc["layers"]) == doc["macs"]
    r = cli("layers", "v2", "--input", "160x128", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert {"name", "category", "arithmetic_intensity", "activation_bytes"} <= set(rows[0])
    r = cli("layers", "vgg16")
    assert r.exit_code == 0 and "features.28" in r.stdout and "intensity" in r.stdout


def test_conv_command_json(cli):
    r = cli("conv", "--cin", "512", "--cout", "512", "--k", "3", "--size", "14", "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["standard"]["macs"] == 3 * 3 * 512 * 512 * 14 * 14
    assert doc["separable"]["params"] == 3 * 3 * 512 + 512 * 512
    assert doc["ratio"] == pytest.approx(1 / 512 + 1 / 9) and doc["formula_ratio"] == pytest.approx(1 / 512 + 1 / 9)
    r = cli("conv", "--cin", "32", "--cout", "64", "--size", "112", "--stride", "2", "--bias")
    assert r.exit_code == 0 and "1/N + 1/K^2" in r.stdout and "bias" in r.stdout


BAD = [
    (["compare", "--models", "resnet50"], "unknown model 'resnet50'; known models"),
    (["compare", "--models", "v2@0"], "out of range"),
    (["compare", "--models", "v2@-1"], "out of range"),
    (["compare", "--models", "v2@1000"], "out of range"),
    (["compare", "--models", "v2@abc"], "not a number"),
    (["compare", "--models", ""], "no models given"),
    (["compare", "--models", ",,"], "no models given"),
    (["compare", "--input", "16"], "too small"),
    (["compare", "--input", "abc"], "bad input size"),
    (["compare", "--batch", "abc"], "valid integer"),
    (["compare", "--batch", "0"], "batch"),
    (["compare", "--output", "/nonexistent-dir/x.json"], "does not exist"),
    (["compare", "--format", "xml"], "xml"),
    (["layers", "nope"], "unknown model"),
    (["layers", "vgg16", "--input", "31"], "too small"),
    (["conv", "--cin", "0"], "--cin"),
    (["conv", "--cin", "x"], "valid integer"),
    (["conv", "--k", "9", "--size", "2", "--padding", "0"], "does not fit"),
    (["compare", "--models", "nosuchpkg.mod:factory"], "cannot import module"),
    (["compare", "--models", "json:nope"], "has no attribute"),
    (["compare", "--models", "json:dumps"], "raised"),
    (["nosuchcommand"], "No such command"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2(cli, args, message):
    if args[0] == "compare":
        args = [*args, "--no-bench"]
    r = cli(*args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("mbcost: error:") and message in lines[0]
    assert "Traceback" not in r.output


def test_unwritable_output_keeps_existing_file(cli, tmp_path):
    target = tmp_path / "keep.json"
    target.write_text("precious")
    r = cli("compare", "--models", "nope", "--format", "json", "--output", str(target), "--no-bench")
    assert r.exit_code == 2
    assert target.read_text() == "precious"


def test_help_does_not_import_torch():
    code = ("import sys\nfrom mbcost.cli import main\nsys.argv = ['mbcost', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nassert 'pandas' not in sys.modules\nprint('OK')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "compare" in out.stdout and "OK" in out.stdout


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "mbcost", "compare", "--models", "v1", "--format", "json",
                          "--no-bench"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["models"][0]["params"] == 4_231_976


# --- any input ----------------------------------------------------------------------------------


def test_full_shape_and_repeated_inputs(cli):
    r = cli("compare", "--models", "fixtures_models:two_images", "--input", "1x3x16x16", "--input", "1x3x16x16",
            "--format", "json", "--no-bench")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)["models"][0]
    assert m["inputs"] == [{"shape": [1, 3, 16, 16], "dtype": "float32"}] * 2
    assert m["execution"] == "meta"
    assert m["macs"] == 2 * (4 * 16 * 16 * 3 * 9) + 2 * 16 * 16 * 8  # the shared stem twice, then the 1x1 fuse


def test_int64_token_ids_and_a_keyword_input(cli):
    r = cli("layers", "fixtures_models:token_classifier", "--input", "2x10", "--input", "mask=2x10",
            "--input-dtype", "int64", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["inputs"] == [{"shape": [2, 10], "dtype": "int64"},
                             {"shape": [2, 10], "dtype": "int64", "name": "mask"}]
    assert doc["macs"] == 2 * 10 * 8 * 4  # the linear layer on 2 x 10 tokens
    assert [u["op"] for u in doc["uncounted"]] == ["embedding"]


def test_execute_modes_and_the_fallback_line(cli):
    meta = cli("layers", "fixtures_models:data_dependent", "--input", "12", "--execute", "meta")
    assert meta.exit_code == 2
    line = meta.stderr.strip()
    assert "\n" not in line and "module (root) (DataDependent)" in line and "--execute real" in line
    auto = cli("compare", "--models", "fixtures_models:data_dependent", "--input", "12", "--no-bench",
               "--format", "json")
    assert auto.exit_code == 0, auto.output
    m = json.loads(auto.stdout)["models"][0]
    assert m["execution"] == "real" and "meta run stopped" in m["execution_note"]
    assert m["macs"] == 4 * 10 * 10 * 27
    table = cli("compare", "--models", "fixtures_models:data_dependent", "--input", "12", "--no-bench")
    assert "counted on a real CPU forward" in table.stdout


@pytest.mark.parametrize("args,message", [
    (["--input", "1x3:int9"], "unknown input dtype"),
    (["--input", "1x3x0x8"], "out of range"),
    (["--input", "9bad=1x3"], "bad input name"),
    (["--execute", "maybe"], "--execute"),
    (["--input-dtype", "float8"], "unknown input dtype"),
])
def test_bad_any_input_one_line_exit_2(cli, args, message):
    r = cli("layers", "v2", *args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mbcost: error:") and message in lines[0], r.stderr
