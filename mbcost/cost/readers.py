"""Argument readers: turn one ATen op call into the shapes its cost formula takes.

The shape walker sees every ATen op a forward pass issues (on the meta device, so nothing is
computed). A reader takes the op table row's kind and the op's name (``mbcost.cost.ops``) with the
call's arguments and output, and returns an ``OpCall``: the formula's arguments and what the layer
record shows (shapes, kernel, stride...). It holds no arithmetic: that lives in
:mod:`mbcost.cost.formulas`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["OpCall", "Reader", "Shape", "arg", "attention", "batch_norm", "binary", "conv", "free", "interpolate",
           "ints", "linear", "matmul", "norm", "pool", "reduction", "unary"]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OpCall:
    """What the formulas and the layer record need from one op call."""

    kind: str
    formula_args: dict[str, Any]
    input_shape: Shape
    output_shape: Shape
    weight_shape: Shape | None = None
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | str | None = None
    dilation: tuple[int, ...] | None = None
    groups: int | None = None
    affine: bool | None = None
    count_include_pad: bool | None = None
    training: bool | None = None
    dims: tuple[int, ...] | None = None  # a reduction's dims as the call names them (``None``: all)
    other_rank: int | None = None  # a binary op's second operand's rank (``None``: a number)


#: ``reader(kind, name, args, kwargs, out)``: the row's kind, the op's name, the call.
Reader = Callable[[str, str, Sequence[Any], dict[str, Any], Any], OpCall]


def _shape(t: Any) -> Shape:
    return tuple(t.shape)


def ints(v: Any, n: int) -> tuple[int, ...]:
    """An int or int list argument (stride, padding...) as ``n`` ints."""
    if type(v) is list and len(v) == n:  # the ATen schema's int[] (the common case)
        return tuple(v)
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    return v * n if len(v) == 1 and n > 1 else v


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def arg(args: Sequence[Any], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    """Argument ``i`` of a call, or its keyword ``name``, or ``default``."""
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def conv(kind: str, name: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    """The convolution family; the op's name says its argument order."""
    x, w = args[0], args[1]
    bias = arg(args, kwargs, 2, "bias")
    n = w.dim() - 2
    stride, padding = arg(args, kwargs, 3, "stride", 1), arg(args, kwargs, 4, "padding", 0)
    if name.startswith("conv_transpose"):  # (x, w, b, stride, padding, output_padding, groups, dilation)
        dilation, groups, transposed = arg(args, kwargs, 7, "dilation", 1), arg(args, kwargs, 6, "groups", 1), True
    elif name[-2:] in ("1d", "2d", "3d"):  # conv2d(x, w, b, stride, padding, dilation, groups)
        dilation, groups, transposed = arg(args, kwargs, 5, "dilation", 1), arg(args, kwargs, 6, "groups", 1), False
    else:  # convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups)
        dilation, transposed, groups = args[5], bool(args[6]), args[8]
    o, w_shape = _first(out), _shape(w)
    return OpCall(kind=kind, formula_args={"x_shape": _shape(x), "w_shape": w_shape, "out_shape": _shape(o),
                                           "transposed": transposed, "has_bias": bias is not None},
                  input_shape=_shape(x), output_shape=_shape(o), weight_shape=w_shape, kernel=w_shape[2:],
                  stride=ints(stride, n), padding=padding if isinstance(padding, str) else ints(padding, n),
                  dilation=ints(dilation, n), groups=int(groups))


def matmul(a_index: int, b_index: int, bias_index: int | None, transposed: bool = False) -> Reader:
    """Matrix products: operands at ``a_index`` and ``b_index``, a bias at ``bias_index``; ``transposed``:
    the right operand is stored ``[out_features, in_features]`` (``linear``)."""
    def read(kind: str, name: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
        a, b = args[a_index], args[b_index]
        bias = None if bias_index is None else arg(args, kwargs, bias_index, "bias")
        o, b_shape = _first(out), _shape(b)
        if transposed:
            b_shape = b_shape[::-1]
        return OpCall(kind=kind, formula_args={"a_shape": _shape(a), "b_shape": b_shape, "out_shape": _shape(o),
                                               "has_bias": bias is not None},
                      input_shape=_shape(a), output_shape=_shape(o),
                      weight_shape=b_shape)  # the right operand as multiplied: (in_features, out_features)
    return read


linear = matmul(0, 1, 2, transposed=True)


def _unary_call(kind: str, args: Sequence[Any], out: Any, shape_arg: str, affine: bool | None = None) -> OpCall:
    x_shape, o_shape = _shape(args[0]), _shape(_first(out))
    return OpCall(kind=kind, formula_args={shape_arg: x_shape if shape_arg == "x_shape" else o_shape},
                  input_shape=x_shape, output_shape=o_shape, affine=affine)


def unary(shape_arg: str) -> Reader:
    """One tensor in, one out: the formula reads ``x_shape`` (the input's) or ``out_shape``."""
    def read(kind: str, name: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
        return _unary_call(kind, args, out, shape_arg)
    return read


def reduction(kind: str, name: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    """``mean``/``sum``, with the dims as named: ``F.adaptive_avg_pool2d(x, 1)`` is a ``mean`` over ``[-1, -2]``."""
    dim, x = arg(args, kwargs, 1, "dim"), _shape(args[0])
    return OpCall(kind=kind, formula_args={"x_shape": x}, input_shape=x, output_shape=_shape(_first(out)),
                  dims=tuple(dim) if isinstance(dim, (list, tuple)) else None)


def norm(kind: str, name: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    """Norm ops: cost from the input shape; ``affine`` when the op got a weight (scale): argument 1 of
    ``native_group_norm(x, weight, ...)`` and ``instance_norm``, argument 2 of ``layer_norm(x,
    normalized_shape, weight, ...)`` and ``group_norm(x, groups, weight, ...)``."""
    w = args[1] if len(args) > 1 and (args[1] is None or hasattr(args[1], "shape")) else arg(args, kwargs, 2, "weight")
    return _unary_call(kind, args, out, "x_shape", affine=w is not None)


def batch_norm(kind: str, name: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    """BatchNorm ops: ``affine`` when the op got a weight (argument 1); ``training`` when it normalised with
    the batch's own statistics: the op's one bool argument (none in ``..._no_training``)."""
    x_shape = _shape(args[0])
    training = next((a for a in args if isinstance(a, bool)), bool(kwargs.get("training", False)))
    return OpCall(kind=kind, formula_args={"x_shape": x_shape}, input_shape=x_shape, output_shape=_shape(_first(out)),
                  affine=arg(args, kwargs, 1, "weight") is not None, training=training)


#: Source values each output element of an ``upsample_*`` op blends, by mode (nearest: 0, a copy).
_POINTS = {"linear1d": 2, "bilinear2d": 4, "trilinear3d": 8, "bicubic2d": 16}


def interpolate(kind: str, name: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    """``upsample_*`` ops: every output element blends the mode's number of source values. ``grid_sampler_2d/3d
    (input, grid, interpolation_mode, ...)``: mode 0 is (bi/tri)linear (4 source values in 2-D, 8 in 3-D),
    1 nearest (0), 2 bicubic (16, 2-D only); its grid shows as the weight."""
    x, o = _shape(args[0]), _shape(_first(out))
    if not name.startswith("grid_sampler"):
        points = _POINTS.get(name.removeprefix("upsample_"), 0)
        return OpCall(kind=kind, formula_args={"out_shape": o, "points": points}, input_shape=x, output_shape=o)
    points = {0: 2 ** (len(x) - 2), 1: 0, 2: 16}.get(int(arg(args, kwargs, 2, "interpolation_mode", 0)), 0)
    return OpCall(kind=kind, formula_args={"out_shape": o, "points": points}, input_shape=x, output_shape=o,
                  weight_shape=_shape(args[1]))


def pool(average: bool) -> Reader:
    """Pooling with a fixed window: ``(x, kernel_size, stride, padding, ...)``."""
    def read(kind: str, name: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
        x, o = args[0], _first(out)
        n = x.dim() - 2
        kernel = ints(arg(args, kwargs, 1, "kernel_size"), n)
        stride = arg(args, kwargs, 2, "stride") or kernel
        padding = arg(args, kwargs, 3, "padding", 0)
        return OpCall(kind=kind, formula_args={"out_shape": _shape(o), "kernel": kernel}, input_shape=_shape(x),
                      output_shape=_shape(o), kernel=kernel, stride=ints(stride, n), padding=ints(padding, n),
                      count_include_pad=bool(arg(args, kwargs, 5, "count_include_pad", True)) if average else None)
    return read


def binary(kind: str, name: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    o, x = _first(out), args[0]
    y = args[1] if len(args) > 1 else None
    return OpCall(kind=kind, formula_args={"out_shape": _shape(o)},
                  input_shape=_shape(x) if hasattr(x, "shape") else (), output_shape=_shape(o),
                  other_rank=y.dim() if hasattr(y, "dim") else None)


def attention(kind: str, name: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    """Fused scaled dot-product attention kernels: ``(q, k, v, ...)``, heads in the leading dims; and
    ``_native_multi_head_attention(q, k, v, embed_dim, num_head, qkv_weight, qkv_bias, ...)``,
    nn.MultiheadAttention's fused eval path, projections included."""
    q = _shape(args[0])
    shapes = {"q_shape": q, "k_shape": _shape(args[1]), "v_shape": _shape(args[2])}
    if name != "_native_multi_head_attention":
        return OpCall(kind=kind, formula_args=shapes, input_shape=q, output_shape=_shape(_first(out)))
    return OpCall(kind=kind, formula_args={**shapes, "embed_dim": int(args[3]), "heads": int(args[4]),
                                           "projections": True, "has_bias": args[6] is not None},
                  input_shape=q, output_shape=_shape(_first(out)), weight_shape=_shape(args[5]))


def free(kind: str, name: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    """Views and copies: nothing to record."""
    return OpCall(kind="free", formula_args={}, input_shape=(), output_shape=())
