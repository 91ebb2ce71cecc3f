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
* Training memory: weights + gradients (one per trainable weight) + optimizer state
  (``OPTIMIZERS[name].state`` tensors per trainable weight) + the activations alive at the worst
  point of the step: during the forward, the live tensors plus everything saved for backward so
  far; during the backward (ops in reverse), what is still saved plus the gradient of the op's
  output and of its input. What each op saves is its op table row's ``saves`` (``mbcost.cost.ops``,
  ATen's derivative formulas), gathered by op name in ``SAVED``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mbcost.cost.ops import BIAS_FIRST, SAVED

__all__ = ["BIAS_FIRST", "COPIES_INPUT_IN_PLACE", "MODES", "OPTIMIZERS", "SAVED", "Optimizer"]

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

#: In place, an op whose backward needs its input saves a copy of it first (autograd's "original
#: self"): ReLU6, Hardswish, SiLU, Hardsigmoid in place keep one more activation than out of place;
#: ReLU, LeakyReLU and ELU in place keep their result instead (measured with saved-tensor hooks).
COPIES_INPUT_IN_PLACE = frozenset(name for name, what in SAVED.items() if what == ("in",))
