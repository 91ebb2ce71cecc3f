"""The memory estimates against the allocator: an inference forward and a training step on the CPU.

The measurement is independent of the engine: every allocation and free PyTorch's profiler records
(``mbcost.bench.memory``), summed in time order. Allocations are deterministic, so these are
checks of bytes, not of time. Targets: the activation peak within 15% for inference, the training
memory (gradients, optimizer state and activations) within 20%.
"""

from __future__ import annotations

import pytest
import torch

import mbcost
from mbcost.bench.memory import allocations_during, peak_of


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the engine's CPU scratch model assumes PyTorch's one-thread paths
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("spec", ["v1", "v2"])
def test_inference_activation_peak_within_15_percent(spec, one_thread):
    from mbcost.bench.memory import measure_peak_memory
    from mbcost.bench.model_bench import ForwardArgs

    model = mbcost.build_model(spec).eval()
    measured = measure_peak_memory(model, ForwardArgs((torch.randn(1, 3, 224, 224),), {}), "cpu")
    estimated = mbcost.analyze(spec, 224).peak_activation_bytes
    assert abs(estimated / measured - 1) <= 0.15, (estimated, measured)


def _training_step_peak(model: torch.nn.Module, x: torch.Tensor) -> int:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    model(x).sum().backward()  # warm-up: the allocator and oneDNN settle
    opt.step()
    opt.zero_grad(set_to_none=True)  # gradients freed beforehand: the step allocates them
    def step() -> None:
        loss = model(x.clone()).sum()
        loss.backward()
        opt.step()

    return peak_of(allocations_during(step))


@pytest.mark.parametrize("spec", ["v1", "v2"])
def test_training_step_memory_within_20_percent(spec, one_thread):
    measured = _training_step_peak(mbcost.build_model(spec), torch.randn(2, 3, 224, 224))
    cost = mbcost.analyze(spec, 224, batch=2, mode="train", optimizer="sgd")
    estimated = cost.train_peak_memory_bytes - cost.weight_bytes - cost.buffer_bytes  # weights existed before
    assert abs(estimated / measured - 1) <= 0.20, (estimated, measured)


@pytest.mark.parametrize("source,name,batch", [("timm", "deit_tiny_patch16_224", 2),
                                               ("torchvision", "resnet18", 4),
                                               ("torchvision", "mobilenet_v3_large", 4)])
def test_training_step_memory_within_10_percent_on_library_models(source, name, batch, one_thread):
    """A training step (SGD) of torchvision's and timm's models, attention included: gradients, what autograd
    saves (DeiT's fused attention keeps q, k, v, its output and logsumexp, not the L x L weights) and the
    parameters' gradients as the backward makes them, against the allocator's measured peak."""
    lib = pytest.importorskip(source)
    torch.manual_seed(0)
    model = lib.create_model(name, pretrained=False) if source == "timm" else lib.models.get_model(name, weights=None)
    measured = _training_step_peak(model, torch.randn(batch, 3, 224, 224))
    cost = mbcost.analyze(model, inputs=(batch, 3, 224, 224), mode="train", optimizer="sgd")
    estimated = cost.train_peak_memory_bytes - cost.weight_bytes - cost.buffer_bytes
    assert abs(estimated / measured - 1) <= 0.10, (estimated, measured)
