"""Convention presets: one table per counter over the engine's records, checked against the live libraries
and against per-element counts taken from the real module with forward hooks (independent of the engine)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import mbcost
from mbcost.cost.conventions import CONVENTIONS, REGISTRY, Unit, apply_convention, get_convention
from mbcost.errors import SpecError


def _installed(counter: str) -> bool:
    module = {"fvcore": "fvcore", "thop": "thop", "ptflops": "ptflops", "ptflops-aten": "ptflops"}.get(counter)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def module_elements(spec: str, size: int, types: tuple[type, ...]) -> dict[str, int]:
    """Input elements of every module of ``types`` in the real zoo module at ``size``, from forward hooks."""
    model = mbcost.build_model(spec).eval()
    seen: dict[str, int] = {}
    handles = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, i[0].numel()))
               for n, m in model.named_modules() if isinstance(m, types)]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("model", ["v2", "v1", "vgg16-bn"])
def test_presets_equal_the_live_libraries_at_224(model):
    """Each preset against its library run now (not a copied total); unavailable libraries are skipped."""
    from mbcost.counters.base import COUNTERS, measure_many

    cost = mbcost.analyze(model, 224)
    assert apply_convention(cost, "paper").total == cost.macs
    counters = [c for c in COUNTERS if _installed(c)]
    for r in measure_many(counters, model, 224):
        assert r.total == apply_convention(cost, r.counter).total, r.counter


def test_v2_breakdown_by_kind_against_hooks():
    cost = mbcost.analyze("v2", 224)
    bn = sum(module_elements("v2", 224, (nn.BatchNorm2d,)).values())  # every BN has an affine scale
    pooled = 1280 * 7 * 7
    fv = apply_convention(cost, "fvcore")
    assert fv.by_kind == {"conv": 299_494_272, "matmul": 1_280 * 1_000, "batchnorm": 2 * bn, "global_pool": pooled}
    assert (fv.macs, fv.ops) == (299_494_272 + 1_280_000, 2 * bn + pooled)  # MACs and elementwise ops kept apart
    th = apply_convention(cost, "thop")
    assert th.by_kind["batchnorm"] == 4 * bn  # thop: 2/elem, doubled for the affine scale
    assert th.by_kind["global_pool"] == pooled + 1280  # one add per input, one divide per output
    to = apply_convention(cost, "torch")
    assert to.unit is Unit.FLOP and to.ops == 0
    assert to.total == 2 * 300_774_272 and to.macs == 300_774_272


def test_each_conventions_unit_is_what_its_library_counts_per_mac():
    """One bias-free Linear(8, 4) on one row: 8 * 4 = 32 MACs and nothing else. Each library run on it gives
    32 x what it counts per MAC (torch: 2 FLOPs; the others: 1), the factor of the convention's unit."""
    from mbcost.counters.base import COUNTERS, measure_many

    layer = nn.Linear(8, 4, bias=False)
    cost = mbcost.analyze(layer, [1, 8])
    assert cost.macs == 32 and apply_convention(cost, "paper").total == 32 == 32 * REGISTRY["paper"].unit.per_mac
    counters = [c for c in COUNTERS if _installed(c)]
    for r in measure_many(counters, layer, [1, 8]):
        assert r.total == 32 * REGISTRY[r.counter].unit.per_mac, r.counter
    assert {c.unit for c in REGISTRY.values()} == set(Unit)  # both units are in use


def test_flops_never_double_elementwise_work():
    """Under fvcore, BatchNorm is elementwise work: its FLOPs count it once (the old view doubled it)."""
    cost = mbcost.analyze("v2", 224)
    bn = sum(module_elements("v2", 224, (nn.BatchNorm2d,)).values())
    fv = apply_convention(cost, "fvcore")
    assert fv.flops == 2 * 300_774_272 + 2 * bn + 1280 * 7 * 7
    assert fv.flops != 2 * fv.total


def test_compare_convention_json_and_table_do_not_double_batchnorm(cli):
    """The issue's bug: under --convention fvcore the row "FLOPs (2 x MACs)" and JSON flops were 2 x fvcore's
    total, BatchNorm included. Now flops = 2 x MACs + the elementwise ops fvcore counts, once."""
    bn = sum(module_elements("v2", 224, (nn.BatchNorm2d,)).values())
    r = cli("compare", "--models", "v2", "--convention", "fvcore", "--format", "json", "--no-bench")
    assert r.exit_code == 0, r.output
    entry = json.loads(r.stdout)["models"][0]
    assert entry["macs"] == 314_193_216  # the JSON contract: macs is fvcore's total
    assert entry["flops"] == 2 * 300_774_272 + 2 * bn + 1280 * 7 * 7
    assert entry["flops"] != 2 * entry["macs"]
    assert (entry["convention_macs"], entry["convention_ops"]) == (300_774_272, 2 * bn + 1280 * 7 * 7)
    r = cli("compare", "--models", "v2", "--convention", "fvcore", "--format", "markdown", "--no-bench")
    assert r.exit_code == 0, r.output
    assert "628,386,432" not in r.stdout and "628.39 M" not in r.stdout  # 2 x 314,193,216
    assert "FLOPs (2 x MACs) | 601.55 M" in r.stdout  # the paper's row stays the paper's
    assert "fvcore: FLOPs (2 x its MACs + its elementwise ops once) | 614.97 M" in r.stdout


def test_skipped_ops_are_data_with_would_be_cost():
    cost = mbcost.analyze("v2", 224)
    relu6_elems = sum(module_elements("v2", 224, (nn.ReLU6,)).values())
    skipped = {(s.kind, s.module_type): s for s in apply_convention(cost, "fvcore").skipped}
    relu6 = skipped[("activation", "ReLU6")]
    assert relu6.calls == 35  # every ReLU6 of v2
    assert relu6.would_be == relu6_elems  # the engine's 1 per element
    adds = skipped[("elementwise", "InvertedResidual")]
    assert adds.calls == 10 and "aten::add" in adds.reason
    bias = skipped[("bias_add", "conv/linear bias")]
    assert bias.would_be == 1000 and bias.calls == 1  # the classifier's bias
    bn = sum(module_elements("v2", 224, (nn.BatchNorm2d,)).values())
    torch_skipped = {s.kind: s for s in apply_convention(cost, "torch").skipped}
    assert torch_skipped["batchnorm"].would_be == 2 * bn  # the engine's 2 per element (eval BN folded)
    # ptflops counts bias adds, so it lists none as skipped
    assert "bias_add" not in {s.kind for s in apply_convention(cost, "ptflops").skipped}


def test_unknown_convention_is_a_spec_error():
    with pytest.raises(SpecError, match="paper, fvcore, thop, torch, ptflops, ptflops-aten"):
        get_convention("flops")
    assert CONVENTIONS == ("paper", "fvcore", "thop", "torch", "ptflops", "ptflops-aten")


class Norms(nn.Module):
    """BatchNorm with and without affine, an average pool with padding, an adaptive pool 2 -> 3."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(4, affine=False)
        self.bn_affine = nn.BatchNorm2d(4)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.adapt = nn.AdaptiveAvgPool2d(3)

    def forward(self, x):
        return self.adapt(self.pool(self.bn_affine(self.bn(x))))


def test_formula_variants_on_toy_layers():
    # input 1x4x4x4: 64 elements; avg pool 3/2/1 -> 2x2; adaptive 2 -> 3 (windows of 1, 2, 1... per axis)
    cost = mbcost.analyze(Norms(), (4, 4), in_channels=4)
    fv = {r.layer: r.amount for r in apply_convention(cost, "fvcore").records}
    th = {r.layer: r.amount for r in apply_convention(cost, "thop").records}
    pt = {r.layer: r.amount for r in apply_convention(cost, "ptflops").records}
    assert (fv["bn"], fv["bn_affine"]) == (64 * 1, 64 * 2)
    assert (th["bn"], th["bn_affine"]) == (64 * 2, 64 * 4)
    assert (pt["bn"], pt["bn_affine"]) == (64 * 1, 64 * 2)
    # thop avg pool, padding not counted: windows per axis over 4 with k3 s2 p1: [0,2) and [1,4) -> 2 + 3 = 5;
    # 5 * 5 per channel, 4 channels, plus one divide per output (4*2*2)
    assert th["pool"] == 4 * 5 * 5 + 16
    # adaptive 2 -> 3 along each axis: windows [0,1) [0,2) [1,2) -> 1 + 2 + 1 = 4; 4 * 4 per channel + outputs
    assert th["adapt"] == 4 * 4 * 4 + 4 * 3 * 3
    assert fv["adapt"] == 4 * 2 * 2  # fvcore: one per input element
    assert fv["pool"] == 0  # fvcore has no handle for avg_pool2d
    # ptflops: its pool hook (1 per input element) + F.avg_pool2d, which the module calls, replaced (1 more)
    assert (pt["pool"], pt["adapt"]) == (2 * 64, 2 * 4 * 2 * 2)


class PtflopsRules(nn.Module):
    """What ptflops' pytorch backend counts: conv with bias, ReLU (hook + F.relu), ReLU6 (hook only), functional
    F.relu and max pool, a residual ``+`` (not replaced), LayerNorm (1 per element), Linear with bias."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.relu6 = nn.ReLU6()
        self.ln = nn.LayerNorm(2)
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        y = self.relu6(self.relu(self.conv(x)))
        y = y + torch.nn.functional.relu(y)
        y = torch.nn.functional.max_pool2d(y, 2)  # 4x4 -> 2x2
        return self.fc(self.ln(y))


def test_ptflops_rules_by_hand():
    cost = mbcost.analyze(PtflopsRules(), (4, 4), in_channels=2, batch=2)
    pt = {r.layer: r.amount for r in apply_convention(cost, "ptflops").records}
    aten = apply_convention(cost, "ptflops-aten")
    conv_macs, conv_out = 2 * 4 * 4 * 4 * (2 * 9), 2 * 4 * 4 * 4  # batch 2, 4 channels of 4x4, 2*3*3 per output
    # module hooks are reported per image (divided by the batch); replaced functions count in full
    assert pt["conv"] == (conv_macs + conv_out) // 2
    assert pt["relu"] == conv_out // 2 + conv_out  # the hook per image + F.relu, which nn.ReLU calls
    assert pt["relu6"] == conv_out // 2  # F.hardtanh is not replaced
    assert pt["(root):relu"] == conv_out and pt["(root):add"] == 0
    assert pt["(root):max_pool2d_with_indices"] == conv_out
    assert pt["ln"] == 2 * 4 * 2 * 2 // 2  # 1 per element, per image
    rows = 2 * 4 * 2  # the Linear reads (2, 4, 2, 2): 16 rows of 2, 3 outputs each
    assert pt["fc"] == (rows * 2 * 3 + rows * 3) // 2
    # aten backend: convolution and addmm MACs + bias adds, nothing else, nothing averaged
    assert aten.total == conv_macs + conv_out + rows * 2 * 3 + rows * 3
    assert aten.ops == conv_out + rows * 3


def test_walkers_agree_on_new_fields():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, affine=False), nn.BatchNorm2d(8), nn.ReLU6(),
                          nn.AvgPool2d(3, 2, 1, count_include_pad=False), nn.MaxPool2d(2, ceil_mode=True)).eval()
    fast = mbcost.analyze(model, (2, 3, 33, 31))
    assert [r.facts.affine for r in fast.layers if r.kind == "batchnorm"] == [False, True]
    assert [r.facts.count_include_pad for r in fast.layers if r.kind == "pool"] == [False, None]
    assert fast.layers[3].facts.torch_bases == ("ReLU6", "Hardtanh", "Module")
