"""``ptflops`` and ``ptflops-aten``: ``get_model_complexity_info`` (ptflops 0.7.5), both backends.

``ptflops`` (its default, ``backend="pytorch"``, ``ptflops/pytorch_engine.py`` and ``pytorch_ops.py``):
forward hooks on modules whose type is *exactly* one of its table (no subclasses), plus, for the
duration of the count, ``torch.nn.functional`` and ``torch`` functions replaced by counting wrappers.

* Modules: conv and ``Linear`` MACs **plus their bias adds**; ReLU, PReLU, ELU, LeakyReLU, ReLU6, GELU 1
  per output element; every max/avg/adaptive pool 1 per input element; BatchNorm, InstanceNorm,
  GroupNorm 1 per input element, 2 with affine; LayerNorm 1 (it has no ``affine`` attribute);
  ``MultiheadAttention`` its own formula (see ``_attention``); with timm installed, timm's ViT ``Attention``
  its query scaling, attention products and softmax. Module counts are divided by the batch size (ptflops
  reports them per image). A hooked module's count is its own: hooks of modules under it (timm Attention's
  ``qkv`` and ``proj``) are never added up. A module registered in several places is added once per path
  from the root (``children()`` recursion); the records hold calls, not paths: reconcile shows it as unexplained.
* Functions (counted in full, not divided by the batch): ``F.relu``, ``F.prelu``, ``F.elu``, ``F.gelu``,
  ``F.silu``, ``F.relu6``, every ``F.*pool*``, ``F.softmax`` 1 per input element; ``torch.matmul``,
  ``Tensor.matmul``, ``torch.bmm`` MACs. Modules that call a replaced function are counted twice:
  ``nn.ReLU`` (``F.relu``), ``nn.GELU``, ``nn.PReLU``, ``nn.ELU`` and every pooling module.
  ``F.linear``, ``F.hardtanh``, ``F.hardswish``, ``torch.sigmoid`` and operators (``a + b``, ``a * b``,
  ``a @ b``) are not replaced: 0. The engine records ATen ops, so a functional record is read as
  the usual spelling: ``relu`` as ``F.relu`` (counted), ``add``/``mul`` as operators (not), ``addmm``/``mm``
  as ``F.linear`` (not), ``bmm`` as ``torch.matmul`` (counted), ``hardtanh`` as ``F.hardtanh`` (not). The
  other spellings differ and the records cannot tell them apart: ``x.mul(y)``, ``torch.add``, ``torch.mm``,
  ``torch.addmm``, ``torch.baddbmm`` are replaced (counted); ``a @ b``, ``torch.einsum``, ``Tensor.softmax``
  are not (timm's attention blocks): reconcile shows such a difference as unexplained.

* Interpolation: ``nn.Upsample`` (exact type) the first image's output elements, averaged, and ``F.interpolate``
  (replaced; ``Upsample`` and its subclasses call it) input elements x scale^d, or N x C x the given
  size: 1 per output element for a whole scale factor. ``F.grid_sample`` is not replaced: 0.
* ``F.scaled_dot_product_attention`` is not replaced: 0 (:mod:`.attention`).

``ptflops-aten`` (``backend="aten"``, ``ptflops/aten_engine.py``, ``aten_ops.py``): a dispatch mode
counting ``aten.convolution`` MACs plus bias adds, ``addmm`` MACs plus bias adds, ``mm``, ``bmm`` MACs;
nothing else (``baddbmm`` included). ``nn.MultiheadAttention``'s fused eval path counts 0, and so do SDPA's
CPU kernel and ``nn.LSTM``, which the CPU runs as oneDNN's ``mkldnn_rnn_layer`` (as for FlopCounterMode).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

from mbcost.cost.conventions.attention import CPU_SDPA, SDPA, SDPA_MATH, sdpa_uncounted
from mbcost.cost.conventions.base import Charge, Convention, Handler, Unit, elementwise, macs, numel
from mbcost.cost.conventions.fvcore import (
    MHA_FAST_PATH,
    RECURRENT,
    fast_path_lookup,
    is_adaptive_avg_pool2d,
    multi_head_attention_fast_path,
    recurrent,
)
from mbcost.cost.result import LayerCost

__all__ = ["HIDDEN", "PTFLOPS", "PTFLOPS_ATEN", "TIMM_ATTENTION", "ptflops_rule", "ptflops_scope", "timm_attention"]


# --- the pytorch backend: module hooks --------------------------------------------------------


def _module(kinds: tuple[str, ...], base: str, formula: Handler, *, functional: bool = False) -> Handler:
    """A module hook (its count divided by the batch) for the records of ``kinds`` the module issues;
    ``functional``: its ``forward`` also calls a replaced ``F`` function, counted again in full."""
    def handle(layer: LayerCost) -> Charge:
        if layer.kind not in kinds:
            return Charge(counted=False, reason=f"issued inside {base}; ptflops' hook for it ignores {layer.op}")
        c = formula(layer)
        hook = c.total(Unit.MAC)
        if not functional:
            return Charge(macs=c.macs, ops=c.ops, reason=f"{base} hook: {c.reason}", averaged=hook)
        twice = numel(layer.input_shape)
        return Charge(macs=c.macs, ops=c.ops + twice, averaged=hook,
                      reason=f"{base} hook: {c.reason}; + 1 per input element: its forward calls a replaced F function")
    return handle


_products = macs("MACs + bias adds", bias=True)


def _linear(layer: LayerCost) -> Charge:
    """MACs + bias adds; a non-contiguous input's product is traced as ``mm`` and its bias as an ``add``."""
    if layer.kind == "matmul":
        return _products(layer)
    return Charge(ops=numel(layer.output_shape), reason="bias adds (traced as a separate add)")


_per_output = elementwise(1, "1 per output element", of="output")
_per_input = elementwise(1, "1 per input element")


def _batch_norm(layer: LayerCost) -> Charge:
    per = 2 if layer.facts.affine else 1
    return Charge(ops=per * numel(layer.input_shape),
                  reason=f"{per} per element ({'with' if layer.facts.affine else 'no'} affine)")


def _layer_norm(layer: LayerCost) -> Charge:
    return Charge(ops=numel(layer.input_shape), reason="1 per element (LayerNorm has no 'affine' attribute)")


def _attention(layer: LayerCost) -> Charge:
    """``multihead_attention_counter_hook`` for a self-attention call, L = S: the three input projections and
    the output projection with their biases (the output's always), both attention products, the softmax
    (1 per score) and the query scaling (L x E). The engine sees the scaling of q and of k (SDPA's math
    path), each L x E: each is charged half. A module without bias is off by L x E per call (ptflops counts
    the output projection's bias regardless)."""
    if layer.kind == "matmul":
        return Charge(macs=layer.macs, ops=layer.bias_adds, reason="projections (+ bias) and attention products")
    if layer.kind == "softmax":
        return Charge(ops=numel(layer.input_shape), reason="softmax: 1 per score")
    if layer.op == "mul":
        return Charge(ops=numel(layer.output_shape) // 2, reason="query scaling: L x E (half of the q and k scalings)")
    if layer.op == "add":  # a batch_first input reaches the in-projection transposed: mm, then the bias apart
        return Charge(ops=numel(layer.output_shape), reason="in-projection bias (traced as a separate add)")
    return Charge(counted=False, reason=f"issued inside MultiheadAttention; ptflops' hook ignores {layer.op}")


def _mha(layer: LayerCost) -> Charge:
    c = _attention(layer)
    return Charge(macs=c.macs, ops=c.ops, counted=c.counted, reason=f"MultiheadAttention hook: {c.reason}",
                  averaged=c.total(Unit.MAC))


def _upsample(layer: LayerCost) -> Charge:
    """``nn.Upsample``'s hook and the ``F.interpolate`` its forward calls (in full). The hook counts the
    elements of ``output[0]``, the first image's output, and is then averaged over the batch like every
    module hook."""
    if layer.kind != "interpolate":
        return Charge(counted=False, reason=f"issued inside Upsample; ptflops' hook for it ignores {layer.op}")
    first = numel(layer.output_shape[1:])
    return Charge(ops=numel(layer.output_shape) + first, averaged=first,
                  reason="Upsample hook: the first image's output elements; + 1 per output element: its forward "
                         "calls F.interpolate (replaced)")


_CONVS = "Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d".split()
_POOLS = ("MaxPool1d MaxPool2d MaxPool3d AvgPool1d AvgPool2d AvgPool3d AdaptiveMaxPool1d AdaptiveMaxPool2d "
          "AdaptiveMaxPool3d AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d").split()

_MODULES: dict[str, Handler] = {
    **{b: _module(("conv",), b, _products) for b in _CONVS},
    "Linear": _module(("matmul", "elementwise"), "Linear", _linear),
    **{b: _module(("activation",), b, _per_output, functional=True) for b in "ReLU PReLU ELU GELU".split()},
    **{b: _module(("activation",), b, _per_output) for b in "LeakyReLU ReLU6".split()},
    **{b: _module(("pool", "global_pool"), b, _per_input, functional=True) for b in _POOLS},
    **{b: _module(("batchnorm", "norm"), b, _batch_norm) for b in
       "BatchNorm1d BatchNorm2d BatchNorm3d InstanceNorm1d InstanceNorm2d InstanceNorm3d GroupNorm".split()},
    "LayerNorm": _module(("norm",), "LayerNorm", _layer_norm),
    "MultiheadAttention": _mha,
    "Upsample": _upsample,
}


# --- the pytorch backend: replaced functions ----------------------------------------------------


def _function(name: str) -> Handler:
    def handle(layer: LayerCost) -> Charge:
        return Charge(ops=numel(layer.input_shape), reason=f"{name} (replaced while counting): 1 per input element")
    return handle


def _functional_mean(layer: LayerCost) -> Charge:
    if is_adaptive_avg_pool2d(layer):
        return _function("F.adaptive_avg_pool2d")(layer)
    return Charge(counted=False, reason="Tensor.mean is not replaced")


def _not_replaced(spelling: str) -> Handler:
    def handle(layer: LayerCost) -> Charge:
        return Charge(counted=False, reason=f"functional {layer.op} (read as {spelling}): not replaced, 0")
    return handle


def _interpolate(layer: LayerCost) -> Charge:
    return Charge(ops=numel(layer.output_shape), reason="F.interpolate (replaced): 1 per output element")


_FUNCTIONS: dict[str, Handler | None] = {
    **{op: _function(f"F.{op}") for op in "relu elu gelu silu".split()},
    **dict.fromkeys(("prelu", "_prelu_kernel"), _function("F.prelu")),
    **dict.fromkeys(("max_pool", "avg_pool", "adaptive_pool"),
                    _function("F.max_pool / F.avg_pool / F.adaptive_*_pool")),
    "mean": _functional_mean,
    **dict.fromkeys(("softmax", "_softmax"), _function("F.softmax")),
    **dict.fromkeys(("bmm", "matmul"), macs("torch.matmul / Tensor.matmul / torch.bmm (replaced): MACs")),
    **dict.fromkeys(("addmm", "mm", "linear"), _not_replaced("F.linear")),
    **dict.fromkeys(("add", "mul", "sub", "div"), _not_replaced("an operator, a + b")),
    "hardtanh": _not_replaced("F.hardtanh"),
    "upsample": _interpolate,
    "grid_sampler": _not_replaced("F.grid_sample"),
    **dict.fromkeys((SDPA, SDPA_MATH, CPU_SDPA),
                    sdpa_uncounted("ptflops does not replace F.scaled_dot_product_attention: 0")),
}


#: The key of timm's ViT attention, which ptflops hooks too when timm is installed (``timm_attention_counter_hook``).
TIMM_ATTENTION = "timm Attention"


@cache
def timm_attention() -> str:
    """The qualified name of the class ptflops hooks as timm's ``vision_transformer.Attention`` (defined in
    ``timm.layers.attention`` in recent timm); ``""`` without timm."""
    try:
        from timm.models.vision_transformer import Attention
    except ImportError:
        return ""
    return f"{Attention.__module__}.{Attention.__qualname__}"


def _timm_attention(layer: LayerCost) -> Charge:
    """Per call: the query scaling (one per element of q), both attention products and the softmax (one per
    score), none of them seen as functions (SDPA, ``@``, ``Tensor.softmax``): each product record (or the fused
    kernel) is charged its MACs and its left operand's elements, q for the scores, the scores for the sum."""
    if layer.kind not in ("matmul", "attention"):
        return Charge(counted=False, reason=f"issued inside timm's Attention; ptflops' hook for it ignores {layer.op}")
    ops = numel(layer.input_shape) + (layer.other_ops // 3 if layer.kind == "attention" else 0)
    return Charge(macs=layer.macs, ops=ops, averaged=layer.macs + ops,
                  reason="timm Attention hook: query scaling, attention products and softmax")


_HOOKS: dict[str, Handler] = {**_MODULES, TIMM_ATTENTION: _timm_attention}
#: The key of a record whose module ptflops hooks under a module it hooks too: that hook is never added up.
HIDDEN = "hook under a hooked module"


def ptflops_rule(layer: LayerCost) -> str:
    """The key of a record: its module's class when ptflops hooks that exact type, else its op."""
    if layer.facts.module_is_torch and layer.module_type in _MODULES:
        return layer.module_type
    own = layer.facts.module_class
    return TIMM_ATTENTION if own.startswith("timm.") and own == timm_attention() else layer.op


def _hidden(layer: LayerCost) -> Charge:
    """ptflops sums a hooked module's own count, not its children's: their hooks are lost (a replaced ``F``
    function their forward calls still counts)."""
    c = _HOOKS[ptflops_rule(layer)](layer)
    rest = c.total(Unit.MAC) - c.averaged
    return Charge(ops=rest, counted=bool(rest), reason=f"{layer.module_type} under a module ptflops hooks: its "
                                                       "hook is never added up" + (f" ({c.reason})" if rest else ""))


def ptflops_scope(layers: Sequence[LayerCost]) -> Callable[[LayerCost], str]:
    """``ptflops_rule``, but ``HIDDEN`` for a record of a hooked module under another hooked module."""
    hooked = {layer.module for layer in layers if ptflops_rule(layer) in _HOOKS}

    def lookup(layer: LayerCost) -> str:
        key = ptflops_rule(layer)
        if key in _HOOKS:
            parts = layer.module.split(".") if layer.module else []  # the root has no ancestor
            if any(".".join(parts[:i]) in hooked for i in range(len(parts))):
                return HIDDEN
        return key
    return lookup


def _unseen(layer: LayerCost) -> Charge:
    if layer.facts.module_is_leaf and not layer.facts.module_is_torch:
        return Charge(counted=False, reason=f"{layer.module_type} is not a torch.nn type ptflops hooks (exact types "
                                            "only)")
    return Charge(counted=False, reason=f"ptflops has no hook for {layer.module_type} and does not replace "
                                        f"{layer.op}")


PTFLOPS = Convention(
    name="ptflops", unit=Unit.MAC, library_unit="MACs + counted elementwise ops (ptflops' MACs)",
    summary="ptflops (pytorch backend): conv/Linear MACs + bias adds + BatchNorm (2/elem with affine) + ReLU "
            "(2/elem: hook and F.relu) + pools (2/input elem); module hooks averaged over the batch",
    table={**_HOOKS, **_FUNCTIONS, HIDDEN: _hidden}, default=_unseen, lookup=ptflops_rule, counts_bias=True,
    scope=ptflops_scope,
)


# --- the aten backend -------------------------------------------------------------------------


def _no_mapping(layer: LayerCost) -> Charge:
    op = layer.op if "::" in layer.op else f"aten.{layer.op}"
    return Charge(counted=False, reason=f"ptflops' aten backend has no mapping for {op}")


_ATEN: dict[str, Handler | None] = {
    "conv": macs("aten.convolution: MACs + bias adds", bias=True),
    "addmm": macs("aten.addmm: MACs + bias adds", bias=True),
    **dict.fromkeys(("mm", "bmm", "matmul"), macs("aten.mm / bmm: MACs")),
    MHA_FAST_PATH: multi_head_attention_fast_path("ptflops' aten backend"),
    **dict.fromkeys((SDPA, CPU_SDPA), sdpa_uncounted(
        f"ptflops' aten backend has no mapping for aten.{CPU_SDPA}, the kernel SDPA runs as on the CPU: 0")),
}
_ATEN[RECURRENT] = recurrent("ptflops' aten backend", _ATEN, _no_mapping)

PTFLOPS_ATEN = Convention(
    name="ptflops-aten", unit=Unit.MAC, library_unit="MACs + bias adds (ptflops' MACs)",
    summary="ptflops (aten backend): MACs of aten convolution, addmm, mm, bmm, + bias adds of convolution "
            "and addmm; nothing else",
    table=_ATEN, default=_no_mapping, lookup=fast_path_lookup, counts_bias=True,
)
