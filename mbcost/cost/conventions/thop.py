"""``thop``: ``thop.profile`` (ultralytics-thop 2.2 ``thop/profile.py``, ``thop/vision/basic_hooks.py``).

Forward hooks per module type, the rule found by walking the module's MRO: conv and ``Linear`` MACs
(bias ignored); norms (``_NormBase``, ``LayerNorm``, ``GroupNorm``, ``RMSNorm``) 2 per input element,
4 with affine; ``AdaptiveAvgPool*`` one add per pooled input plus one divide per output; ``AvgPool*``
one add per element of every (clipped) window plus one divide per output; ``PReLU`` 1 per element;
softmax ``3n - 1`` per row of n; ``MultiheadAttention`` its projections and both attention products
(MACs) plus the softmax; ``Upsample`` (and its subclasses) a count per output element by mode (nearest 0,
linear 5, bilinear 11, bicubic 259, trilinear 31); ReLU, ReLU6, LeakyReLU, max pooling, dropout,
containers, views 0. Modules with no rule (Hardswish, SiLU, a custom block) count 0 and functional calls
inside ``forward`` (residual ``add``, ``F.relu``, ``F.conv2d``) are not seen, except matrix products
(``matmul``, ``@``, ``F.linear``, ``bmm``, and ``F.scaled_dot_product_attention``'s two products) run
outside a module that has a counting rule of its own.
"""

from __future__ import annotations

from math import prod

from mbcost.cost.conventions.base import Charge, Convention, Handler, Unit, numel
from mbcost.cost.result import LayerCost

__all__ = ["THOP", "thop_rule"]


def _for_kinds(kinds: tuple[str, ...], base: str, formula: Handler) -> Handler:
    """A module rule: ``formula`` for the records of ``kinds`` the module issues; its other ops count 0."""
    def handle(layer: LayerCost) -> Charge:
        if layer.kind in kinds:
            return formula(layer)
        return Charge(counted=False, reason=f"issued inside {base}; thop's rule for it ignores {layer.op}")
    return handle


def _products(layer: LayerCost) -> Charge:
    rule = "conv" if layer.kind == "conv" else "linear"
    return Charge(macs=layer.macs, reason=f"thop {rule} MACs, bias ignored")


def _norm(layer: LayerCost) -> Charge:
    per = 4 if layer.facts.affine else 2
    return Charge(ops=per * numel(layer.input_shape),
                  reason=f"thop norm: {per} per element ({'with' if layer.facts.affine else 'no'} affine)")


def _prelu(layer: LayerCost) -> Charge:
    return Charge(ops=numel(layer.input_shape), reason="thop PReLU: 1 per element")


def _softmax_ops(rows: int, n: int) -> int:
    """thop's ``calculate_softmax``: per row of n, n exps, n - 1 adds, n divides."""
    return rows * (3 * n - 1) if n else 0


def _softmax(base: str) -> Handler:
    def handle(layer: LayerCost) -> Charge:  # along the last axis assumed (Softmax2d: channels)
        x = layer.input_shape
        n = (x[-3] if base == "Softmax2d" else x[-1]) if x else 1
        rows = numel(x) // n if n else 0
        extra = numel(x) if base == "Softmin" else rows if base == "LogSoftmax" else 0
        return Charge(ops=_softmax_ops(rows, n) + extra, reason="thop softmax: 3n-1 per row of n (last axis assumed)")
    return handle


def _avg_windows(layer: LayerCost) -> int:
    """Total size of the (clipped) windows an average pool sums, over the pooled axes."""
    kernel, stride, padding = layer.kernel or (), layer.stride or (), layer.padding or ()
    dims = len(kernel)
    x, y = layer.input_shape, layer.output_shape
    windows = 1
    axes = zip(x[-dims:], y[-dims:], kernel, stride, padding, strict=True)  # type: ignore[arg-type]
    for size, out, k, s, p in axes:
        lower, upper = (-p, size + p) if layer.facts.count_include_pad is not False else (0, size)
        windows *= sum(max(min(i * s - p + k, upper) - max(i * s - p, lower), 0) for i in range(out))
    return prod(x[:-dims]) * windows


def _avgpool(layer: LayerCost) -> Charge:
    return Charge(ops=_avg_windows(layer) + numel(layer.output_shape),
                  reason="thop avg pool: 1 add per window element + 1 divide per output")


def _adaptive_windows(size: int, out: int) -> int:
    """Total length of the windows adaptive pooling slices along one axis."""
    if size == out:
        return out
    return sum(-(-(j + 1) * size // out) - j * size // out for j in range(out))


def _adaptive_avgpool(layer: LayerCost) -> Charge:
    x, y = layer.input_shape, layer.output_shape
    total = prod(_adaptive_windows(i, o) for i, o in zip(x, y, strict=True)) + numel(y)
    return Charge(ops=total, reason="thop adaptive avg pool: 1 add per pooled input + 1 divide per output")


def _attention(layer: LayerCost) -> Charge:
    """``count_multihead_attention``: projections and both attention products (MACs), plus the softmax."""
    if layer.kind == "matmul":
        return Charge(macs=layer.macs, reason="thop MultiheadAttention: projections and attention products")
    if layer.kind == "softmax":
        x = layer.input_shape
        return Charge(ops=_softmax_ops(numel(x) // x[-1], x[-1]), reason="thop MultiheadAttention: softmax, 3n-1 "
                                                                          "per row of n")
    return Charge(counted=False, reason=f"issued inside MultiheadAttention; thop's rule for it ignores {layer.op}")


def _zero(base: str) -> Handler:
    def handle(layer: LayerCost) -> Charge:
        if layer.kind == "matmul":  # a functional product: thop's function counter sees it
            return _functional(layer)
        return Charge(counted=False, reason=f"thop's rule for {base} charges 0")
    return handle


def _functional(layer: LayerCost) -> Charge:
    """No module rule: thop's function counter sees matrix products only (``F.scaled_dot_product_attention``:
    its two products, whether the engine recorded the fused kernel or its math path's ``bmm``)."""
    if layer.kind == "matmul":
        return Charge(macs=layer.macs, reason="thop functional matrix product: MACs, bias ignored")
    if layer.kind == "attention" and layer.op != "_native_multi_head_attention":
        return Charge(macs=layer.macs, reason="thop functional scaled_dot_product_attention: both products")
    if layer.facts.module_is_leaf:
        return Charge(counted=False, reason=f"thop has no rule for {layer.module_type}")
    return Charge(counted=False, reason=f"functional {layer.op} in {layer.module_type}.forward: thop does not see it")


_ZERO = ("_ConstantPadNd _ReflectionPadNd _ReplicationPadNd _CircularPadNd _DropoutNd ReLU ReLU6 LeakyReLU MaxPool1d "
         "MaxPool2d MaxPool3d AdaptiveMaxPool1d AdaptiveMaxPool2d AdaptiveMaxPool3d FractionalMaxPool2d "
         "FractionalMaxPool3d _MaxUnpoolNd Sequential ModuleList ModuleDict ParameterList ParameterDict Identity "
         "Flatten Unflatten Unfold PixelShuffle PixelUnshuffle ChannelShuffle Embedding").split()
_OTHER = "Bilinear RNNCell GRUCell LSTMCell RNN GRU LSTM".split()
#: ``count_upsample``: ops per output element by interpolation mode (the mode read from the op).
_UPSAMPLE_OPS = {"linear1d": 5, "bilinear2d": 11, "bicubic2d": 259, "trilinear3d": 31}


def _upsample(layer: LayerCost) -> Charge:
    """thop's ``count_upsample``: a fixed count per output element by mode (nearest 0)."""
    if layer.kind != "interpolate":
        return Charge(counted=False, reason=f"issued inside {layer.module_type}; thop's rule for it ignores "
                                            f"{layer.op}")
    per = _UPSAMPLE_OPS.get(layer.op.removeprefix("upsample_"), 0)
    return Charge(ops=per * numel(layer.output_shape), reason=f"thop count_upsample: {per} per output element")


def _other(base: str) -> Handler:
    def handle(layer: LayerCost) -> Charge:
        return Charge(counted=False, reason=f"thop counts {base} with its own rule (not reproduced)")
    return handle


#: ``torch.nn`` class -> rule, as ``thop.profile.register_hooks`` registers them. A module's rule is
#: the first of its MRO classes found here; a module with none falls to the functional rule.
_TABLE: dict[str, Handler | None] = {
    **{b: _for_kinds(("conv",), b, _products) for b in
       "Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d".split()},
    "Linear": _for_kinds(("matmul",), "Linear", _products),
    **{b: _for_kinds(("batchnorm", "norm"), b, _norm) for b in "_NormBase LayerNorm GroupNorm RMSNorm".split()},
    "PReLU": _for_kinds(("activation",), "PReLU", _prelu),
    **{b: _for_kinds(("softmax",), b, _softmax(b)) for b in "Softmax LogSoftmax Softmin Softmax2d".split()},
    **{b: _for_kinds(("pool",), b, _avgpool) for b in "AvgPool1d AvgPool2d AvgPool3d".split()},
    **{b: _for_kinds(("global_pool",), b, _adaptive_avgpool) for b in
       "AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d".split()},
    "MultiheadAttention": _attention,
    "Upsample": _upsample,
    **{b: _other(b) for b in _OTHER},
    **{b: _zero(b) for b in _ZERO},
}


def thop_rule(layer: LayerCost) -> str:
    """The ``torch.nn`` class whose thop rule applies to the module that issued ``layer`` (``""``: none)."""
    for base in layer.facts.torch_bases:
        if base in _TABLE:
            return base
    return ""


THOP = Convention(
    name="thop", unit=Unit.MAC, library_unit="MACs + counted elementwise ops (thop's ops)",
    summary="thop.profile: conv/Linear MACs + BatchNorm (4/elem with affine) + adaptive avg pool "
            "(1/input + 1/output elem); ReLU/ReLU6/max pool 0; functional ops unseen",
    table=_TABLE, default=_functional, lookup=thop_rule,
)
