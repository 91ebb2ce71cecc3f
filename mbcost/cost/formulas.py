"""Cost formulas: one small pure function per layer kind, registered in one table.

Counting semantics (the ``paper`` convention, used everywhere unless a preset says otherwise):

* ``macs``: multiply-accumulates of convolutions and matrix products (``Conv*d``,
  ``ConvTranspose*d``, ``Linear``, ``matmul``), bias excluded. These are the MobileNet
  papers' "Mult-Adds". ``flops`` is always ``2 * macs``.
* ``bias_adds``: one add per output element of a convolution or linear layer with a bias.
* ``other_ops``: elementwise work, counted per element and never folded into ``macs``:
  BatchNorm in eval mode 2 per element (folded scale and shift); LayerNorm/GroupNorm 5 per
  element; pointwise activations (ReLU, ReLU6, Hardswish, SiLU, GELU, Sigmoid, Tanh...)
  1 per element; max/avg pooling ``kernel_h * kernel_w`` per output element; adaptive
  average pooling and ``mean`` one per input element; binary elementwise ops (residual
  ``add``, ``mul``...) 1 per output element; softmax 3 per element; interpolation (``F.interpolate``,
  ``F.grid_sample``) one op per source value each output element blends: linear 2, bilinear 4,
  trilinear 8, bicubic 16; nearest 0 (a copy).
* View and copy ops (``view``, ``flatten``, ``t``, ``clone``, eval-mode ``dropout``) cost 0.

Every formula takes shapes (tuples of ints) and plain values and returns an ``OpCost``.
The input channels of a convolution come from the weight shape (``C_in / groups``), so
grouped and depthwise convolution need no special case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import prod

__all__ = [
    "FORMULAS", "OpCost", "Shape", "activation_cost", "attention_cost", "batchnorm_cost", "conv_cost",
    "elementwise_cost", "global_pool_cost", "interpolate_cost", "matmul_cost", "norm_cost", "pool_cost",
    "register_formula", "softmax_cost",
]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OpCost:
    """The cost of one op call, exact integers: MACs, bias adds and other elementwise ops (what a custom op's
    formula may return: ``mbcost.OpCost(macs=..., other_ops=...)``)."""

    macs: int = 0
    bias_adds: int = 0
    other_ops: int = 0


Formula = Callable[..., OpCost]

#: The one table of formulas, keyed by layer kind.
FORMULAS: dict[str, Formula] = {}


def register_formula(kind: str) -> Callable[[Formula], Formula]:
    """Register ``fn`` as the cost formula of ``kind``; a kind can be registered only once."""

    def decorator(fn: Formula) -> Formula:
        if kind in FORMULAS:
            raise ValueError(f"a formula for {kind!r} is already registered")
        FORMULAS[kind] = fn
        return fn

    return decorator


@register_formula("conv")
def conv_cost(
    x_shape: Shape, w_shape: Shape, out_shape: Shape, *, transposed: bool = False, has_bias: bool = False
) -> OpCost:
    """Convolution (any dimensionality, any groups).

    Forward: every output element is a dot product of ``C_in/groups * prod(kernel)`` terms,
    so ``macs = numel(out) * w_shape[1] * prod(w_shape[2:])``. Transposed: every input
    element is scattered into ``C_out/groups * prod(kernel)`` outputs.
    """
    per_element = w_shape[1] * prod(w_shape[2:])
    macs = prod(x_shape) * per_element if transposed else prod(out_shape) * per_element
    return OpCost(macs=macs, bias_adds=prod(out_shape) if has_bias else 0)


@register_formula("matmul")
def matmul_cost(a_shape: Shape, b_shape: Shape, out_shape: Shape, *, has_bias: bool = False) -> OpCost:
    """Matrix product ``a @ b`` (Linear, mm, addmm, bmm): ``numel(out) * inner``."""
    return OpCost(macs=prod(out_shape) * a_shape[-1], bias_adds=prod(out_shape) if has_bias else 0)


@register_formula("attention")
def attention_cost(q_shape: Shape, k_shape: Shape, v_shape: Shape, *, embed_dim: int | None = None,
                   heads: int = 1, projections: bool = False, has_bias: bool = False) -> OpCost:
    """Attention as one fused op: ``softmax(q @ k^T) @ v``, per head.

    ``q_shape`` is ``(..., L, D)``, ``k_shape`` ``(..., S, D)``, ``v_shape`` ``(..., S, Dv)`` with
    the batch and head dims in front: ``L * S * D`` MACs for the scores, ``L * S * Dv`` for the
    weighted sum, and a softmax (3 ops per score). ``projections`` adds the input and output
    projections of a fused multi-head attention (``_native_multi_head_attention``), whose shapes
    are then ``(B, L, E)`` with ``embed_dim`` E split over ``heads``: ``(L + 2 S) * E * E`` for q, k,
    v, ``L * E * E`` for the output, and ``2 * L * S * E`` for scores and sum over all heads.
    """
    if projections:
        e = embed_dim or q_shape[-1]
        batch, length, source = prod(q_shape[:-2]), q_shape[-2], k_shape[-2]
        macs = batch * (2 * length + 2 * source) * e * e + 2 * batch * length * source * e
        bias = batch * (2 * length + 2 * source) * e if has_bias else 0
        return OpCost(macs=macs, bias_adds=bias, other_ops=3 * batch * heads * length * source)
    scores = prod(q_shape[:-1]) * k_shape[-2]
    return OpCost(macs=scores * q_shape[-1] + scores * v_shape[-1], other_ops=3 * scores)


def _per_element(kind: str, per: int, what: str) -> Formula:
    """``per`` ops per element of the one shape the kind's reader gives (``x_shape`` or ``out_shape``)."""
    def cost(**shape: Shape) -> OpCost:
        (dims,) = shape.values()
        return OpCost(other_ops=per * prod(dims))
    cost.__doc__ = f"{what}: {per} op{'s' if per > 1 else ''} per element."
    return register_formula(kind)(cost)


batchnorm_cost = _per_element("batchnorm", 2, "BatchNorm in eval mode: a folded scale and shift")
norm_cost = _per_element("norm", 5, "LayerNorm / GroupNorm / InstanceNorm: statistics, normalisation and affine")
activation_cost = _per_element("activation", 1, "Pointwise activation (ReLU, ReLU6/hardtanh, Hardswish, SiLU, GELU...)")
global_pool_cost = _per_element("global_pool", 1, "Adaptive average pooling / ``mean`` over spatial dims: each input "
                                "element summed once")
elementwise_cost = _per_element("elementwise", 1, "Binary elementwise op (residual add, mul, sub, div)")
softmax_cost = _per_element("softmax", 3, "Softmax: exponent, sum and divide")


@register_formula("pool")
def pool_cost(out_shape: Shape, kernel: Sequence[int]) -> OpCost:
    """Max or average pooling with a fixed window: ``prod(kernel)`` ops per output element."""
    return OpCost(other_ops=prod(out_shape) * prod(kernel))


@register_formula("interpolate")
def interpolate_cost(out_shape: Shape, points: int) -> OpCost:
    """Interpolation (upsampling, grid sampling): each output element is a weighted sum of ``points``
    source values (linear 2, bilinear 4, trilinear 8, bicubic 16), one op each; nearest copies one (0)."""
    return OpCost(other_ops=points * prod(out_shape))
