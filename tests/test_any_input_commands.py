"""Every command takes the general inputs: reconcile, bench, gate and report on a full shape.

The reference for each count is the same model at the image shorthand (``--input 64``), whose
numbers the rest of the suite checks against the papers and torchvision, or a peer counter's live
total (torch's FlopCounterMode inside ``reconcile``).
"""

from __future__ import annotations

import json

from bench_fakes import FakeMeasure, run

import mbcost


def test_reconcile_on_a_full_shape_matches_the_live_counter():
    r = run("reconcile", "v2@0.35", "--input", "2x3x64x64", "--counters", "torch", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["inputs"] == [{"shape": [2, 3, 64, 64], "dtype": "float32"}]
    torch_total = doc["counters"]["torch"]["total"]
    assert torch_total == 2 * mbcost.analyze("v2@0.35", 64, batch=2).macs  # FlopCounterMode's live FLOPs
    assert doc["exact"] is True


def test_bench_measures_a_full_shape_and_records_it(monkeypatch, tmp_path):
    timer = FakeMeasure(run_fn=True)
    save = tmp_path / "runs.jsonl"
    r = run("bench", "--models", "v2@0.35", "--input", "2x3x64x64", "--threads", "1", "--min-time", "0.001",
            "--max-time", "0.01", "--save", str(save), "--format", "json", measure=timer)
    assert r.exit_code == 0, r.output
    rec = json.loads(save.read_text().splitlines()[0])
    assert rec["inputs"] == [{"shape": [2, 3, 64, 64], "dtype": "float32"}] and rec["batch"] == 2
    assert rec["macs"] == mbcost.analyze("v2@0.35", 64, batch=2).macs
    several = run("bench", "--models", "v2@0.35", "--input", "1x3x64x64", "--batch", "1,2", measure=timer)
    assert several.exit_code == 2 and "full shape carries its own batch" in several.stderr


def test_gate_takes_full_shapes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pyproject.toml above: only the command line configures the gate
    images, clips = tmp_path / "images.json", tmp_path / "clips.json"
    r = run("gate", "--models", "v2@0.35", "--input", "2x3x64x64", "--baseline", str(images), "--update")
    assert r.exit_code == 0, r.output
    # an image given as a full shape is stored as [H, W] with its batch; other shapes as they are
    entry = json.loads(images.read_text())["models"][0]
    assert (entry["input"], entry["batch"]) == ([64, 64], 2)
    assert entry["macs"] == mbcost.analyze("v2@0.35", 64, batch=2).macs
    r = run("gate", "--models", "gate_models:video", "--input", "1x3x4x16x16", "--baseline", str(clips), "--update")
    assert r.exit_code == 0, r.output
    entry = json.loads(clips.read_text())["models"][0]
    assert entry["input"] == [1, 3, 4, 16, 16]
    assert entry["macs"] == 2 * 4 * 16 * 16 * 3 * 27  # Conv3d(3, 2, 3, padding=1): out elements x 3 x 3^3
    ok = run("gate", "--baseline", str(clips))
    assert ok.exit_code == 0, ok.output
    assert "1x3x4x16x16" in ok.stdout


def test_report_on_a_full_shape(tmp_path):
    out = tmp_path / "r.html"
    r = run("report", "--models", "v2@0.35", "--input", "1x3x96x96", "--no-bench", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "96x96" in r.stdout
    assert "mbcost report: v2@0.35 at 96x96" in out.read_text(encoding="utf-8")
