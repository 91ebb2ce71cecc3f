"""The training step, analytically (``mode="train"``), against a real CPU backward and hand counts."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import mbcost
from mbcost.errors import SpecError
from mbcost.inputs import InputSpec


def torch_backward_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Conv + matmul MACs of a real CPU backward (train mode), as FlopCounterMode counts them."""
    m = copy.deepcopy(model).train()
    loss = m(torch.randn(shape)).sum()
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    return counter.get_total_flops() // 2


def test_backward_macs_equal_flop_counter_mode_on_vgg16_and_resnet50():
    torchvision = pytest.importorskip("torchvision")
    for model in (mbcost.build_model("vgg16"), torchvision.models.resnet50()):
        cost = mbcost.analyze(model, 224, mode="train")
        assert cost.backward_macs == torch_backward_macs(model, (1, 3, 224, 224))
        # every conv and linear has a weight gradient; all but the first also an input gradient
        first = cost.layers[0]
        assert cost.backward_macs == 2 * cost.macs - first.macs


@pytest.mark.parametrize("spec", ["v1", "v2"])
def test_depthwise_backward_differs_from_flop_counter_mode_exactly_by_its_ignored_groups(spec):
    """FlopCounterMode counts a grouped convolution's weight gradient as if groups were 1 (its
    ``conv_backward_flop`` passes no groups): ``groups`` times the true count. Everything else agrees."""
    cost = mbcost.analyze(spec, 224, mode="train")
    overcount = sum((layer.groups - 1) * layer.macs for layer in cost.layers
                    if layer.kind == "conv" and (layer.groups or 1) > 1)
    assert overcount > 0
    assert cost.backward_macs + overcount == torch_backward_macs(mbcost.build_model(spec), (1, 3, 224, 224))


def test_gradient_products_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    cost = mbcost.analyze(model, (2, 3, 6, 6), mode="train")
    first, dw, fc = (layer for layer in cost.layers if layer.macs)
    assert first.macs == 2 * 8 * 6 * 6 * 27 and first.backward_macs == first.macs  # data input: weight grad only
    # depthwise: every weight element sums N x H x W products for its gradient, every input element
    # K x K products: each equal to the forward MACs
    assert dw.macs == 2 * 8 * 6 * 6 * 9 and dw.backward_macs == 2 * dw.macs
    assert fc.backward_macs == 2 * fc.macs == 2 * 2 * 288 * 4
    # FlopCounterMode's grouped weight gradient ignores groups: 8 x the depthwise count instead of 1 x
    assert cost.backward_macs + (8 - 1) * dw.macs == torch_backward_macs(model, (2, 3, 6, 6))


def test_frozen_weights_have_no_weight_gradient():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
    model[1].weight.requires_grad_(False)
    model[1].bias.requires_grad_(False)
    cost = mbcost.analyze(model, (1, 3, 10, 10), mode="train")
    a, b = cost.layers
    assert a.backward_macs == a.macs  # weight gradient only (its input is data)
    assert b.backward_macs == b.macs  # input gradient only (its weight is frozen)
    assert cost.trainable_params == 3 * 8 * 9 + 8
    assert model[1].weight.requires_grad is False and model.training  # the caller's model is unchanged


@pytest.mark.parametrize(("name", "ops", "state"), [
    ("sgd", 2, 0),  # p -= lr g: a multiply, a subtract
    ("momentum", 4, 1),  # b = m b + g (2); p -= lr b (2)
    ("adam", 12, 2),  # m = b1 m + (1 - b1) g (3); v = b2 v + (1 - b2) g^2 (4); p -= lr m / (sqrt(v) + eps) (5)
    ("adamw", 14, 2),  # Adam's 12 + p -= lr wd p (2)
])
def test_optimizer_ops_and_state(name, ops, state):
    cost = mbcost.analyze("v2", 224, mode="train", optimizer=name)
    assert cost.optimizer_ops == ops * 3_504_872  # torchvision's published parameter count of mobilenet_v2
    # the state a real torch.optim optimizer keeps after one step (per-tensor scalar step counters aside)
    model = mbcost.build_model("v2@0.35")
    torch_opt = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1), "momentum": lambda p: torch.optim.SGD(p, 0.1, 0.9),
                 "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name](model.parameters())
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    torch_opt.step()
    kept = sum(t.numel() * t.element_size() for st in torch_opt.state.values() for t in st.values()
               if isinstance(t, torch.Tensor) and t.dim() > 0)
    assert mbcost.analyze("v2@0.35", 32, batch=2, mode="train", optimizer=name).optimizer_state_bytes == kept
    doc = cost.to_dict()
    assert {"forward_macs", "backward_macs", "optimizer_ops", "train_peak_memory_bytes",
            "train_peak_activation_bytes"} <= set(doc)


def test_training_keeps_more_activations_than_inference():
    train = mbcost.analyze("v2", 224, batch=8, mode="train")
    infer = mbcost.analyze("v2", 224, batch=8)
    assert train.macs == infer.macs and "backward_macs" not in infer.to_dict()
    assert train.train_peak_activation_bytes > 4 * infer.peak_activation_bytes


def test_bad_mode_and_optimizer():
    with pytest.raises(SpecError, match="unknown mode"):
        mbcost.analyze("v2", 224, mode="training")
    with pytest.raises(SpecError, match="unknown optimizer"):
        mbcost.analyze("v2", 224, mode="train", optimizer="lion")


def test_an_input_that_requires_grad_gets_its_gradient():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    data = mbcost.analyze(model, torch.randn(2, 3, 6, 6), mode="train")
    leaf = torch.randn(2, 3, 6, 6, requires_grad=True)
    cost = mbcost.analyze(model, leaf, mode="train")
    conv = cost.layers[0]
    assert conv.macs == 2 * 8 * 6 * 6 * 27
    # data: the weight gradient only; an input that requires grad: its gradient too (a transposed
    # convolution of the same size: 2 x 8 x 6 x 6 x 27 more MACs)
    assert data.layers[0].backward_macs == conv.macs and conv.backward_macs == 2 * conv.macs
    assert cost.backward_macs == data.backward_macs + conv.macs
    assert cost.backward_macs == torch_backward_macs_of(model, leaf)
    assert cost.inputs[0].requires_grad and cost.to_dict()["inputs"][0]["requires_grad"] is True
    # and the step keeps that gradient: at least the input's bytes more at its worst point
    assert cost.train_peak_activation_bytes >= data.train_peak_activation_bytes
    assert mbcost.analyze(model, leaf).macs == data.macs  # inference: no backward, nothing changes
    assert not leaf.grad_fn and leaf.grad is None  # the caller's tensor is read, never used
    # the same asked for without a tensor; an integer input cannot need a gradient
    spec = InputSpec((2, 3, 6, 6), requires_grad=True)
    assert mbcost.analyze(model, spec, mode="train").backward_macs == cost.backward_macs
    with pytest.raises(SpecError, match="cannot require a gradient"):
        InputSpec((1, 8), "int64", requires_grad=True)


def torch_backward_macs_of(model: nn.Module, x: torch.Tensor) -> int:
    """Conv + matmul MACs of a real CPU backward through ``x`` as given (its ``requires_grad`` kept)."""
    m = copy.deepcopy(model).train()
    x = x.detach().clone().requires_grad_(x.requires_grad)
    loss = m(x).sum()
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    return counter.get_total_flops() // 2


def test_pytorch_flop_counter_test_module_case():
    """PyTorch's ``test/test_flop_counter.py::test_module``: torchvision's resnet18 (train mode), an
    input 1x3x224x224 with ``requires_grad=True``, forward and ``.sum().backward()`` under
    FlopCounterMode: 10884440064 FLOPs in all, and for ``ResNet.layer1`` 924844032 convolution FLOPs
    forward and 1849688064 backward (its literals). FlopCounterMode counts 2 FLOPs per MAC of
    convolutions and matrix products, the first convolution's input gradient included."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    resnet18 = torchvision.models.resnet18()
    a = torch.randn(1, 3, 224, 224, requires_grad=True)
    for execute in ("meta", "real"):
        cost = mbcost.analyze(resnet18, a, mode="train", execute=execute)
        assert 2 * (cost.macs + cost.backward_macs) == 10884440064
        layer1 = [layer for layer in cost.layers if layer.name.startswith("layer1") and layer.kind == "conv"]
        assert 2 * sum(layer.macs for layer in layer1) == 924844032
        assert 2 * sum(layer.backward_macs for layer in layer1) == 1849688064
    # and live, on the same case
    mode = FlopCounterMode(display=False)
    with mode:
        resnet18(a).sum().backward()
    assert mode.get_total_flops() == 2 * (cost.macs + cost.backward_macs)
    layer1_counts = mode.get_flop_counts()["ResNet.layer1"]
    assert layer1_counts[torch.ops.aten.convolution] == 2 * sum(layer.macs for layer in layer1)
    assert layer1_counts[torch.ops.aten.convolution_backward] == 2 * sum(layer.backward_macs for layer in layer1)
    # the first convolution's input gradient is what data alone would not have: 2 x 64 x 112 x 112 x 3 x 49 FLOPs
    data = mbcost.analyze(resnet18, (1, 3, 224, 224), mode="train")
    assert mode.get_total_flops() - 2 * (data.macs + data.backward_macs) == 2 * 64 * 112 * 112 * 3 * 49
