"""Peak activation memory from tensor lifetimes, against counts derived by hand."""

from __future__ import annotations

import torch
from torch import nn

import mbcost

F32 = 4


class Residual(nn.Module):
    """x -> conv a -> ReLU (in place) -> conv b -> x + b -> flatten (a view)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(8, 32, 1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.b = nn.Conv2d(32, 8, 1, bias=False)

    def forward(self, x):
        return (x + self.b(self.act(self.a(x)))).flatten(1)


def test_a_residual_input_stays_alive_until_its_last_use():
    cost = mbcost.analyze(Residual(), (2, 8, 10, 10))
    x = 2 * 8 * 10 * 10 * F32  # the input, read again by the add
    a = 2 * 32 * 10 * 10 * F32  # conv a's output; the in-place ReLU writes into it
    b = 2 * 8 * 10 * 10 * F32
    # at conv b: x (kept for the add) + a (its input) + b (its output); larger than any op's in + out
    assert cost.peak_activation_bytes == x + a + b
    assert cost.peak_op == "b"
    # the largest-op figure adds the in-place ReLU's input and output, one storage counted twice
    assert cost.largest_op_bytes == 2 * a
    weights = (32 * 8 + 8 * 32) * F32
    assert cost.peak_memory_bytes == weights + x + a + b


def test_zoo_peaks_at_the_widest_full_resolution_tensors():
    image = 3 * 224 * 224 * F32  # the caller holds the input through the call
    v1 = mbcost.analyze("v1", 224)
    # first pointwise conv's BatchNorm: its input and output (112 x 112 x 64 each), block 1's argument
    # (the stem's 32-channel output, held through the block) and the pointwise Sequential's (the
    # depthwise output, held through it), and the image
    held = 2 * 112 * 112 * 32 * F32
    assert v1.peak_activation_bytes == 2 * 112 * 112 * 64 * F32 + held + image
    assert v1.peak_op == "features.1.pw.1"
    v2 = mbcost.analyze("v2", 224, batch=8)
    # block 2's stride-2 depthwise conv: input 96x112x112, output 96x56x56, oneDNN's blocked input copy
    # (CPU scratch) and weight copy (96x1x3x3, once), the block's 16x112x112 argument and the image
    per_image = 2 * 96 * 112 * 112 * F32 + 96 * 56 * 56 * F32 + 16 * 112 * 112 * F32 + image
    assert v2.peak_activation_bytes == 8 * per_image + 96 * 9 * F32
    assert v2.peak_op == "features.2.conv.1.0"
    half = mbcost.analyze("v2", 224, batch=8, dtype="float16")
    assert half.peak_activation_bytes * 2 == v2.peak_activation_bytes


def test_no_peak_is_claimed_for_a_real_run():
    class Reads(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    cost = mbcost.analyze(Reads(), 8)
    assert cost.execution == "real" and cost.peak_activation_bytes is None and cost.peak_memory_bytes is None
    assert cost.to_dict()["peak_memory_bytes"] is None


def test_shared_weights_are_not_activations():
    lin = nn.Linear(16, 16, bias=False)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    cost = mbcost.analyze(model, torch.empty(4, 16))
    assert cost.params == 256
    # the input (held by the caller), the first linear's output and the ReLU's: no weight bytes counted
    assert cost.peak_activation_bytes == 3 * 4 * 16 * F32


def test_buffers_are_counted_at_their_own_dtype():
    """BatchNorm's ``num_batches_tracked`` is an int64 buffer: 8 bytes, not the model dtype's 4."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1),
                          nn.BatchNorm2d(4))
    by_hand = sum(b.numel() * b.element_size() for b in model.buffers())
    # running_mean + running_var: (8 + 8 + 4 + 4) float32 = 96 bytes; num_batches_tracked: 2 x int64 = 16 bytes
    assert by_hand == (8 + 8 + 4 + 4) * F32 + 2 * 8
    cost = mbcost.analyze(model, (2, 3, 12, 12))
    assert cost.buffer_bytes == by_hand
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert cost.peak_memory_bytes == weights + by_hand + cost.peak_activation_bytes
    train = mbcost.analyze(model, (2, 3, 12, 12), mode="train")  # SGD: no optimizer state
    # the gradients alive at the step's worst point: those the backward has made by then, at most all
    assert 0 <= train.train_peak_grad_bytes <= weights
    assert train.train_peak_memory_bytes == weights + by_hand + train.train_peak_grad_bytes \
        + train.train_peak_activation_bytes
    # in float16 the running statistics shrink with the weights; the step counters stay int64
    half = mbcost.analyze(nn.Sequential(nn.BatchNorm2d(8)), (1, 8, 4, 4), dtype="float16")
    assert half.buffer_bytes == (8 + 8) * 2 + 8


class ChannelsLastDepthwise(nn.Module):
    """A copy of the input in channels-last layout, then a depthwise 7x7 convolution (ConvNeXt's token mixer)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(32, 32, 7, padding=3, groups=32)

    def forward(self, x):
        return self.conv(x.contiguous(memory_format=torch.channels_last))


def test_a_channels_last_depthwise_backward_takes_its_padded_weight_gradient_at_its_step():
    """The convolution's backward runs with what it saved (the channels-last copy), its output's gradient and
    the scratch oneDNN takes for its weight gradient: 32 groups x 16 x 16 x 7 x 7 float32 elements (the input
    is data: no input gradient). The same convolution on the plain input takes none."""
    cost = mbcost.analyze(ChannelsLastDepthwise(), (1, 32, 8, 8), mode="train", optimizer="sgd")
    copy = grad_out = 1 * 32 * 8 * 8 * F32
    scratch = 32 * 16 * 16 * 7 * 7 * F32  # 1,605,632
    assert cost.train_peak_op == "conv"
    assert cost.train_peak_activation_bytes == copy + grad_out + scratch
    plain = mbcost.analyze(nn.Conv2d(32, 32, 7, padding=3, groups=32), (1, 32, 8, 8), mode="train", optimizer="sgd")
    assert plain.train_peak_activation_bytes < scratch
