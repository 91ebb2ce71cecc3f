"""The cost engine: per-layer MACs against hand-derived formulas, the zoo's frozen records, any module."""

import json
from pathlib import Path

import pytest
import torch
from module_counts import module_category, module_counts
from torch import nn

import mbcost
from mbcost.cost.formulas import FORMULAS, conv_cost, register_formula
from mbcost.errors import AnalysisError, SpecError
from mbcost.zoo.mobilenet_v1 import V1_BLOCKS

#: Every zoo record as the former pure-shape interpreter computed it from closed-form layer rules
#: (an implementation independent of the meta-device walker), frozen when it was removed.
ZOO_RECORDS = Path(__file__).parent / "data" / "zoo_records.json"


def by_name(cost):
    return {layer.name: layer for layer in cost.layers}


def test_v1_layers_match_the_paper_formulas():
    cost = mbcost.analyze("v1", 224)
    layers = by_name(cost)
    assert layers["features.0.0"].macs == 112 * 112 * 32 * 3 * 3 * 3  # stem: Df^2 * N * Dk^2 * M
    assert layers["features.1.dw.0"].macs == 112 * 112 * 32 * 3 * 3  # depthwise: Df^2 * M * Dk^2
    assert layers["features.1.pw.0"].macs == 112 * 112 * 32 * 64  # pointwise: Df^2 * M * N
    assert layers["classifier"].macs == 1024 * 1000
    # Whole network from Table 1 as data: sum of Dk^2*M*Df^2 + M*N*Df^2 over the separable rows.
    size, channels, total = 112, 32, 112 * 112 * 32 * 27
    for out_channels, stride in V1_BLOCKS:
        size //= stride
        total += 9 * channels * size * size + channels * out_channels * size * size
        channels = out_channels
    total += 1024 * 1000
    assert cost.macs == total == 568_740_352  # the paper's 569M Mult-Adds
    assert cost.categories["dwconv"].macs / cost.macs == pytest.approx(0.0306, abs=5e-4)  # Table 2: 3.06%
    assert cost.categories["pwconv"].macs / cost.macs == pytest.approx(0.9486, abs=5e-4)  # Table 2: 94.86%


def test_v2_and_vgg16_totals():
    v2 = mbcost.analyze("v2")
    assert v2.macs == 300_774_272  # torchvision reports 0.30 GFLOPS (MACs); the paper 300M
    vgg = mbcost.analyze("vgg16")
    layers = by_name(vgg)
    assert layers["features.0"].macs == 224 * 224 * 64 * 3 * 9
    assert layers["features.28"].macs == 14 * 14 * 512 * 512 * 9
    assert layers["classifier.0"].macs == 512 * 7 * 7 * 4096
    assert vgg.macs == 15_470_264_320  # torchvision: 15.47 GFLOPS
    assert vgg.flops == 2 * vgg.macs
    assert layers["features.0"].bias_adds == 224 * 224 * 64  # bias counted apart from MACs


def _reference_module(name):
    """The module whose tree the categories are derived from: torchvision's where it has the model."""
    if name == "v2":
        return pytest.importorskip("torchvision").models.mobilenet_v2()
    if name == "vgg16-bn":
        return pytest.importorskip("torchvision").models.vgg16_bn()
    return mbcost.build_model(name)


@pytest.mark.parametrize("name", ["v1", "v2", "vgg16-bn", "v1-conv"])
def test_categories_equal_the_module_tree_counted_with_hooks(name):
    # Per category, from the module tree: each module's own parameters (BatchNorm's affine under "other") and
    # forward-hook MACs (tests/module_counts.py), grouped by the module's type, groups and kernel.
    with torch.device("meta"):
        model = _reference_module(name)
    expected = {c: [0, 0] for c in ("conv", "dwconv", "pwconv", "linear", "other")}
    for path, (params, macs) in module_counts(model, (1, 3, 224, 224)).items():
        expected[module_category(model, path)][0] += params
        expected[module_category(model, path)][1] += macs
    cats = mbcost.analyze(name, 224).categories
    assert {c: [cats[c].params, cats[c].macs] for c in expected} == expected
    if name == "v1-conv":  # the paper's "Conv MobileNet": full 3x3 convolutions only
        assert expected["dwconv"] == expected["pwconv"] == [0, 0]


def _zoo_cases():
    return list(json.loads(ZOO_RECORDS.read_text()).items())


@pytest.mark.parametrize(("key", "frozen"), _zoo_cases(), ids=[k for k, _ in _zoo_cases()])
def test_zoo_records_equal_the_former_shape_interpreter(key, frozen):
    """Every field of every record (but the ATen op name, which varies by torch version) is unchanged."""
    spec, size, batch = key.split("|")
    h, w = (int(v) for v in size.split("x"))
    cost = mbcost.analyze(spec, (int(batch), 3, h, w))
    fields = frozen["fields"]
    skip = fields.index("op")
    now = json.loads(json.dumps([[d[f] for f in fields] for d in (layer.to_dict() for layer in cost.layers)]))
    assert [r[:skip] + r[skip + 1:] for r in now] == [r[:skip] + r[skip + 1:] for r in frozen["layers"]]
    assert (cost.params, cost.unattributed_params) == (frozen["params"], frozen["unattributed_params"])
    assert cost.uncounted == () and cost.execution == "meta"


class ToyConvs(nn.Module):
    """Every convolution variant, issued from a custom forward (so the meta tracer handles it)."""

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, bias=True)
        self.depthwise = nn.Conv2d(16, 32, 5, padding=4, dilation=2, groups=16)  # channel multiplier 2
        self.pointwise = nn.Conv2d(32, 8, 1, bias=False)
        self.valid = nn.Conv2d(8, 4, (3, 1), stride=(1, 2))
        self.fc = nn.Linear(4 * 5 * 3, 7)

    def forward(self, x):
        x = torch.relu(self.grouped(x))
        x = self.pointwise(self.depthwise(x))
        x = self.valid(x + 1)
        return self.fc(x.flatten(1))


def test_toy_convolutions_against_hand_derived_counts():
    model = ToyConvs()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cost = mbcost.analyze(model, (13, 11), batch=3, in_channels=8)
    layers = by_name(cost)
    # grouped: out 7x6, 16 channels, each output sums 8/4 * 3*3 terms
    assert layers["grouped"].output_shape == (3, 16, 7, 6)
    assert layers["grouped"].macs == 3 * 16 * 7 * 6 * 2 * 9
    assert layers["grouped"].category == "conv"
    # depthwise with dilation 2 and padding 4 keeps 7x6; 1 input channel per group, 5x5 kernel
    assert layers["depthwise"].output_shape == (3, 32, 7, 6)
    assert layers["depthwise"].macs == 3 * 32 * 7 * 6 * 1 * 25
    assert layers["depthwise"].category == "dwconv"
    assert layers["pointwise"].macs == 3 * 8 * 7 * 6 * 32 and layers["pointwise"].category == "pwconv"
    # (3,1) kernel, stride (1,2), no padding: 7x6 -> 5x3
    assert layers["valid"].output_shape == (3, 4, 5, 3)
    assert layers["valid"].macs == 3 * 4 * 5 * 3 * 8 * 3
    assert layers["fc"].macs == 3 * 60 * 7
    # functional ops in the custom forward are counted as elementwise work, attributed to the root
    assert layers["(root):relu"].other_ops == 3 * 16 * 7 * 6
    assert layers["(root):add"].other_ops == 3 * 8 * 7 * 6
    assert cost.params == sum(p.numel() for p in model.parameters())
    # the user's model is unchanged: same state, no hooks left, training flag kept
    assert model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not any(p.is_meta for p in model.parameters())


def test_ops_without_formula_are_reported_with_calls():
    class WithEmbedding(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            idx = torch.zeros(2, dtype=torch.long, device=x.device)
            return self.conv(x).sum() + self.emb(idx).sum() + self.emb(idx).sum()

    cost = mbcost.analyze(WithEmbedding(), 8, in_channels=3)
    unc = {(u.op, u.module): u.calls for u in cost.uncounted}
    assert unc[("embedding", "emb")] == 2
    assert cost.macs == 8 * 8 * 4 * 3


def test_huge_inputs_cost_no_memory_and_scale_exactly():
    small = mbcost.analyze("vgg16", 224)
    big = mbcost.analyze("vgg16", 2048, batch=64)  # 64 x 3 x 2048 x 2048: nothing is allocated
    conv_macs = sum(layer.macs for layer in small.layers if layer.kind == "conv")
    big_conv = sum(layer.macs for layer in big.layers if layer.kind == "conv")
    # conv MACs scale with batch * H * W exactly when every stage halves evenly (2048 = 64 * 32)
    assert big_conv * 224 * 224 == conv_macs * 64 * 2048 * 2048
    assert big.params == small.params


def test_formula_table_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_formula("conv")(conv_cost)
    assert {"conv", "matmul", "batchnorm", "activation", "pool", "global_pool", "elementwise"} <= set(FORMULAS)


def test_transposed_convolution_counts_scattered_inputs():
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2))
    cost = mbcost.analyze(model, 5, in_channels=4)
    # every input element (4 x 5 x 5) is scattered into 6 * 3 * 3 outputs
    assert cost.macs == 4 * 5 * 5 * 6 * 9


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(SpecError, match="too small for v1"):
        mbcost.analyze("v1", 16)
    with pytest.raises(SpecError, match="batch"):
        mbcost.analyze("v1", 224, batch=0)
    with pytest.raises(SpecError, match="dtype"):
        mbcost.analyze("v1", 224, dtype="int3")
    with pytest.raises(AnalysisError, match="forward pass failed"):
        mbcost.analyze(nn.Sequential(nn.Conv2d(3, 4, 7)), 4)  # kernel larger than the input


def test_dtype_changes_bytes_not_counts():
    f32 = mbcost.analyze("v2", dtype="float32")
    f16 = mbcost.analyze("v2", dtype="float16")
    assert f16.macs == f32.macs and f16.params == f32.params
    assert f16.weight_bytes * 2 == f32.weight_bytes
    assert f16.activation_bytes * 2 == f32.activation_bytes


def test_to_frame_has_one_row_per_layer():
    cost = mbcost.analyze("v1")
    frame = cost.to_frame()
    assert len(frame) == len(cost.layers)
    assert int(frame["macs"].sum()) == cost.macs
    assert {"name", "category", "params", "macs", "arithmetic_intensity"} <= set(frame.columns)
