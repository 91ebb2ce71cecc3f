"""Convention presets: pure formulas over the engine's records, no counter library needed."""

from __future__ import annotations

import pytest
from torch import nn

import mbcost
from mbcost.cost.conventions import CONVENTIONS, apply_convention, convention_view, get_convention
from mbcost.errors import SpecError

# Each library's own total at 224x224, batch 1, measured with fvcore 0.1.5, ultralytics-thop 2.2.3
# and torch's FlopCounterMode (see test_counters.py, which checks the presets against the libraries).
LIBRARY_TOTALS_224 = {
    "v2": {"fvcore": 314_193_216, "thop": 327_550_720, "torch": 601_548_544},
    "v1": {"fvcore": 578_875_904, "thop": 588_962_304, "torch": 1_137_480_704},
    "vgg16-bn": {"fvcore": 15_497_384_448, "thop": 15_524_504_576, "torch": 30_940_528_640},
}


@pytest.mark.parametrize("model", sorted(LIBRARY_TOTALS_224))
def test_presets_reproduce_library_totals_at_224(model):
    cost = mbcost.analyze(model, 224)
    assert apply_convention(cost, "paper").total == cost.macs
    for counter, total in LIBRARY_TOTALS_224[model].items():
        assert apply_convention(cost, counter).total == total, counter


def test_v2_breakdown_by_kind():
    cost = mbcost.analyze("v2", 224)
    bn_elems = sum(layer.other_ops // 2 for layer in cost.layers if layer.kind == "batchnorm")
    pooled = 1280 * 7 * 7
    fv = apply_convention(cost, "fvcore")
    assert fv.by_kind == {"conv": 299_494_272, "matmul": 1_280 * 1_000, "batchnorm": 2 * bn_elems,
                          "global_pool": pooled}
    th = apply_convention(cost, "thop")
    assert th.by_kind["batchnorm"] == 4 * bn_elems  # thop: 2/elem, doubled for the affine scale
    assert th.by_kind["global_pool"] == pooled + 1280  # one add per input, one divide per output
    to = apply_convention(cost, "torch")
    assert to.total == 2 * cost.macs and to.flops == to.total and to.macs == cost.macs


def test_skipped_ops_are_data_with_would_be_cost():
    cost = mbcost.analyze("v2", 224)
    skipped = {(s.kind, s.module_type): s for s in apply_convention(cost, "fvcore").skipped}
    relu6 = skipped[("activation", "ReLU6")]
    assert relu6.calls == 35  # every ReLU6 of v2
    assert relu6.would_be == sum(layer.other_ops for layer in cost.layers if layer.module_type == "ReLU6")
    adds = skipped[("elementwise", "InvertedResidual")]
    assert adds.calls == 10 and "aten::add" in adds.reason
    bias = skipped[("bias_add", "conv/linear bias")]
    assert bias.would_be == 1000 and bias.calls == 1  # the classifier's bias
    # torch skips BatchNorm too; its would-be cost is the engine's 2 per element
    torch_skipped = {s.kind: s for s in apply_convention(cost, "torch").skipped}
    assert torch_skipped["batchnorm"].would_be == sum(lc.other_ops for lc in cost.layers if lc.kind == "batchnorm")


def test_convention_view_sets_macs_and_flops():
    cost = mbcost.analyze("v2", 224)
    assert convention_view(cost, "paper") is cost
    assert convention_view(cost, "fvcore").macs == 314_193_216
    assert convention_view(cost, "thop").macs == 327_550_720
    assert convention_view(cost, "torch").flops == 601_548_544
    view = convention_view(cost, "fvcore")
    assert view.params == cost.params and view.elementwise_ops == cost.elementwise_ops
    assert sum(c.macs for c in view.categories.values()) == view.macs


def test_unknown_convention_is_a_spec_error():
    with pytest.raises(SpecError, match="paper, fvcore, thop, torch"):
        get_convention("ptflops")
    assert CONVENTIONS == ("paper", "fvcore", "thop", "torch")


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
    assert (fv["bn"], fv["bn_affine"]) == (64 * 1, 64 * 2)
    assert (th["bn"], th["bn_affine"]) == (64 * 2, 64 * 4)
    # thop avg pool, padding not counted: windows per axis over 4 with k3 s2 p1: [0,2) and [1,4) -> 2 + 3 = 5;
    # 5 * 5 per channel, 4 channels, plus one divide per output (4*2*2)
    assert th["pool"] == 4 * 5 * 5 + 16
    # adaptive 2 -> 3 along each axis: windows [0,1) [0,2) [1,2) -> 1 + 2 + 1 = 4; 4 * 4 per channel + outputs
    assert th["adapt"] == 4 * 4 * 4 + 4 * 3 * 3
    assert fv["adapt"] == 4 * 2 * 2  # fvcore: one per input element
    assert fv["pool"] == 0  # fvcore has no handle for avg_pool2d


def test_walkers_agree_on_new_fields():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, affine=False), nn.BatchNorm2d(8), nn.ReLU6(),
                          nn.AvgPool2d(3, 2, 1, count_include_pad=False), nn.MaxPool2d(2, ceil_mode=True)).eval()
    fast = mbcost.analyze(model, (2, 3, 33, 31))
    assert [r.affine for r in fast.layers if r.kind == "batchnorm"] == [False, True]
    assert [r.count_include_pad for r in fast.layers if r.kind == "pool"] == [False, None]
    assert fast.layers[3].torch_bases == ("ReLU6", "Hardtanh", "Module")
