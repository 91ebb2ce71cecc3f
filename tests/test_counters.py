"""Counter adapters run the real libraries; every preset equals its library's total exactly."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import mbcost
from mbcost.cost.conventions import apply_convention
from mbcost.counters.base import COUNTERS, CounterUnavailable, measure, measure_many, parse_counters
from mbcost.errors import SpecError
from mbcost.zoo import build_model


def available(counter: str) -> bool:
    module = {"fvcore": "fvcore", "thop": "thop", "torch": "torch.utils.flop_counter", "ptflops": "ptflops",
              "ptflops-aten": "ptflops"}[counter]
    try:
        __import__(module)
    except ImportError:
        return False
    return True


INSTALLED = [c for c in COUNTERS if available(c)]

# 5 models; 2 widths where the model has a width multiplier (VGG has none); 2 resolutions each.
CASES = [(f"{m}@{w}" if w != 1.0 else m) for m in ("v1", "v1-conv", "v2") for w in (1.0, 0.5)] + ["vgg16", "vgg16-bn"]
SIZES = (64, 96)


@pytest.fixture(scope="module")
def built():
    """Real CPU modules, built once per spec for the whole file (VGG16 takes a second to initialise)."""
    cache: dict[str, nn.Module] = {}

    def get(spec: str) -> nn.Module:
        if spec not in cache:
            torch.manual_seed(0)
            cache[spec] = build_model(spec).eval()
        return cache[spec]

    return get


@pytest.mark.parametrize("spec", CASES)
def test_each_preset_equals_its_counter(spec, built):
    if len(INSTALLED) < len(COUNTERS):
        pytest.importorskip("fvcore")
        pytest.importorskip("thop")
        pytest.importorskip("ptflops")
    module = built(spec)
    for size in SIZES:
        cost = mbcost.analyze(spec, size)
        results = measure_many(list(COUNTERS), module, size, name=spec, copy=False)
        for r in results:
            assert r.total == apply_convention(cost, r.counter).total, (spec, size, r.counter)
            assert isinstance(r.total, int)
        torch_result = results[COUNTERS.index("torch")]
        assert torch_result.total == 2 * cost.macs  # torch counts exactly the paper's MACs, twice


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.integers(1, 4), cin_per_group=st.integers(1, 3), cout_per_group=st.integers(1, 3),
    depthwise=st.booleans(), kh=st.integers(1, 5), kw=st.integers(1, 5), stride=st.integers(1, 3),
    padding=st.integers(0, 2), dilation=st.integers(1, 2), bias=st.booleans(), h=st.integers(3, 17),
    w=st.integers(3, 17), batch=st.integers(1, 2),
)
def test_conv_macs_equal_flop_counter_mode_half(groups, cin_per_group, cout_per_group, depthwise, kh, kw, stride,
                                                 padding, dilation, bias, h, w, batch):
    if depthwise:  # groups == in_channels, with a channel multiplier
        cin, cout, groups = groups, groups * cout_per_group, groups
    else:
        cin, cout = groups * cin_per_group, groups * cout_per_group
    assume(h + 2 * padding - dilation * (kh - 1) - 1 >= 0 and w + 2 * padding - dilation * (kw - 1) - 1 >= 0)
    conv = nn.Conv2d(cin, cout, (kh, kw), stride=stride, padding=padding, dilation=dilation, groups=groups,
                     bias=bias)
    cost = mbcost.analyze(conv, (h, w), batch, in_channels=cin)
    assert cost.macs * 2 == measure("torch", conv, (h, w), batch, in_channels=cin).total


@settings(max_examples=25, deadline=None)
@given(fin=st.integers(1, 33), fout=st.integers(1, 33), rows=st.integers(1, 5), chans=st.integers(1, 3),
       bias=st.booleans())
def test_linear_macs_equal_flop_counter_mode_half(fin, fout, rows, chans, bias):
    linear = nn.Linear(fin, fout, bias=bias)  # applied to the last axis of a (1, chans, rows, fin) input
    cost = mbcost.analyze(linear, (rows, fin), in_channels=chans)
    assert cost.macs == chans * rows * fin * fout
    assert cost.macs * 2 == measure("torch", linear, (rows, fin), in_channels=chans).total


class Variants(nn.Module):
    """Formula variants the zoo lacks: BatchNorm without affine, LayerNorm, an average pool that excludes
    padding, an adaptive pool whose windows overlap (2 -> 3), PReLU, SiLU (no thop rule)."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(4, affine=False)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.pool_pad = nn.AvgPool2d(2, stride=1, padding=1, ceil_mode=True)
        self.adapt = nn.AdaptiveAvgPool2d(3)
        self.ln = nn.LayerNorm(3)
        self.prelu = nn.PReLU()
        self.silu = nn.SiLU()

    def forward(self, x):
        x = self.pool_pad(self.pool(self.bn(x)))
        return self.silu(self.prelu(self.ln(self.adapt(x))))


def test_presets_equal_counters_on_formula_variants():
    pytest.importorskip("fvcore")
    pytest.importorskip("thop")
    pytest.importorskip("ptflops")
    model = Variants()
    for size in (5, 8):
        cost = mbcost.analyze(model, size, in_channels=4)
        for r in measure_many(list(COUNTERS), model, size, in_channels=4):
            assert r.total == apply_convention(cost, r.counter).total, (size, r.counter)


class Resampling(nn.Module):
    """Interpolation of every kind the libraries count differently, and a BatchNorm without running statistics
    (it normalises with the batch's own, in eval too: fvcore charges it as in training)."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3, track_running_stats=False)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.near = nn.UpsamplingNearest2d(scale_factor=2)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        y = self.conv(self.up(self.bn(x)))
        w = F.interpolate(x, size=(5, 7), mode="bicubic", align_corners=False)
        g = F.grid_sample(x, torch.zeros(x.shape[0], 6, 6, 2, device=x.device), align_corners=False)
        t = F.interpolate(x[:, :, 0], scale_factor=3, mode="linear")
        return y, self.near(x).sum() + w.sum() + g.sum() + t.sum()


def test_presets_equal_counters_on_resampling():
    """Each library's interpolation rules (fvcore: bilinear 4 and nearest 1 per output element, grid_sampler 4;
    thop: by mode; ptflops: Upsample's hook and F.interpolate) and fvcore's BatchNorm with batch statistics."""
    pytest.importorskip("fvcore")
    pytest.importorskip("thop")
    pytest.importorskip("ptflops")
    model, x = Resampling(), [2, 3, 4, 4]
    cost = mbcost.analyze(model, x)
    assert cost.uncounted == ()
    for r in measure_many(list(COUNTERS), model, x):
        assert r.total == apply_convention(cost, r.counter).total, r.counter
    # fvcore by hand: conv 2*3*8*8 outputs x 3*3*3, BatchNorm 5 x 96 elements (batch statistics, affine),
    # bilinear 4 and nearest 1 x 384 output elements, grid_sampler 4 x 2*3*6*6; bicubic and linear: no handle
    assert apply_convention(cost, "fvcore").total == 10368 + 480 + 4 * 384 + 384 + 4 * 216


class Means(nn.Module):
    """The ways a global average reaches the dispatcher as ``mean.dim``: a squeeze-excite's ``x.mean((2, 3),
    keepdim=True)`` (timm), an ``nn.AdaptiveAvgPool2d(1)``, a functional ``F.adaptive_avg_pool2d(x, 1)`` in a
    module's own forward (torchvision's mobilenet_v2), on 4-D and 3-D input, and a mean without keepdim."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.conv(x) * x.mean((2, 3), keepdim=True)
        y = F.adaptive_avg_pool2d(x, 1) + self.pool(x) + F.adaptive_avg_pool2d(x[0], (1, 1))
        return y + x.mean([-1, -2])[..., None, None]


def test_presets_equal_counters_on_means():
    """fvcore (torch.jit) sees ``aten::adaptive_avg_pool2d`` (1 per input element) for the pools and
    ``aten::mean`` (no handle) for the means, though all are ``mean.dim`` at the dispatcher. (At batch 1 the
    3-D pool's input is as large as the squeeze-excite's: a miss on one and a wrong charge on the other cancel.)"""
    pytest.importorskip("fvcore")
    pytest.importorskip("thop")
    pytest.importorskip("ptflops")
    model = Means()
    for x in ([1, 4, 5, 5], [2, 4, 3, 6]):
        cost = mbcost.analyze(model, x)
        for r in measure_many(list(COUNTERS), model, x):
            assert r.total == apply_convention(cost, r.counter).total, (x, r.counter)


class Linear(nn.Linear):
    """A subclass of ``nn.Linear`` that shares its name (timm's classifier is ``timm.layers.Linear``)."""


def test_presets_tell_a_subclass_from_the_torch_class_of_the_same_name():
    """ptflops hooks exact ``torch.nn`` types, thop follows the MRO: a ``Linear`` that is not torch's own is
    counted by thop and skipped by ptflops' hooks (its ``F.linear`` is not replaced either)."""
    pytest.importorskip("thop")
    pytest.importorskip("ptflops")
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), Linear(8 * 4 * 4, 10), nn.Linear(10, 5))
    cost = mbcost.analyze(model, [1, 3, 6, 6])
    for r in measure_many(["thop", "ptflops"], model, [1, 3, 6, 6]):
        assert r.total == apply_convention(cost, r.counter).total, r.counter


class Transposed(nn.Module):
    """A Linear on a transposed input (timm's EdgeNeXt: ``proj`` after a permute)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv1d(3, 6, 1), nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.conv(x).transpose(1, 2))


def test_presets_equal_counters_on_a_linear_traced_apart_from_its_bias():
    """A Linear on a non-contiguous input is traced as ``mm`` and a separate bias ``add``: ptflops' Linear hook
    counts the bias all the same."""
    pytest.importorskip("ptflops")
    model = Transposed()
    for x in ([1, 3, 5], [2, 3, 7]):
        cost = mbcost.analyze(model, x)
        assert [layer.op for layer in cost.layers if layer.module == "fc"] == ["mm", "add"]
        for r in measure_many(INSTALLED, model, x):
            assert r.total == apply_convention(cost, r.counter).total, (x, r.counter)


class DepthwiseMlp(nn.Module):
    """timm's PVT-v2 MLP: tokens viewed as an image for a depthwise conv, then tokens again for ``fc2``."""

    def __init__(self):
        super().__init__()
        self.fc1, self.conv, self.fc2 = nn.Linear(8, 8), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Linear(8, 4)

    def forward(self, x):
        b, n, c = x.shape
        x = self.conv(self.fc1(x).transpose(1, 2).view(b, c, 3, n // 3))
        return self.fc2(x.flatten(2).transpose(1, 2))


def test_presets_equal_counters_on_a_conv_over_transposed_tokens():
    """At batch 1 the transposed tokens are channels-last to ``is_contiguous`` but not to ATen, which gives the
    conv a contiguous output: ``fc2`` reads transposed tokens and runs as ``mm`` and an ``add`` (ptflops' aten
    backend: no bias); at batch 2 its output is channels-last and ``fc2`` one ``addmm``, as the meta walk has it."""
    pytest.importorskip("ptflops")
    model = DepthwiseMlp()
    for x in ([1, 6, 8], [2, 6, 8]):
        cost = mbcost.analyze(model, x)
        fc2 = [r.op for r in cost.layers if r.module == "fc2"]
        assert fc2 == [r.op for r in mbcost.analyze(model, x, execute="real").layers if r.module == "fc2"], x
        for r in measure_many(INSTALLED, model, x):
            assert r.total == apply_convention(cost, r.counter).total, (x, r.counter)


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.gru, self.rnn, self.fc = nn.GRU(32, 8, batch_first=True), nn.RNN(8, 6), nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.rnn(self.gru(self.lstm(x)[0])[0])[0])


@pytest.mark.parametrize("onednn", [True, False])
def test_presets_equal_counters_on_recurrent_layers(onednn):
    """fvcore traces each recurrent layer as one op (``aten::lstm``, ``gru``, ``rnn_tanh``) it has no handle for;
    on the CPU ``nn.LSTM`` runs as oneDNN's ``mkldnn_rnn_layer`` (unless oneDNN is off), which FlopCounterMode
    and ptflops' aten backend do not count, while GRU and RNN run as their products. (thop's and ptflops' own
    recurrent rules are not reproduced.)"""
    pytest.importorskip("fvcore")
    pytest.importorskip("ptflops")
    model, x = Recurrent(), [1, 5, 8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # setting the flags warns that no Intel GPU can use TF32
        with torch.backends.mkldnn.flags(enabled=onednn):
            cost = mbcost.analyze(model, x)
            results = measure_many(["fvcore", "torch", "ptflops-aten"], model, x)
            for r in results:
                assert r.total == apply_convention(cost, r.counter).total, r.counter


class TimmAttention(nn.Module):
    """timm's ViT attention, fused (SDPA) and not (``@`` and ``Tensor.softmax``)."""

    def __init__(self):
        super().__init__()
        from timm.models.vision_transformer import Attention

        self.fused, self.manual = Attention(12, num_heads=3, qkv_bias=True), Attention(12, num_heads=2)
        self.fused.fused_attn, self.manual.fused_attn = True, False

    def forward(self, x):
        return self.manual(self.fused(x))


def test_presets_equal_counters_on_timm_attention():
    """ptflops hooks timm's ViT ``Attention`` (the query scaling, both products, the softmax) and, as for every
    module it hooks, adds up its own count only: the hooks of its ``qkv`` and ``proj`` Linear are lost."""
    pytest.importorskip("timm")
    pytest.importorskip("ptflops")
    pair = TimmAttention().eval()
    for model, x in ((pair, [1, 5, 12]), (pair, [2, 7, 12]), (pair.fused, [2, 7, 12])):  # the last: as the root
        cost = mbcost.analyze(model, x)
        for r in measure_many(INSTALLED, model, x):
            assert r.total == apply_convention(cost, r.counter).total, (x, r.counter)


def test_user_model_is_never_changed():
    pytest.importorskip("thop")
    model = build_model("v2@0.35")
    model.train()
    model.features[1].eval()  # a mixed state the counters must restore exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    for counter in INSTALLED:
        measure(counter, model, 64)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats untouched too
    assert [m.training for m in model.modules()] == flags
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == hooks
    assert not any("total_ops" in vars(m) or "total_ops" in m._buffers for m in model.modules())


def test_counters_are_silent(capsys, caplog):
    pytest.importorskip("fvcore")
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        measure_many(INSTALLED, "v2@0.35", 64)  # fvcore would warn about hardtanh_ and add
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert not caplog.records and not caught
    assert logging.root.manager.disable == logging.NOTSET  # logging restored


def test_result_fields():
    pytest.importorskip("fvcore")
    fv = measure("fvcore", "v2@0.5", 64)
    assert fv.counter == "fvcore" and fv.model == "v2@0.5" and fv.input == (64, 64) and fv.batch == 1
    assert "MACs" in fv.unit and fv.version and fv.seconds > 0
    assert set(fv.unsupported) == {"aten::hardtanh_", "aten::add"}
    assert fv.by_op["conv"] + fv.by_op["linear"] == mbcost.analyze("v2@0.5", 64).macs
    assert fv.to_dict()["input"] == [64, 64]


def test_batch_scales_every_counter():
    """Every counter's total is 3x at batch 3, except ptflops' pytorch backend: it reports its module hooks
    per image (divided by the batch) and its replaced functions in full; its preset says so."""
    one = {r.counter: r.total for r in measure_many(INSTALLED, "v1@0.25", 64)}
    three = {r.counter: r.total for r in measure_many(INSTALLED, "v1@0.25", 64, 3)}
    per_image = {"ptflops"}
    assert {k: v for k, v in three.items() if k not in per_image} == {
        k: 3 * v for k, v in one.items() if k not in per_image}
    if "ptflops" in three:
        cost = mbcost.analyze("v1@0.25", 64, 3)
        assert three["ptflops"] == apply_convention(cost, "ptflops").total
        assert one["ptflops"] < three["ptflops"] < 3 * one["ptflops"]  # only the functional part grew


def test_parse_counters():
    assert parse_counters("all") == ["fvcore", "thop", "torch", "ptflops", "ptflops-aten"]
    assert parse_counters(" torch , fvcore,torch,ptflops-aten") == ["torch", "fvcore", "ptflops-aten"]
    with pytest.raises(SpecError, match="unknown counter 'ptflops-pytorch'"):
        parse_counters("ptflops-pytorch")
    with pytest.raises(SpecError):
        parse_counters(" , ")


def test_missing_library_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fvcore", None)  # makes "import fvcore" fail as if not installed
    monkeypatch.setitem(sys.modules, "thop", None)
    monkeypatch.setitem(sys.modules, "ptflops", None)
    for counter in ("fvcore", "thop", "ptflops", "ptflops-aten"):
        library = counter.split("-")[0]
        with pytest.raises(CounterUnavailable, match=rf"{library} is not installed; pip install 'mbcost\[counters\]'"):
            measure(counter, "v1@0.25", 64)
    assert measure("torch", "v1@0.25", 64).total > 0  # torch's counter is always there


def test_input_too_small_is_a_spec_error():
    with pytest.raises(SpecError, match="too small"):
        measure("torch", "v2", 16)
