"""The training step, analytically: what autograd saves, what the backward costs, what the optimizer does.

Counting semantics (``mode="train"``):

* ``backward_macs``: the gradients of convolutions and matrix products, one forward-sized product
  per operand that needs a gradient: ``grad_input`` (a transposed convolution, or ``grad @ W``)
  when the op's activation input needs a gradient (not for the first layer, whose input is data,
  unless the model's input is given as a tensor with ``requires_grad=True``: ``InputSpec.requires_grad``),
  and ``grad_weight`` (``x^T @ grad`` or its convolution analogue) when its weight is trainable.
  Grouped and depthwise convolutions cost the same as their forward per gradient. This is exactly
  what torch's ``FlopCounterMode`` counts in a backward (FLOPs / 2); bias gradients are sums, not
  MACs.
* ``backward_elementwise_ops``: a convention, as no counter counts them: every op whose input needs
  a gradient does twice its forward elementwise work in backward (norms, activations, pooling,
  residual adds, bias gradients), a round figure to keep the order of magnitude visible.
* ``optimizer_ops``: per trainable parameter element, ``OPTIMIZERS[name].ops``: SGD ``p -= lr g``
  2; momentum ``b = m b + g; p -= lr b`` 4; Adam ``m = b1 m + (1 - b1) g`` (3), ``v = b2 v +
  (1 - b2) g^2`` (4), ``p -= lr m / (sqrt(v) + eps)`` (5): 12 (bias corrections are per-tensor
  scalars); AdamW adds the decoupled decay ``p -= lr wd p``: 14.
* Training memory: weights + optimizer state (``OPTIMIZERS[name].state`` tensors per trainable
  weight) + what is alive at the worst point of the step: during the forward, the live tensors plus
  everything saved for backward so far; during the backward (ops in reverse), what is still saved,
  the gradient of the op's output and of its input, and the parameters' gradients made so far (a
  weight's gradient exists from the backward of its last reader on: ``train_peak_grad_bytes``); at the
  optimizer's update, every gradient. What each op saves is its op table row's ``saves`` (``mbcost.cost.ops``, ATen's
  derivative formulas, checked op by op with saved-tensor hooks); ``F.scaled_dot_product_attention``'s math path,
  which the meta device runs, saves what the fused CPU and CUDA kernels save (``mbcost.cost.lifetimes``).
  Within 10% of the CPU allocator's measured peak on torchvision's and timm's models
  (``benchmarks/bench_train_memory.py``).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Any

from mbcost.cost.ops import BIAS_FIRST, SAVED

__all__ = ["BIAS_FIRST", "MODES", "OPTIMIZERS", "SAVED", "Optimizer", "saved_for_backward"]

MODES = ("inference", "train")


@dataclass(frozen=True)
class Optimizer:
    """Update ops and state tensors per trainable parameter element."""

    ops: int
    state: int


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(ops=2, state=0),
    "momentum": Optimizer(ops=4, state=1),
    "adam": Optimizer(ops=12, state=2),
    "adamw": Optimizer(ops=14, state=2),
}

def saved_for_backward(name: str, tensors: Sequence[Any], outputs: Sequence[Any], *, weights: Container[int],
                       grads: Container[int], inplace: bool) -> tuple[list[Any], int]:
    """What op ``name`` keeps for its backward by ``SAVED``: the activation tensors it saves (among its
    ``tensors`` and ``outputs``; weights, ``id(t) in weights``, left out) and the bytes autograd copies to
    save them: in place, an input the backward reads is overwritten, so its original is copied first.
    ``grads``: the ids of the tensors that need a gradient."""
    rule = SAVED.get(name, ())
    acts = [t for t in tensors if id(t) not in weights]
    saved = [*(acts[:1] if "in" in rule else []), *(acts if "ins" in rule else []),
             *(acts[1:] if "rest" in rule else [])]
    for token, first in (("pair", 0), ("pair1", 1)):
        if token in rule and len(tensors) >= first + 2:
            a, b = tensors[first], tensors[first + 1]
            saved += [t for t, other in ((a, b), (b, a)) if id(other) in grads and id(t) not in weights]
    if "quotient" in rule and len(tensors) >= 2:
        a, b = tensors[0], tensors[1]
        saved += [t for t, keep in ((a, id(b) in grads), (b, id(a) in grads or id(b) in grads))
                  if keep and id(t) not in weights]
    copies = 0
    if inplace and tensors and any(t is tensors[0] for t in saved):  # the original self, copied
        saved = [t for t in saved if t is not tensors[0]]
        copies = tensors[0].numel() * tensors[0].element_size()
    saved += [*(outputs[:1] if "out" in rule else []), *(outputs[1:] if "extra" in rule else [])]
    return saved, copies
