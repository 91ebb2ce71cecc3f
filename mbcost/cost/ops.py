"""The op table: one row per ATen op family, with everything the engine knows of it.

A row (``Op``): ``key``, the family's name, by which the counting conventions (``mbcost.cost.conventions``)
key their rules (or by an op's own name, for one op's quirk in a counter); ``names``, the ATen overload
packets it covers (in-place ``_`` removed); ``kind``, its cost formula (``mbcost.cost.formulas``), ``"free"``
for views and copies (no record), ``None`` for ops listed as uncounted; ``read``, the argument reader
(``mbcost.cost.readers``) that turns a call into the formula's shapes; ``shapes``, the shortcuts
(``mbcost.cost.shortcuts``) that answer an op's output without running it, by overload packet (in-place
ones with their ``_``); ``saves``, what autograd keeps for the op's backward, in words of its tensor
arguments (lists flattened, in order) and outputs: ``"in"`` its first activation input, ``"ins"`` every
activation input, ``"rest"`` every
activation input after the first (indices, masks), ``"pair"`` each of its first two tensors when the other needs
a gradient (``x @ w`` keeps ``x`` for ``w``'s gradient), ``"pair1"`` the same for its second and third (after a
bias), ``"quotient"`` ``a / b``: ``b`` when either needs a gradient, ``a`` when ``b`` does, ``"out"`` its first
output, ``"extra"`` its other outputs (a pooling's indices, a norm's statistics, a dropout's mask, an attention
kernel's logsumexp). Weights are never counted (they exist anyway); ops with no rule keep nothing or shapes only
(views, cat, add, mean, pads, upsampling). Checked op by op against ``torch.autograd.graph.saved_tensors_hooks``
on the ops torchvision's and timm's models issue (``tests/test_saved_rules.py``); applied by
``mbcost.cost.training.saved_for_backward``.

Adding an op is one row here. A user's ``torch.library`` ops get theirs at run time (``mbcost.cost.custom``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mbcost.cost import readers as read
from mbcost.cost import shortcuts as shape
from mbcost.cost.custom import custom_adapter
from mbcost.cost.readers import OpCall, Reader, Shape
from mbcost.cost.shortcuts import Shortcut

__all__ = ["BIAS_FIRST", "OPS", "OP_ADAPTERS", "SAVED", "SHORTCUTS", "Op", "OpCall", "Shape", "adapter_of", "family",
           "is_inplace", "op_name"]


@dataclass(frozen=True)
class Op:
    """One op family: see the module docstring for each field."""

    key: str
    names: tuple[str, ...]
    kind: str | None = None
    read: Reader | None = None
    shapes: Mapping[str, Shortcut] = field(default_factory=dict)
    saves: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _row(key: str, names: str, kind: str | None = None, reader: Reader | None = None, *,
         shapes: Mapping[str, Shortcut] | None = None, saves: str | Mapping[str, str] = "") -> Op:
    """A row; ``shapes`` and ``saves`` map space-separated op names to a shortcut or a rule (``saves`` as one
    string: the rule of every op of the row)."""
    ops = tuple(names.split())
    rules = {names: saves} if isinstance(saves, str) else saves
    return Op(key, ops, kind, reader,
              {n: fn for group, fn in (shapes or {}).items() for n in group.split()},
              {n: tuple(rule.split()) for group, rule in rules.items() if rule for n in group.split()})


def _inplace_too(names: str, fn: Shortcut, in_place: Shortcut) -> dict[str, Shortcut]:
    return {names: fn, " ".join(f"{n}_" for n in names.split()): in_place}


_CONV = ("convolution _convolution convolution_overrideable cudnn_convolution mkldnn_convolution conv1d conv2d conv3d "
         "conv_transpose1d conv_transpose2d conv_transpose3d")
_BATCH_NORM = ("batch_norm native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_no_training "
               "cudnn_batch_norm miopen_batch_norm _batch_norm_impl_index")
_SAME = ("relu hardtanh sigmoid tanh hardswish hardsigmoid silu gelu leaky_relu elu selu mish softplus clamp clamp_min "
         "clamp_max threshold")
_ACTIVATION_IN = "hardtanh hardswish hardsigmoid silu gelu selu mish softplus clamp clamp_min clamp_max threshold"
_SDPA = ("_scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_flash_attention "
         "_scaled_dot_product_efficient_attention _scaled_dot_product_cudnn_attention "
         "_scaled_dot_product_attention_math")
_UPSAMPLE = ("upsample_nearest1d upsample_nearest2d upsample_nearest3d _upsample_nearest_exact1d "
             "_upsample_nearest_exact2d _upsample_nearest_exact3d upsample_linear1d upsample_bilinear2d "
             "upsample_trilinear3d upsample_bicubic2d")
_VIEWS = ("view _unsafe_view reshape flatten t transpose permute detach clone contiguous expand squeeze "
          "unsqueeze alias slice select split split_with_sizes chunk cat stack empty empty_like empty_strided "
          "zeros zeros_like ones ones_like fill copy _to_copy to dropout feature_dropout alpha_dropout "
          "lift_fresh unbind narrow as_strided new_empty new_zeros new_ones _reshape_alias size stride sym_size "
          "sym_stride is_same_size bernoulli native_dropout "
          "unsafe_split unsafe_split_with_sizes unsafe_chunk")  # how an RNN cell splits its gates

#: The op table. A row's key is an op's name only when the row is that one op.
OPS: dict[str, Op] = {op.key: op for op in (
    _row("conv", _CONV, "conv", read.conv, shapes={"convolution": shape.convolution}, saves={"convolution": "ins"}),
    _row("products", "mm bmm mv dot matmul", "matmul", read.matmul(0, 1, None),
         shapes={"mm": shape.mm, "bmm": shape.bmm}, saves={"mm bmm matmul": "pair"}),
    # the two multiplied operands follow the bias: BIAS_FIRST
    _row("biased_products", "addmm baddbmm", "matmul", read.matmul(1, 2, 0),
         shapes={"addmm": shape.addmm, "baddbmm": shape.baddbmm}, saves="pair1"),
    _row("linear", "linear", "matmul", read.linear, saves="ins"),
    _row("batchnorm", _BATCH_NORM, "batchnorm", read.batch_norm,
         shapes={"native_batch_norm": shape.batch_norm(5),
                 "_native_batch_norm_legit_no_training": shape.batch_norm(None)},
         saves={"native_batch_norm _native_batch_norm_legit": "ins extra"}),
    _row("norms", "layer_norm native_layer_norm group_norm native_group_norm instance_norm", "norm", read.norm,
         shapes={"native_layer_norm": shape.layer_norm, "native_group_norm": shape.group_norm},
         saves={"native_layer_norm native_group_norm": "ins extra"}),
    _row("activation", f"{_SAME} relu6 prelu _prelu_kernel", "activation", read.unary("out_shape"),
         shapes=_inplace_too(_SAME, shape.same, shape.inplace),
         saves={"relu sigmoid tanh leaky_relu elu": "out", _ACTIVATION_IN: "in"}),
    _row("max_pool", "max_pool1d max_pool2d max_pool3d max_pool2d_with_indices max_pool3d_with_indices", "pool",
         read.pool(False), shapes={"max_pool2d_with_indices": shape.pool(True)},
         saves={"max_pool2d_with_indices max_pool3d_with_indices": "in extra"}),
    _row("avg_pool", "avg_pool1d avg_pool2d avg_pool3d", "pool", read.pool(True),
         shapes={"avg_pool2d": shape.pool(False)}, saves={"avg_pool2d avg_pool3d": "in"}),
    _row("adaptive_pool", "adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d "
         "_adaptive_avg_pool3d adaptive_max_pool2d", "global_pool", read.unary("x_shape"),
         shapes={"_adaptive_avg_pool2d _adaptive_avg_pool3d": shape.adaptive_pool},
         saves={"_adaptive_avg_pool2d _adaptive_avg_pool3d": "in", "adaptive_max_pool2d": "in extra"}),
    _row("reduction", "mean sum", "global_pool", read.reduction, shapes={"mean": shape.mean}),
    _row("elementwise", "add sub mul div rsub maximum minimum", "elementwise", read.binary,
         shapes={**_inplace_too("add sub mul maximum minimum", shape.binary(False), shape.binary(True)),
                 "div": shape.binary(False, true_division=True), "div_": shape.binary(True, true_division=True)},
         saves={"mul": "pair", "div": "quotient", "maximum minimum": "ins"}),
    _row("sdpa", _SDPA, "attention", read.attention, saves={_SDPA.rsplit(" ", 1)[0]: "ins out extra"}),
    _row("_native_multi_head_attention", "_native_multi_head_attention", "attention", read.attention),
    _row("softmaxes", "softmax _softmax log_softmax _log_softmax _safe_softmax", "softmax", read.unary("x_shape"),
         shapes={"_softmax _log_softmax _safe_softmax": shape.contiguous}, saves="out"),
    _row("upsample", _UPSAMPLE, "interpolate", read.interpolate,
         shapes={" ".join(n for n in _UPSAMPLE.split() if n.endswith(f"{d}d")): shape.upsample(d) for d in (1, 2, 3)}),
    _row("grid_sampler", "grid_sampler_2d grid_sampler_3d", "interpolate", read.interpolate),
    _row("views", _VIEWS, "free", read.free, shapes={"clone": shape.clone, "cat": shape.cat},
         saves={"native_dropout": "extra"}),
    # no cost formula (listed uncounted), but their shapes or what they save are known
    _row("roll", "roll", shapes={"roll": shape.suggested}),
    _row("masked_fill", "masked_fill", shapes={"masked_fill": shape.masked_fill}, saves="rest"),
    _row("constant_pad_nd", "constant_pad_nd", shapes={"constant_pad_nd": shape.constant_pad}),
    _row("embedding", "embedding", saves="in"),
    _row("pointwise_math", "exp sqrt rsqrt log abs erf sin cos pow addcmul log_sigmoid_forward",
         saves={"exp sqrt rsqrt": "out", "log abs erf sin cos pow": "in", "addcmul": "pair1",
                "log_sigmoid_forward": "in extra"}),
    _row("statistics", "var var_mean std amax amin linalg_vector_norm prod",
         saves={"var var_mean": "in", "std amax amin linalg_vector_norm prod": "in out"}),
    _row("selection", "max min topk sort kthvalue gather index where adaptive_max_pool3d",
         saves={"max min topk sort kthvalue": "extra", "gather": "ins", "index": "rest", "where": "in",
                "adaptive_max_pool3d": "in extra"}),
)}


#: Op name -> its row (an op is in one row only).
ROWS: dict[str, Op] = {n: op for op in OPS.values() for n in op.names}
if len(ROWS) != sum(len(op.names) for op in OPS.values()):
    raise ValueError("an op is in two rows of the op table")
#: Op name -> its argument reader bound to the row's kind (what the walker calls an adapter).
OP_ADAPTERS: dict[str, Callable[..., OpCall]] = {
    n: partial(op.read, op.kind, n) for n, op in ROWS.items() if op.read is not None}
#: Overload packet name (``relu_``, ``convolution``...) -> shape shortcut.
SHORTCUTS: dict[str, Shortcut] = {n: fn for op in OPS.values() for n, fn in op.shapes.items()}
#: Op name -> what autograd saves for its backward (the rows' ``saves``).
SAVED: dict[str, tuple[str, ...]] = {n: rule for op in OPS.values() for n, rule in op.saves.items()}
#: Ops whose two multiplied operands are not their first two tensor arguments (a bias comes first).
BIAS_FIRST = frozenset(OPS["biased_products"].names)


def family(op: str) -> str:
    """The key of ``op``'s row (the op itself when no row has it: a user's op)."""
    row = ROWS.get(op)
    return op if row is None else row.key


def adapter_of(name: str) -> Callable[..., OpCall] | None:
    """The adapter of an op name: a row's, or a user's op's formula (``None``: listed uncounted)."""
    return OP_ADAPTERS.get(name) or (custom_adapter(name) if "::" in name else None)


def op_name(func: Any) -> str:
    """The table key of an overload: ``aten.relu_.default`` -> ``relu``; a user's ``mylib.fused_attn.default``
    -> ``mylib::fused_attn`` (its qualified name)."""
    name = func.overloadpacket.__name__
    if func.namespace != "aten":
        return f"{func.namespace}::{name}"
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return name


def is_inplace(func: Any) -> bool:
    name = func.overloadpacket.__name__
    return func.namespace == "aten" and name.endswith("_") and not name.endswith("__")
