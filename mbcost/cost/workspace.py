"""Scratch memory an op allocates and frees inside itself, beyond its inputs and outputs.

Modelled for PyTorch's CPU kernels in float32 and NCHW on one thread with AVX-512 (oneDNN's
16-channel blocks): a fixed reference, so that an estimate (and a gate's baseline) is the same on
every machine. ``benchmarks/bench_memory.py`` traces every allocation of a forward to its op and
measures it. Each function returns the bytes alive during the op on top of its input and output;
the engine adds them to the live set at that op only. Elsewhere (more threads send 1x1
convolutions to oneDNN too, AVX2 blocks by 8, cuDNN picks its own workspace) the figure is an
indication, and the measured difference is shown next to the estimate.

* Convolution through oneDNN (``mkldnn_convolution``): oneDNN works on channel-blocked tensors
  (blocks of 16 channels with AVX-512, 8 otherwise). It copies the input into blocked layout
  (unless it has fewer than 16 channels and is not depthwise), reorders the weight on every call,
  computes a blocked output and copies it into the plain one. Bytes beyond input + output:
  ``max(S + Wc + D - O, D)`` with S the blocked input copy, Wc the weight copy, D the blocked
  output and O the plain output.
* Convolution on the plain path (``_slow_conv2d_forward``): the im2col columns,
  ``N * Cin/groups * kh * kw * Ho * Wo`` elements; none for a 1x1, stride-1, unpadded convolution.
* ATen sends a convolution to oneDNN when it is grouped, when N > 1, when its kernel is larger than
  3x3, or when its input has more than 20,480 elements; except a 1x1, stride-1 convolution, which
  goes to oneDNN only with N >= 16 or more than one thread.
* A convolution's backward (``conv_backward_workspace``): ATen's oneDNN path computes the weight and
  bias gradients in one oneDNN call whenever either is needed. For a depthwise convolution on a
  channels-last input with a kernel larger than 3x3, oneDNN (``ONEDNN_VERBOSE=1``) picks its general
  ``jit:avx512_core`` weight-gradient kernel (a 3x3 one gets the depthwise ``jit_dw`` kernel), which writes
  the gradient in the padded blocked layout ``aBCde16c16b``: each group's 1x1 channel pair padded to a
  16x16 block, ``C * 16 * 16 * kh * kw`` elements, whatever the batch, image size or stride, then
  reorders it into the plain weight's gradient and frees it. Measured with the profiler's allocation
  events on isolated convolutions (``tests/test_memory_measured.py``). The plain-layout backward's
  blocked copies are not modelled (0).
* Scaled dot-product attention's fused CPU kernel (``attention_workspace``;
  ``_scaled_dot_product_flash_attention_for_cpu``) allocates, with its output, a logsumexp per query row and head
  and, per thread, a buffer of ``qb * kb + 2 * qb + qb * D`` float32 (float64 for a float64 input) elements,
  plus ``qb * kb`` of a half-precision input's own, for blocks of ``qb`` query rows (32; 64 from 192 rows on, 256
  from 768) and ``kb`` keys (512), at most the sequences' lengths; it frees them when it returns.
* Max pooling returns int64 indices next to its output even in inference (8 bytes per output
  element), freed when the op returns.
"""

from __future__ import annotations

from math import ceil, prod
from typing import Any

__all__ = ["attention_workspace", "conv_backward_workspace", "conv_scratch", "conv_workspace", "uses_onednn"]

Shape = tuple[int, ...]


#: oneDNN's channel block of the reference CPU (AVX-512) and its thread count.
BLOCK = 16
THREADS = 1


def _padded(channels: int, block: int) -> int:
    return ceil(channels / block) * block


def uses_onednn(x_shape: Shape, w_shape: Shape, stride: Shape, padding: Shape, dilation: Shape, groups: int,
                threads: int) -> bool:
    """Whether ATen sends this 2-D float32 convolution to oneDNN on the CPU (see the module docstring)."""
    n = x_shape[0]
    pointwise = all(k == 1 for k in w_shape[2:]) and all(s == 1 for s in stride) and all(d == 1 for d in dilation) \
        and not any(padding)
    if pointwise:
        return n >= 16 or threads > 1
    return groups > 1 or n > 1 or all(k > 3 for k in w_shape[2:]) or prod(x_shape) > 20480


def conv_workspace(x_shape: Shape, w_shape: Shape, out_shape: Shape, stride: Shape, padding: Shape,
                   dilation: Shape, groups: int, element_size: int, threads: int = THREADS, block: int = BLOCK) -> int:
    """Bytes a CPU convolution allocates beyond its input and output."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        return 0
    n, cin = x_shape[0], x_shape[1]
    cout = w_shape[0]
    e = element_size
    if uses_onednn(x_shape, w_shape, stride, padding, dilation, groups, threads):
        b = block
        depthwise = groups > 1 and groups == cin
        copy = n * _padded(cin, b) * x_shape[2] * x_shape[3] * e if (cin >= b or depthwise) else 0
        cin_w = 1 if depthwise else (cin // groups if cin < b else _padded(cin // groups, b))
        weight = _padded(cout, b) * cin_w * w_shape[2] * w_shape[3] * e
        blocked = n * _padded(cout, b) * out_shape[2] * out_shape[3] * e
        plain = prod(out_shape) * e
        return max(copy + weight + blocked - plain, blocked)
    pointwise = w_shape[2] == w_shape[3] == 1 and all(s == 1 for s in stride) and not any(padding)
    if pointwise:
        return 0
    return n * (cin // groups) * w_shape[2] * w_shape[3] * out_shape[2] * out_shape[3] * e


def conv_backward_workspace(x_shape: Shape, w_shape: Shape, groups: int, element_size: int, *, channels_last: bool,
                            weight_grad: bool = True, block: int = BLOCK) -> int:
    """Bytes a CPU convolution's backward allocates beyond its gradients (see the module docstring): a
    channels-last depthwise convolution with a kernel larger than 3x3 whose weight or bias needs a gradient
    (``weight_grad``) takes its weight gradient padded to ``block x block`` per group."""
    if len(x_shape) != 4 or len(w_shape) != 4 or not weight_grad or not channels_last:
        return 0
    depthwise = groups > 1 and groups == x_shape[1] and w_shape[1] == 1
    if not depthwise or max(w_shape[2], w_shape[3]) <= 3:
        return 0
    return groups * _padded(w_shape[0] // groups, block) * block * w_shape[2] * w_shape[3] * element_size


def conv_scratch(layer: Any) -> int:
    """A convolution's scratch memory on the CPU (``conv_workspace`` of its record)."""
    if layer.weight_shape is None or layer.stride is None or isinstance(layer.padding, str):
        return 0
    e = layer.output_bytes // max(1, prod(layer.output_shape))
    return conv_workspace(layer.input_shape, layer.weight_shape, layer.output_shape, layer.stride,
                          layer.padding, layer.dilation or (1,) * len(layer.stride), layer.groups or 1, e)


def attention_workspace(heads: int, q_len: int, kv_len: int, head_dim: int, element_size: int,
                        threads: int = THREADS) -> int:
    """Bytes the CPU's fused attention allocates beyond its output, for ``heads`` (batch times heads) heads of
    ``q_len`` queries and ``kv_len`` keys of ``head_dim`` (see the module docstring)."""
    acc = max(4, element_size)
    qb, kb = min(q_len, 256 if q_len >= 768 else 64 if q_len >= 192 else 32), min(kv_len, 512)
    per_thread = (qb * kb + 2 * qb + qb * head_dim) * acc + (qb * kb * element_size if element_size < 4 else 0)
    return heads * q_len * acc + threads * per_thread
