"""``F.scaled_dot_product_attention`` as the meta device runs it and as the CPU does.

Without dropout, the meta device runs it as its math path (``q * s``, ``k^T * s``, ``bmm``, an optional mask
``add``, a softmax, ``bmm``), which makes the scaled copies and the ``L x S`` attention weights, while the CPU
and CUDA run one fused kernel that makes neither. With dropout between the softmax and the product, or a value
head size other than the query's, the CPU runs the math path too, and it is left as recorded; so is
nn.MultiheadAttention's (the walk turns its fast path off), as its inference fast path on the CPU
(``_native_multi_head_attention``) makes the weights too, once (its softmax in place).

* Inference (``fused_spans``): the math path is found in the schedule by its ops' names and modules, from its
  softmax, ``_safe_softmax``, which nothing but the math path calls (torch 2.5 on; before, nothing is found).
  The fused kernel makes none of the storages the math path makes but the output, reads its inputs to its end
  and allocates a logsumexp and a buffer while it runs (``mbcost.cost.workspace.attention_workspace``).
* Training (``MathAttention``): recognised as it is recorded, by storages, it saves what the fused kernel
  saves: ``q``, ``k``, ``v``, the output and its float32 logsumexp (one per query row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

from mbcost.cost.workspace import attention_workspace

__all__ = ["Fused", "MathAttention", "fused_spans"]

_SOFTMAX = frozenset({"_softmax", "_safe_softmax"})
_RESHAPES = frozenset({"expand", "view", "clone", "_unsafe_view"})


def fused_spans(where: Sequence[tuple[Any, str, int | None]], records: Sequence[Any]) -> list[tuple[int, int, int]]:
    """The math-path attentions of an inference schedule that the CPU runs fused (``where``: per op, its module,
    name and record; ``records``: the walk's), each as its first op, its last (the product with ``v``) and the
    fused kernel's scratch bytes."""
    from torch.nn import MultiheadAttention

    spans, steps = [], len(where)
    for i, (mod, name, _) in enumerate(where):
        if name != "_safe_softmax" or isinstance(mod, MultiheadAttention):  # its fast path makes the weights
            continue
        scores = i - 1
        while scores > 0 and where[scores][1] in ("_unsafe_view", "add"):  # the scores, masked or not
            scores -= 1
        end = i + 1
        while end < steps and where[end][1] in _RESHAPES and where[end][0] is mod:
            end += 1
        start, muls = scores, 0
        while muls < 2 and start > 0 and where[start - 1][0] is mod:  # back to ``q * s``, the first scaling
            start -= 1
            muls += where[start][1] == "mul"
        if muls < 2 or end == steps or (where[scores][1], where[end][1]) != ("bmm", "bmm") or where[end][0] is not mod:
            continue
        product, scored = records[where[end][2]], records[where[scores][2]]
        heads, q_len, kv_len = product.input_shape
        if product.output_shape[-1] != scored.input_shape[-1]:  # a value head size other than the query's
            continue
        element = product.output_bytes // max(1, prod(product.output_shape))
        spans.append((start, end, attention_workspace(heads, q_len, kv_len, scored.input_shape[-1], element)))
    return spans


@dataclass(frozen=True)
class Fused:
    """What a recognised math-path attention saves instead of what its ops saved: the storages the fused
    kernel does not keep (``dropped``), the ones it keeps (``kept``, saved from step ``first``, its first
    op) and the bytes of its own it keeps (the logsumexp)."""

    dropped: tuple[int, ...]
    kept: tuple[int, ...]
    first: int
    own_bytes: int = 0


class MathAttention:
    """Recognises ``F.scaled_dot_product_attention``'s math path op by op, in training (the module's
    docstring): ``q * s`` and ``k^T * s`` (each a product with a scalar), ``bmm`` of the two, an optional
    ``add`` (the mask), a softmax, ``bmm`` with ``v``; ``clone`` (a reshape's copy) in between. Tensors
    are known by their storages. The fused kernel's output is laid out so that the usual
    ``transpose(1, 2).reshape(...)`` after it is a view: the math path's copy there takes its place."""

    def __init__(self) -> None:
        self.copies: dict[int, tuple[int, int]] = {}  # a clone -> (what it copies, the step)
        self.scaled: dict[int, tuple[int, int]] = {}  # scaled copy -> (the original, the step)
        self.scores: dict[int, tuple[int, ...]] = {}  # scores, masked or not -> the storages the ops made
        self.weights: dict[int, tuple[int, ...]] = {}  # softmax output -> the same, with the scores, and the step
        self.outputs: dict[int, int] = {}  # an attention's output -> its first step
        self.masks: dict[int, tuple[int, ...]] = {}  # masked scores, their softmax -> the masks added

    def see(self, name: str | None, reads: list[Any], writes: list[Any], key: Any, step: int,
            needing: Sequence[Any] = ()) -> Fused | None:
        """One op of a training walk, once recorded (``needing``: its tensors that need a gradient); at an
        attention's last product (and at the copy of its output), what it saves instead. A mask that needs
        a gradient (a learned bias) sends the CPU's SDPA down the math path: then nothing changes."""
        if not writes or not reads:
            return None
        out, first = key(writes[0]), key(reads[0])
        source = self.copies.get(first, (first, 0))[0]  # what a clone copies (one level)
        if name == "clone":
            self.copies[out] = (first, step)
            if first in self.outputs:
                return Fused(dropped=(first,), kept=(out,), first=self.outputs.pop(first))
        elif name == "mul" and len(reads) == 1:
            self.scaled[out] = (first, step)
        elif name == "bmm" and len(reads) == 2:
            second = key(reads[1])
            other, copied = self.copies.get(second, (second, -1))
            if source in self.scaled and other in self.scaled:
                self.scores[out] = (source, other, first, second)
            elif source in self.weights:
                *made, softmax = self.weights.pop(source)
                masks = self.masks.pop(source, ())
                if copied < softmax:  # v itself, not its copy for the product
                    other = second
                (q, start), (k, _) = self.scaled[made[0]], self.scaled[made[1]]
                self.outputs[out] = start
                return Fused(dropped=(*made, source, first, second), kept=(q, k, other, out, *masks), first=start,
                              own_bytes=writes[0].numel() // max(1, writes[0].shape[-1]) * 4)
        elif name == "add" and first in self.scores:
            if any(t is m for t in needing for m in reads[1:]):
                return None
            self.scores[out] = self.scores[first]
            self.masks[out] = (*self.masks.get(first, ()), *(key(t) for t in reads[1:]))
        elif name in _SOFTMAX and first in self.scores:
            self.weights[out] = (*self.scores[first], step)
            self.masks[out] = self.masks.pop(first, ())
        return None
