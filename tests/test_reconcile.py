"""reconcile: each component checked against an independent figure (hand formulas over the real module's
BatchNorm sizes, the live libraries' own per-op breakdowns); the CLI around it."""

from __future__ import annotations

import csv
import io
import json

import pytest
from torch import nn

import mbcost
from mbcost.cost.conventions import apply_convention
from mbcost.counters.base import CounterResult, measure
from mbcost.counters.reconciliation import UNEXPLAINED, reconcile, reconcile_model

fvcore = pytest.importorskip("fvcore")
thop = pytest.importorskip("thop")
ptflops = pytest.importorskip("ptflops")


def bn_elements(spec: str, size: int) -> int:
    """Input elements of every BatchNorm2d of the real zoo module (forward hooks; independent of the engine)."""
    import torch
    from torch import nn

    model = mbcost.build_model(spec).eval()
    seen: list[int] = []
    handles = [m.register_forward_hook(lambda m, i, o: seen.append(i[0].numel()))
               for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return sum(seen)


def test_v2_at_224_every_unit_explained(cli):
    """The issue's acceptance check: `mbcost reconcile v2 --input 224`."""
    r = cli("reconcile", "v2", "--input", "224", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["model"] == "v2" and doc["exact"] is True
    assert doc["analytic"]["macs"] == 300_774_272
    assert set(doc["counters"]) == {"fvcore", "thop", "torch", "ptflops", "ptflops-aten"}
    for name, rec in doc["counters"].items():
        assert rec["analytic"] == 300_774_272
        assert rec["unexplained"] == 0 and all(c["kind"] != UNEXPLAINED for c in rec["components"]), name
    kinds = {name: {c["kind"]: c["amount"] for c in rec["components"]} for name, rec in doc["counters"].items()}
    bn = bn_elements("v2", 224)  # every BatchNorm2d of v2 has an affine scale
    # fvcore: eval BatchNorm 2/elem + adaptive avg pool 1/input elem; thop: BatchNorm 4/elem + pool in + out;
    # torch: FLOPs, so the whole analytic count once more
    assert kinds["fvcore"] == {"batchnorm": 2 * bn, "global_pool": 1280 * 7 * 7}
    assert kinds["thop"] == {"batchnorm": 4 * bn, "global_pool": 1280 * 7 * 7 + 1280}
    assert kinds["torch"] == {"conv": 299_494_272, "matmul": 1_280_000}
    # the same components, read from the libraries' own per-op breakdowns
    fv = measure("fvcore", "v2", 224).by_op
    assert (fv["batch_norm"], fv["adaptive_avg_pool2d"]) == (kinds["fvcore"]["batchnorm"],
                                                             kinds["fvcore"]["global_pool"])
    assert fv["conv"] + fv["linear"] == doc["analytic"]["macs"]
    to = measure("torch", "v2", 224).by_op
    assert to["aten.convolution"] == 2 * 299_494_272 and to["aten.addmm"] == 2 * 1_280_000
    # ptflops: conv and Linear bias adds (one per output element), BatchNorm 2/elem (affine), ReLU6 hooks
    # 1/elem, adaptive pool twice (its hook + F.adaptive_avg_pool2d); the aten backend: the bias adds only
    conv_bias, fc_bias = 0, 1000  # v2's convolutions have no bias
    relu6 = sum(lc.other_ops for lc in mbcost.analyze("v2", 224).layers if lc.module_type == "ReLU6")
    assert kinds["ptflops-aten"] == {"matmul": fc_bias} and conv_bias == 0
    assert kinds["ptflops"] == {"batchnorm": 2 * bn, "activation": relu6, "global_pool": 2 * 1280 * 7 * 7,
                                "matmul": fc_bias}
    skipped = {(s["module_type"], s["op"]): s for s in doc["counters"]["fvcore"]["skipped"]}
    assert skipped[("ReLU6", "hardtanh")]["calls"] == 35
    assert doc["counters"]["fvcore"]["unsupported"] == {"aten::hardtanh_": 35, "aten::add": 10}
    assert doc["counters"]["thop"]["unsupported"] == {"InvertedResidual": 17}


def test_table_shows_exact_components(cli):
    r = cli("reconcile", "v1@0.5", "--input", "96", "--counters", "fvcore,torch")
    assert r.exit_code == 0, r.output
    assert "exact: every unit explained" in r.stdout
    assert "batchnorm" in r.stdout and "2 FLOPs per MAC" in r.stdout
    assert "thop" not in r.stdout.split("\n")[0]
    assert "UNEXPLAINED" not in r.stdout


def test_markdown_and_csv(cli, tmp_path):
    r = cli("reconcile", "v2@0.5", "--input", "64", "--counters", "thop", "--format", "markdown")
    assert r.exit_code == 0 and r.stdout.startswith("**mbcost reconcile: v2@0.5")
    out = tmp_path / "rec.csv"
    r = cli("reconcile", "v2@0.5", "--input", "64", "--counters", "thop", "--format", "csv", "--output", str(out))
    assert r.exit_code == 0 and r.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    components = {row["kind"]: int(row["amount"]) for row in rows if row["row"] == "component"}
    # v2@0.5 at 64: last conv keeps 1280 channels (2x2 spatial); thop: BatchNorm 4/elem, pool in + out
    assert components == {"batchnorm": 4 * bn_elements("v2@0.5", 64), "global_pool": 1280 * 2 * 2 + 1280}


def test_unexplained_difference_is_loud():
    cost = mbcost.analyze("v2@0.5", 64)
    preset = apply_convention(cost, "fvcore").total
    off = CounterResult(counter="fvcore", model="v2@0.5", input=(64, 64), batch=1, total=preset + 7, unit="MACs",
                        by_op={}, unsupported={}, version="test", seconds=0.0)  # a library 7 MACs off the preset
    rec = reconcile(cost, off)
    assert not rec.exact and rec.unexplained == 7
    assert rec.components[-1].kind == UNEXPLAINED and rec.components[-1].amount == 7
    assert rec.by_category[UNEXPLAINED] == 7
    from mbcost.render.reconcile import reconcile_table

    table = reconcile_table(cost, [rec])
    assert "UNEXPLAINED" in table.title and table.notes[0].startswith("WARNING")
    assert any("!! unexplained" in row[1] for row in table.rows)


def test_user_factory_with_functional_ops(cli):
    """A user's module:factory: functional ops are data, ops without a formula are listed with calls."""
    import fixtures_models

    cost, recs = reconcile_model("fixtures_models:factory", 16)
    assert cost.macs == fixtures_models.EXPECTED_MACS_16
    assert [(u.op, u.calls) for u in cost.uncounted] == [("embedding", 1)]
    for rec in recs:
        assert rec.exact, (rec.counter, rec.components)
    by = {rec.counter: rec for rec in recs}
    thop_skipped = {(s.kind, s.op) for s in by["thop"].skipped}
    assert {("activation", "relu"), ("elementwise", "mul"), ("global_pool", "mean")} <= thop_skipped
    fv_kinds = {c.kind for c in by["fvcore"].components}
    assert fv_kinds == {"batchnorm", "global_pool"}  # fvcore sees F.adaptive_avg_pool2d, thop does not

    r = cli("reconcile", "fixtures_models:factory", "--input", "16")
    assert r.exit_code == 0, r.output
    assert "embedding x1" in r.stdout  # the engine's uncounted op, with its calls

    r = cli("compare", "--models", "fixtures_models:factory,v1@0.25", "--input", "32", "--counters", "all",
            "--format", "json", "--no-bench")
    assert r.exit_code == 0, r.output
    entry = json.loads(r.stdout)["models"][0]
    assert set(entry["counters"]) == {"fvcore", "thop", "torch", "ptflops", "ptflops-aten"}
    assert entry["uncounted"] == [{"op": "embedding", "module": "emb", "module_type": "Embedding", "calls": 1}]


@pytest.mark.parametrize("convention", ["fvcore", "thop", "torch", "ptflops", "ptflops-aten"])
def test_compare_convention_matches_counter(cli, convention):
    r = cli("compare", "--models", "v2@0.5,v1@0.25", "--input", "64", "--counters", convention,
            "--convention", convention, "--format", "json", "--no-bench")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["convention"] == convention
    for entry in doc["models"]:
        key = "flops" if convention == "torch" else "macs"
        assert entry[key] == entry["counters"][convention], entry["label"]
        assert entry["convention"] == convention and "skipped" in entry
        assert entry["convention_total"] == entry["counters"][convention]


def test_compare_counters_table_and_csv(cli):
    r = cli("compare", "--models", "v1@0.25", "--input", "64", "--counters", "torch", "--convention", "thop",
            "--format", "markdown", "--no-bench")
    assert r.exit_code == 0, r.output
    assert "with the thop convention's figures" in r.stdout
    assert "torch preset vs library" in r.stdout and "exact" in r.stdout
    r = cli("compare", "--models", "v1@0.25", "--input", "64", "--counters", "torch", "--format", "csv", "--no-bench")
    row = next(csv.DictReader(io.StringIO(r.stdout)))
    assert int(row["torch_total"]) == 2 * int(row["macs"]) and row["convention"] == "paper"


def test_compare_paper_json_unchanged_without_counters(cli):
    r = cli("compare", "--models", "v2", "--format", "json", "--no-bench")
    entry = json.loads(r.stdout)["models"][0]
    assert entry["macs"] == 300_774_272 and "counters" not in entry


@pytest.mark.parametrize("args, message", [
    (["reconcile", "v2", "--counters", "ptflops-pytorch"], "unknown counter 'ptflops-pytorch'"),
    (["reconcile", "v2", "--input", "8"], "too small"),
    (["compare", "--models", "v2", "--counters", "nope", "--no-bench"], "unknown counter 'nope'"),
    (["compare", "--models", "v2", "--convention", "flops", "--no-bench"], "flops"),
])
def test_bad_input_is_one_line_exit_2(cli, args, message):
    r = cli(*args)
    assert r.exit_code == 2
    assert message in r.output and "Traceback" not in r.output


def test_missing_library_exit_2(cli, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "thop", None)
    r = cli("reconcile", "v1@0.25", "--input", "64", "--counters", "thop")
    assert r.exit_code == 2
    assert "thop is not installed; pip install 'mbcost[counters]'" in r.output


def test_the_package_name_reconcile_is_the_function_even_after_its_module_is_imported():
    import importlib

    import mbcost.counters

    importlib.import_module("mbcost.counters.reconciliation")  # a submodule import sets a package attribute
    from mbcost.counters import reconcile

    assert callable(reconcile) and reconcile is mbcost.reconcile


class Rolls(nn.Module):
    """Two modules issuing ``roll``, which the engine has no formula for: ``a`` twice per call, called twice;
    ``b`` once. By hand: 2 x 2 + 1 = 5 calls of ``roll``, in two modules."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = RollTwice(), RollOnce()

    def forward(self, x):
        return self.b(self.a(self.a(x)))


class RollTwice(nn.Module):
    def forward(self, x):
        return x.roll(1, -1).roll(-1, -2)


class RollOnce(nn.Module):
    def forward(self, x):
        return x.roll(2, -1)


def test_uncounted_notes_sum_the_calls_of_each_op(cli):
    """Every note naming the ops without a formula gives each op's calls over all the modules that issued it."""
    from mbcost.render.costs import compare_table
    from mbcost.render.reconcile import reconcile_table

    cost = mbcost.analyze(Rolls(), [1, 4, 4])
    assert sorted((u.module, u.calls) for u in cost.uncounted) == [("a", 4), ("b", 1)]
    assert cost.uncounted_calls == {"roll": 5}
    assert any(n.endswith("not counted): roll x5") for n in compare_table([cost]).notes)
    rec = reconcile(cost, measure("torch", Rolls(), [1, 4, 4]))
    assert any(n.endswith("(not counted): roll x5") for n in reconcile_table(cost, [rec]).notes)
    off = CounterResult(counter="torch", model="Rolls", input=(1, 4, 4), batch=1, total=rec.total + 2, unit="FLOPs",
                        by_op={}, unsupported={}, version="test", seconds=0.0)
    assert reconcile(cost, off).components[-1].reason.endswith("ops the engine has no formula for: roll x5")


def test_uncounted_note_on_bert_counts_each_embedding(cli):
    """The issue's case: BERT's word, position and token-type embeddings are three calls of ``embedding``."""
    pytest.importorskip("transformers")
    r = cli("compare", "--models", "attention_models:bert_small", "--input", "1x16:int64", "--no-bench",
            "--format", "json")
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)["models"][0]["uncounted"]
    assert sum(u["calls"] for u in listed if u["op"] == "embedding") == 3
    r = cli("compare", "--models", "attention_models:bert_small", "--input", "1x16:int64", "--no-bench")
    assert "embedding x3, gather x1" in " ".join(r.stdout.split())
