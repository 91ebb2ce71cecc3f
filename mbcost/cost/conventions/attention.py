"""``F.scaled_dot_product_attention`` (SDPA) as the counters see it, whichever path the engine traced.

The counters run the real module on the CPU (``mbcost.counters``), where SDPA dispatches to one fused
kernel, ``aten::_scaled_dot_product_flash_attention_for_cpu`` (3-D or 4-D q, k, v, any float type, causal
or not, without a mask or with one of 2 dims or of q's), except with dropout, a mask of another rank (timm's
TinyViT: a 3-D bias for 4-D q), 5-D q, or v's head size not q's: then the CPU runs SDPA's math path, the ops
it is made of (``q * s``, ``k^T * s``, ``bmm`` for the scores, a softmax, dropout, ``bmm`` with ``v``). The
meta device always runs the math path, each op a record; a real CPU walk records the fused kernel
itself, as one ``attention`` record.

So that a convention charges SDPA as its library sees it whichever path ran, the two products of each
math-path SDPA are found in the records (``sdpa_products``) and looked up under a key of their own.
``SDPA``: a meta walk's SDPA that the counters' CPU run executes as the fused kernel
(each convention maps it to what its library counts for that kernel, as it maps a fused record, looked
up under the kernel's name). ``SDPA_MATH``: a math path the CPU runs too (with dropout, or a real walk's
math path): libraries that see ATen ops count its ``bmm``, those that see the Python call
(``F.scaled_dot_product_attention``: fvcore's trace, ptflops' replaced functions) count SDPA.

The math path is recognised by its shape: in one module call, a ``mul`` of q's shape and a ``mul`` of
k^T's shape right before a product whose output (the scores) the softmax reads, only elementwise records
(a mask add) between, and the next product reading the softmax's shape, only dropout's elementwise
records between. A hand-written ``(q @ k.transpose(-2, -1)) * scale`` (scaled after the product) does not
match: it stays products, as every counter sees it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from math import prod

from mbcost.cost.conventions.base import Charge, Handler
from mbcost.cost.result import LayerCost

__all__ = ["CPU_SDPA", "CUDA_SDPA", "SDPA", "SDPA_ISSUE", "SDPA_MATH", "flop_counter_counts_cpu_sdpa",
           "sdpa_products", "sdpa_uncounted"]

#: The table key of the two products of a math-path SDPA the CPU runs as its fused kernel.
SDPA = "scaled_dot_product_attention"
#: The table key of the two products of a math-path SDPA the CPU runs as its math path too (dropout...).
SDPA_MATH = "scaled_dot_product_attention (math path)"
#: The kernel SDPA runs as on the CPU.
CPU_SDPA = "_scaled_dot_product_flash_attention_for_cpu"
#: The kernels SDPA runs as on a CUDA device.
CUDA_SDPA: tuple[str, ...] = (
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention")
#: Where FlopCounterMode's missing formula for the CPU kernel is reported (fixed by pytorch/pytorch#195801).
SDPA_ISSUE = "pytorch/pytorch#195460"


def sdpa_products(layers: Sequence[LayerCost], *, meta: bool = True) -> dict[int, str]:
    """The score and weighted-sum products of every math-path SDPA call in ``layers``, by index: ``SDPA``
    where the counters' CPU run takes the fused kernel instead (a ``meta`` walk's, as ``_fused`` tells), else
    ``SDPA_MATH``."""
    found: dict[int, str] = {}
    for i, soft in enumerate(layers):
        if soft.kind != "softmax":
            continue
        before, after = _product_next_to(layers, i, -1), _product_next_to(layers, i, 1)
        if before is None or after is None:
            continue
        scores, weighted = layers[before], layers[after]
        n = prod(soft.input_shape)
        if prod(scores.output_shape) != n or prod(weighted.input_shape) != n:
            continue
        if before >= 2 and _scales(layers[before - 2], layers[before - 1], scores):
            found[before] = found[after] = SDPA if meta and _fused(layers, before, i, after) else SDPA_MATH
    return found


def _product_next_to(layers: Sequence[LayerCost], i: int, step: int) -> int | None:
    """The nearest matrix-product record from ``i`` in direction ``step`` within the same module, with only
    elementwise records (a mask add, a dropout) between; ``None`` if there is none."""
    module = layers[i].module
    j = i + step
    while 0 <= j < len(layers) and layers[j].module == module:
        if layers[j].kind == "matmul":
            return j
        if layers[j].kind != "elementwise":
            return None
        j += step
    return None


def _fused(layers: Sequence[LayerCost], before: int, soft: int, after: int) -> bool:
    """Whether the CPU runs this SDPA as its fused kernel: no dropout (no record between the softmax and the
    weighted sum), a mask (added to the scores) of 2 dims or of q's, q of at most 4 dims, v's head size q's."""
    q, weighted = layers[before - 2].input_shape, layers[after]
    masks = {layers[j].facts.other_rank for j in range(before + 1, soft)} - {None, 2, len(q)}
    return (after == soft + 1 and not masks and len(q) <= 4
            and weighted.weight_shape is not None and weighted.weight_shape[-1] == q[-1])


def _scales(q: LayerCost, k: LayerCost, scores: LayerCost) -> bool:
    """SDPA's math path scales q and k^T (by the square root of the scale each) just before the scores."""
    return (q.module == k.module == scores.module and q.op == k.op == "mul"
            and prod(q.output_shape) == prod(scores.input_shape)
            and scores.weight_shape is not None and prod(k.output_shape) == prod(scores.weight_shape))


@functools.cache
def flop_counter_counts_cpu_sdpa() -> bool:
    """Whether the installed torch's FlopCounterMode has a formula for the CPU SDPA kernel (not up to
    torch 2.14: ``SDPA_ISSUE``)."""
    try:
        import torch
        from torch.utils.flop_counter import flop_registry
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    op = getattr(torch.ops.aten, CPU_SDPA, None)
    return op is not None and op in flop_registry


def sdpa_uncounted(reason: str) -> Handler:
    """SDPA's products counted as nothing, reported under the ``scaled_dot_product_attention`` component."""
    def handle(layer: LayerCost) -> Charge:
        return Charge(counted=False, component=SDPA, reason=reason)
    return handle
