"""Adapters from ATen op calls to the cost formulas' arguments.

The shape walker sees every ATen op a forward pass issues (on the meta device, so nothing is
computed). This module says which layer kind each op is and turns its arguments into the
shapes a formula takes. It holds no arithmetic: that lives in :mod:`mbcost.cost.formulas`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["OP_ADAPTERS", "OpCall", "Shape", "is_inplace", "op_name"]

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


def _shape(t: Any) -> Shape:
    return tuple(t.shape)


def _tuple(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    return v * n if len(v) == 1 and n > 1 else v


def _first_tensor_out(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def _arg(args: Sequence[Any], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


# --- adapters -----------------------------------------------------------------------------


def _conv(layout: str) -> Callable[..., OpCall]:
    """Factory for the convolution family; ``layout`` names the argument order."""

    def adapt(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
        x, w = args[0], args[1]
        bias = _arg(args, kwargs, 2, "bias")
        n = w.dim() - 2
        if layout == "convolution":  # (x, w, b, stride, padding, dilation, transposed, output_padding, groups)
            stride, padding, dilation = args[3], args[4], args[5]
            transposed, groups = bool(args[6]), int(args[8])
        elif layout == "conv":  # conv2d(x, w, b, stride, padding, dilation, groups)
            stride = _arg(args, kwargs, 3, "stride", 1)
            padding = _arg(args, kwargs, 4, "padding", 0)
            dilation = _arg(args, kwargs, 5, "dilation", 1)
            groups, transposed = int(_arg(args, kwargs, 6, "groups", 1)), False
        else:  # conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
            stride = _arg(args, kwargs, 3, "stride", 1)
            padding = _arg(args, kwargs, 4, "padding", 0)
            groups = int(_arg(args, kwargs, 6, "groups", 1))
            dilation = _arg(args, kwargs, 7, "dilation", 1)
            transposed = True
        o = _first_tensor_out(out)
        w_shape = _shape(w)
        return OpCall(
            kind="conv",
            formula_args={
                "x_shape": _shape(x),
                "w_shape": w_shape,
                "out_shape": _shape(o),
                "transposed": transposed,
                "has_bias": bias is not None,
            },
            input_shape=_shape(x),
            output_shape=_shape(o),
            weight_shape=w_shape,
            kernel=w_shape[2:],
            stride=_tuple(stride, n),
            padding=padding if isinstance(padding, str) else _tuple(padding, n),
            dilation=_tuple(dilation, n),
            groups=groups,
        )

    return adapt


def _matmul(a_index: int, b_index: int, bias_index: int | None, linear: bool = False) -> Callable[..., OpCall]:
    def adapt(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
        a, b = args[a_index], args[b_index]
        bias = None if bias_index is None else _arg(args, kwargs, bias_index, "bias")
        o = _first_tensor_out(out)
        b_shape = _shape(b)
        if linear:  # weight is [out_features, in_features]
            b_shape = b_shape[::-1]
        return OpCall(
            kind="matmul",
            formula_args={
                "a_shape": _shape(a),
                "b_shape": b_shape,
                "out_shape": _shape(o),
                "has_bias": bias is not None,
            },
            input_shape=_shape(a),
            output_shape=_shape(o),
            weight_shape=b_shape,  # the right operand as multiplied: (in_features, out_features)
        )

    return adapt


def _unary_call(kind: str, args: Sequence[Any], out: Any, shape_arg: str, affine: bool | None = None) -> OpCall:
    x_shape, o_shape = _shape(args[0]), _shape(_first_tensor_out(out))
    return OpCall(kind=kind, formula_args={shape_arg: x_shape if shape_arg == "x_shape" else o_shape},
                  input_shape=x_shape, output_shape=o_shape, affine=affine)


def _unary(kind: str, shape_arg: str) -> Callable[..., OpCall]:
    def adapt(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
        return _unary_call(kind, args, out, shape_arg)

    return adapt


def _norm(kind: str, weight_index: int) -> Callable[..., OpCall]:
    """Norm ops: cost from the input shape; ``affine`` when the op got a weight (scale)."""

    def adapt(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
        return _unary_call(kind, args, out, "x_shape", affine=_arg(args, kwargs, weight_index, "weight") is not None)

    return adapt


def _batch_norm(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    """BatchNorm ops: ``affine`` when the op got a weight (argument 1); ``training`` when it normalised with
    the batch's own statistics: the op's one bool argument (none in ``..._no_training``)."""
    x_shape = _shape(args[0])
    training = next((a for a in args if isinstance(a, bool)), bool(kwargs.get("training", False)))
    return OpCall(kind="batchnorm", formula_args={"x_shape": x_shape}, input_shape=x_shape,
                  output_shape=_shape(_first_tensor_out(out)),
                  affine=_arg(args, kwargs, 1, "weight") is not None, training=training)


def _interpolate(points: int) -> Callable[..., OpCall]:
    """``upsample_*`` ops: every output element blends ``points`` source values."""
    def adapt(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
        x, o = _shape(args[0]), _shape(_first_tensor_out(out))
        return OpCall(kind="interpolate", formula_args={"out_shape": o, "points": points}, input_shape=x,
                      output_shape=o)
    return adapt


def _grid_sampler(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    """``grid_sampler_2d/3d(input, grid, interpolation_mode, padding_mode, align_corners)``: mode 0 is
    (bi/tri)linear (4 source values in 2-D, 8 in 3-D), 1 nearest (0), 2 bicubic (16, 2-D only)."""
    x, o = _shape(args[0]), _shape(_first_tensor_out(out))
    mode = int(_arg(args, kwargs, 2, "interpolation_mode", 0))
    points = {0: 2 ** (len(x) - 2), 1: 0, 2: 16}.get(mode, 0)
    return OpCall(kind="interpolate", formula_args={"out_shape": o, "points": points}, input_shape=x,
                  output_shape=o, weight_shape=_shape(args[1]))


def _pool(average: bool) -> Callable[..., OpCall]:
    def adapt(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
        x, o = args[0], _first_tensor_out(out)
        n = x.dim() - 2
        kernel = _tuple(_arg(args, kwargs, 1, "kernel_size"), n)
        stride = _arg(args, kwargs, 2, "stride") or kernel
        padding = _arg(args, kwargs, 3, "padding", 0)
        return OpCall(
            kind="pool",
            formula_args={"out_shape": _shape(o), "kernel": kernel},
            input_shape=_shape(x),
            output_shape=_shape(o),
            kernel=kernel,
            stride=_tuple(stride, n),
            padding=_tuple(padding, n),
            count_include_pad=bool(_arg(args, kwargs, 5, "count_include_pad", True)) if average else None,
        )

    return adapt


def _binary(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    o = _first_tensor_out(out)
    x = args[0]
    return OpCall(kind="elementwise", formula_args={"out_shape": _shape(o)},
                  input_shape=_shape(x) if hasattr(x, "shape") else (), output_shape=_shape(o))


def _sdpa(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    """Fused scaled dot-product attention kernels: ``(q, k, v, ...)``, heads in the leading dims."""
    q, k, v = args[0], args[1], args[2]
    o = _first_tensor_out(out)
    return OpCall(kind="attention", formula_args={"q_shape": _shape(q), "k_shape": _shape(k), "v_shape": _shape(v)},
                  input_shape=_shape(q), output_shape=_shape(o))


def _native_mha(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    """``_native_multi_head_attention(q, k, v, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight,
    proj_bias, ...)``: nn.MultiheadAttention's fused eval path, projections included."""
    q, k, v = args[0], args[1], args[2]
    o = _first_tensor_out(out)
    qkv_weight = args[5]
    return OpCall(kind="attention",
                  formula_args={"q_shape": _shape(q), "k_shape": _shape(k), "v_shape": _shape(v),
                                "embed_dim": int(args[3]), "heads": int(args[4]), "projections": True,
                                "has_bias": args[6] is not None},
                  input_shape=_shape(q), output_shape=_shape(o), weight_shape=_shape(qkv_weight))


def _free(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall(kind="free", formula_args={}, input_shape=(), output_shape=())


# --- the op table -------------------------------------------------------------------------

#: ATen op name (overload packet, in-place trailing underscore removed) -> adapter.
OP_ADAPTERS: dict[str, Callable[..., OpCall]] = {}


def _register(names: str, adapter: Callable[..., OpCall]) -> None:
    for name in names.split():
        if name in OP_ADAPTERS:
            raise ValueError(f"op {name!r} registered twice")
        OP_ADAPTERS[name] = adapter


_register("convolution _convolution convolution_overrideable cudnn_convolution mkldnn_convolution",
          _conv("convolution"))
_register("conv1d conv2d conv3d", _conv("conv"))
_register("conv_transpose1d conv_transpose2d conv_transpose3d", _conv("conv_transpose"))
_register("mm bmm mv dot", _matmul(0, 1, None))
_register("addmm baddbmm", _matmul(1, 2, 0))
_register("matmul", _matmul(0, 1, None))
_register("linear", _matmul(0, 1, 2, linear=True))
# The weight (BatchNorm's and InstanceNorm's scale) is argument 1 of these ops...
_register(
    "batch_norm native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_no_training "
    "cudnn_batch_norm miopen_batch_norm _batch_norm_impl_index",
    _batch_norm,
)
# ...argument 2 of layer_norm(x, normalized_shape, weight, ...) and group_norm(x, groups, weight, ...),
# argument 1 of native_group_norm(x, weight, bias, N, C, HxW, group, eps) and instance_norm.
_register("layer_norm native_layer_norm group_norm", _norm("norm", 2))
_register("native_group_norm instance_norm", _norm("norm", 1))
_register(
    "relu relu6 hardtanh sigmoid tanh hardswish hardsigmoid silu gelu leaky_relu elu selu mish "
    "clamp clamp_min clamp_max threshold prelu _prelu_kernel softplus",
    _unary("activation", "out_shape"),
)
_register("max_pool1d max_pool2d max_pool3d max_pool2d_with_indices max_pool3d_with_indices", _pool(False))
_register("avg_pool1d avg_pool2d avg_pool3d", _pool(True))
_register("adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d "
          "_adaptive_avg_pool3d adaptive_max_pool2d mean sum", _unary("global_pool", "x_shape"))
_register("add sub mul div rsub maximum minimum", _binary)
_register("_scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_flash_attention "
          "_scaled_dot_product_efficient_attention _scaled_dot_product_cudnn_attention "
          "_scaled_dot_product_attention_math", _sdpa)
_register("_native_multi_head_attention", _native_mha)
_register("softmax _softmax log_softmax _log_softmax _safe_softmax", _unary("softmax", "x_shape"))
_register("upsample_nearest1d upsample_nearest2d upsample_nearest3d _upsample_nearest_exact1d "
          "_upsample_nearest_exact2d _upsample_nearest_exact3d", _interpolate(0))
_register("upsample_linear1d", _interpolate(2))
_register("upsample_bilinear2d", _interpolate(4))
_register("upsample_trilinear3d", _interpolate(8))
_register("upsample_bicubic2d", _interpolate(16))
_register("grid_sampler_2d grid_sampler_3d", _grid_sampler)
_register(
    "view _unsafe_view reshape flatten t transpose permute detach clone contiguous expand squeeze "
    "unsqueeze alias slice select split split_with_sizes chunk cat stack empty empty_like empty_strided "
    "zeros zeros_like ones ones_like fill copy _to_copy to dropout feature_dropout alpha_dropout "
    "lift_fresh unbind narrow as_strided new_empty new_zeros new_ones _reshape_alias size stride "
    "sym_size sym_stride is_same_size bernoulli native_dropout",
    _free,
)
# the splits an RNN cell makes of its gates (views, as ``split``)
_register("unsafe_split unsafe_split_with_sizes unsafe_chunk", _free)


def op_name(func: Any) -> str:
    """The table key of an ATen overload: ``aten.relu_.default`` -> ``relu``."""
    name = func.overloadpacket.__name__
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return name


def is_inplace(func: Any) -> bool:
    name = func.overloadpacket.__name__
    return name.endswith("_") and not name.endswith("__")
