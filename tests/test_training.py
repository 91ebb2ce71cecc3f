"""The training step, analytically (``mode="train"``), against a real CPU backward and hand counts."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import mbcost
from mbcost.errors import SpecError


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
