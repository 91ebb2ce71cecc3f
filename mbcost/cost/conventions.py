"""Counting conventions: what each well-known counter counts, as tables of rules over layer records.

The engine counts every op once, in the ``paper`` convention (see :mod:`mbcost.cost.formulas`).
The other counters in the field disagree with it, and with each other, only in *what* they
count and *how*, never in the shapes: a convention re-reads the engine's ``LayerCost`` records
and charges each one what that counter would. ``apply_convention(cost, "fvcore")`` therefore
reproduces fvcore's total from formulas, with nothing run, and says for every op whether the
counter counts it and, when it does not, what it would have cost (``skipped``).

The rules were read from the libraries' own source (fvcore 0.1.5 ``fvcore/nn/jit_handles.py``
and ``flop_count.py``; ultralytics-thop 2.2 ``thop/profile.py`` and ``thop/vision``; torch
``torch/utils/flop_counter.py``):

* ``paper``: multiply-accumulates of convolutions and matrix products, bias excluded (the
  MobileNet papers' Mult-Adds). Everything else is elementwise work, reported apart.
* ``fvcore`` (``FlopCountAnalysis``, traced with ``torch.jit``): one "flop" per MAC of
  ``aten::_convolution``, ``addmm``, ``linear``, ``matmul``, ``mm``, ``bmm`` (bias ignored); eval
  ``batch_norm`` 1 per input element, 2 with an affine scale; ``layer_norm``/``group_norm``/
  ``instance_norm`` 4 per element, 5 with affine; ``adaptive_avg_pool2d`` 1 per input element.
  ``relu`` and ``clamp`` are ignored; every other op (``hardtanh_`` = ReLU6, ``add``,
  ``max_pool2d``, ``mean``...) has no handle and counts 0 (fvcore lists it as unsupported).
* ``thop`` (``thop.profile``, forward hooks per module type, the rule found by walking the
  module's MRO): conv and ``Linear`` MACs (bias ignored); norms (``_NormBase``, ``LayerNorm``,
  ``GroupNorm``) 2 per input element, 4 with affine; ``AdaptiveAvgPool*`` one add per pooled
  input plus one divide per output; ``AvgPool*`` one add per element of every (clipped) window
  plus one divide per output; ``PReLU`` 1 per element; ReLU, ReLU6, LeakyReLU, max pooling,
  dropout, containers, views 0. Modules with no rule (Hardswish, SiLU, a custom block) count 0
  and functional calls inside ``forward`` (residual ``add``, ``F.relu``, ``F.conv2d``) are not
  seen, except matrix products (``matmul``, ``@``, ``F.linear``, ``bmm``) run outside a module
  that has a counting rule.
* ``torch`` (``torch.utils.flop_counter.FlopCounterMode``): FLOPs, 2 per MAC, of convolutions
  and matrix products (``mm``, ``addmm``, ``bmm``, ``baddbmm``), bias ignored; nothing else.

No counter counts bias adds; they are listed with the skipped ops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from math import prod
from typing import Any

from mbcost.cost.result import CATEGORIES, LayerCost, ModelCost, UncountedOp

CONVENTIONS: tuple[str, ...] = ("paper", "fvcore", "thop", "torch")
MACS = "MACs"
FLOPS = "FLOPs"


@dataclass(frozen=True)
class Treatment:
    """What a convention charges for one record, in its unit, and why."""

    amount: int
    counted: bool
    reason: str


@dataclass(frozen=True)
class Convention:
    """A counting convention: its unit, a one-line statement, and the rule applied to each record."""

    name: str
    unit: str
    summary: str
    treat: Callable[[LayerCost], Treatment]


# --- shared pieces ---------------------------------------------------------------------------


def _numel(shape: tuple[int, ...]) -> int:
    return prod(shape)


def _mac_units(layer: LayerCost, unit: str) -> int:
    return 2 * layer.macs if unit == FLOPS else layer.macs


# --- paper -----------------------------------------------------------------------------------


def _paper(layer: LayerCost) -> Treatment:
    if layer.kind in ("conv", "matmul"):
        return Treatment(layer.macs, True, "multiply-accumulates (the papers' Mult-Adds)")
    return Treatment(0, False, "not a Mult-Add: reported apart as elementwise ops")


# --- fvcore ----------------------------------------------------------------------------------

_FVCORE_IGNORED = frozenset({"relu", "clamp"})  # in fvcore's _IGNORED_OPS: counted as nothing, not listed


def _fvcore_adaptive_avg_pool2d(layer: LayerCost) -> bool:
    """Whether the traced graph fvcore sees holds ``aten::adaptive_avg_pool2d`` for this record.

    An ``nn.AdaptiveAvgPool2d`` does; other pooling modules (1d/3d, max) do not. A functional
    call shows up in the records as ``_adaptive_avg_pool2d`` or, for a 1x1 output, as a
    ``mean`` that keeps the 4-D shape (what ``F.adaptive_avg_pool2d(x, 1)`` dispatches to).
    """
    if "AdaptiveAvgPool2d" in layer.torch_bases:
        return True
    if layer.module_is_leaf and any(b.startswith(("AdaptiveAvgPool", "AdaptiveMaxPool")) for b in layer.torch_bases):
        return False
    x, y = layer.input_shape, layer.output_shape
    if layer.op == "_adaptive_avg_pool2d":
        return True
    return layer.op == "mean" and len(x) == len(y) == 4 and y[2:] == (1, 1)


def _fvcore(layer: LayerCost) -> Treatment:
    kind = layer.kind
    if kind == "conv":
        return Treatment(layer.macs, True, "aten::_convolution: 1 flop per MAC, bias ignored")
    if kind == "matmul":
        if layer.op == "baddbmm":
            return Treatment(0, False, "fvcore has no handle for aten::baddbmm")
        return Treatment(layer.macs, True, "addmm/linear/matmul/bmm: 1 flop per MAC, bias ignored")
    if kind == "batchnorm" and "_InstanceNorm" not in layer.torch_bases:
        per = 2 if layer.affine else 1
        return Treatment(per * _numel(layer.input_shape), True,
                         f"eval batch_norm: {per} per element ({'with' if layer.affine else 'no'} affine)")
    if kind in ("batchnorm", "norm"):
        per = 5 if layer.affine else 4
        return Treatment(per * _numel(layer.input_shape), True,
                         f"layer/group/instance norm: {per} per element")
    if kind == "global_pool" and _fvcore_adaptive_avg_pool2d(layer):
        return Treatment(_numel(layer.input_shape), True, "adaptive_avg_pool2d: 1 per input element")
    if layer.op in _FVCORE_IGNORED:
        return Treatment(0, False, f"fvcore ignores aten::{layer.op}")
    return Treatment(0, False, f"fvcore has no handle for aten::{layer.op} (listed as unsupported)")


# --- thop ------------------------------------------------------------------------------------

#: ``torch.nn`` class -> thop rule, as ``thop.profile.register_hooks`` registers them. A module's
#: rule is the first of its MRO classes found here; a module with none has no rule.
THOP_RULES: dict[str, str] = {
    **dict.fromkeys(["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"], "conv"),
    **dict.fromkeys(["_NormBase", "LayerNorm", "GroupNorm", "RMSNorm"], "norm"),
    "PReLU": "prelu",
    **dict.fromkeys(["Softmax", "LogSoftmax", "Softmin", "Softmax2d"], "softmax"),
    **dict.fromkeys(["AvgPool1d", "AvgPool2d", "AvgPool3d"], "avgpool"),
    **dict.fromkeys(["AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d"], "adaptive_avgpool"),
    "Linear": "linear",
    **dict.fromkeys(["Bilinear", "Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d", "RNNCell", "GRUCell",
                     "LSTMCell", "RNN", "GRU", "LSTM", "MultiheadAttention"], "other"),
    "Embedding": "zero",
    **dict.fromkeys(["_ConstantPadNd", "_ReflectionPadNd", "_ReplicationPadNd", "_CircularPadNd", "_DropoutNd",
                     "ReLU", "ReLU6", "LeakyReLU", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AdaptiveMaxPool1d",
                     "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "FractionalMaxPool2d", "FractionalMaxPool3d",
                     "_MaxUnpoolNd", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
                     "Identity", "Flatten", "Unflatten", "Unfold", "PixelShuffle", "PixelUnshuffle",
                     "ChannelShuffle"], "zero"),
}

#: thop rule -> the layer kind its formula charges (other kinds the module issues are ignored).
_THOP_RULE_KIND = {"conv": "conv", "linear": "matmul", "norm": ("batchnorm", "norm"), "prelu": "activation",
                   "softmax": "softmax", "avgpool": "pool", "adaptive_avgpool": "global_pool"}


def thop_rule(layer: LayerCost) -> tuple[str, str] | None:
    """``(class name, rule)`` thop applies to the module that issued ``layer``, or ``None``."""
    for base in layer.torch_bases:
        if base in THOP_RULES:
            return base, THOP_RULES[base]
    return None


def _adaptive_windows(size: int, out: int) -> int:
    """Total length of the windows adaptive pooling slices along one axis."""
    if size == out:
        return out
    return sum(-(-(j + 1) * size // out) - j * size // out for j in range(out))


def _avg_windows(layer: LayerCost) -> int:
    """Total size of the (clipped) windows an average pool sums, over the pooled axes."""
    kernel, stride, padding = layer.kernel or (), layer.stride or (), layer.padding or ()
    dims = len(kernel)
    x, y = layer.input_shape, layer.output_shape
    windows = 1
    axes = zip(x[-dims:], y[-dims:], kernel, stride, padding, strict=True)  # type: ignore[arg-type]
    for size, out, k, s, p in axes:
        lower, upper = (-p, size + p) if layer.count_include_pad is not False else (0, size)
        windows *= sum(max(min(i * s - p + k, upper) - max(i * s - p, lower), 0) for i in range(out))
    return prod(x[:-dims]) * windows


def _thop_formula(rule: str, base: str, layer: LayerCost) -> tuple[int, str]:
    x, y = layer.input_shape, layer.output_shape
    if rule in ("conv", "linear"):
        return layer.macs, f"{rule} MACs, bias ignored"
    if rule == "norm":
        per = 4 if layer.affine else 2
        return per * _numel(x), f"norm: {per} per element ({'with' if layer.affine else 'no'} affine)"
    if rule == "prelu":
        return _numel(x), "PReLU: 1 per element"
    if rule == "softmax":  # exp, add, divide along the axis: the last one assumed (Softmax2d: channels)
        n = (x[-3] if base == "Softmax2d" else x[-1]) if x else 1
        rows = _numel(x) // n if n else 0
        extra = _numel(x) if base == "Softmin" else rows if base == "LogSoftmax" else 0
        return rows * (3 * n - 1 if n else 0) + extra, "softmax: 3n-1 per row of n (last axis assumed)"
    if rule == "avgpool":
        return _avg_windows(layer) + _numel(y), "avg pool: 1 add per window element + 1 divide per output"
    if rule == "adaptive_avgpool":
        total = prod(_adaptive_windows(i, o) for i, o in zip(x, y, strict=True)) + _numel(y)
        return total, "adaptive avg pool: 1 add per pooled input + 1 divide per output"
    raise ValueError(f"no thop formula for rule {rule!r}")


def _thop(layer: LayerCost) -> Treatment:
    found = thop_rule(layer)
    base, rule = found if found else (layer.module_type, None)
    expected = _THOP_RULE_KIND.get(rule or "")
    if expected is not None:  # a module with a counting rule: its rule is all thop counts for it
        if layer.kind == expected or (isinstance(expected, tuple) and layer.kind in expected):
            amount, why = _thop_formula(rule, base, layer)  # type: ignore[arg-type]
            return Treatment(amount, True, f"thop {why}")
        return Treatment(0, False, f"issued inside {base}; thop's rule for it ignores {layer.op}")
    if rule == "other":
        return Treatment(0, False, f"thop counts {base} with its own rule (not reproduced)")
    if layer.kind == "matmul":  # thop's function counter sees products outside every ruled module
        return Treatment(layer.macs, True, "thop functional matrix product: MACs, bias ignored")
    if rule == "zero":
        return Treatment(0, False, f"thop's rule for {base} charges 0")
    if layer.module_is_leaf:
        return Treatment(0, False, f"thop has no rule for {layer.module_type}")
    return Treatment(0, False, f"functional {layer.op} in {layer.module_type}.forward: thop does not see it")


# --- torch -----------------------------------------------------------------------------------


def _torch(layer: LayerCost) -> Treatment:
    if layer.kind in ("conv", "matmul"):
        return Treatment(2 * layer.macs, True, "2 FLOPs per MAC, bias ignored")
    return Treatment(0, False, "FlopCounterMode counts only convolutions and matrix products")


#: The convention table.
REGISTRY: dict[str, Convention] = {
    "paper": Convention("paper", MACS, "MACs of conv and linear layers, bias excluded (the papers' Mult-Adds)",
                        _paper),
    "fvcore": Convention("fvcore", MACS,
                         "fvcore FlopCountAnalysis: conv/linear MACs + eval BatchNorm (2/elem with affine) + "
                         "adaptive_avg_pool2d (1/input elem); ReLU6, adds, max pool uncounted", _fvcore),
    "thop": Convention("thop", MACS,
                       "thop.profile: conv/Linear MACs + BatchNorm (4/elem with affine) + adaptive avg pool "
                       "(1/input + 1/output elem); ReLU/ReLU6/max pool 0; functional ops unseen", _thop),
    "torch": Convention("torch", FLOPS,
                        "torch FlopCounterMode: FLOPs = 2 x MACs of convolutions and matrix products only", _torch),
}


def get_convention(name: str) -> Convention:
    from mbcost.errors import SpecError

    if name not in REGISTRY:
        raise SpecError(f"unknown convention {name!r}; choose one of {', '.join(CONVENTIONS)}")
    return REGISTRY[name]


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordAmount:
    """One engine record as a convention sees it."""

    layer: str
    module_type: str
    op: str
    kind: str
    category: str
    paper_macs: int
    amount: int
    counted: bool
    reason: str
    would_be: int  # what the engine charges for the op, in the convention's unit


@dataclass(frozen=True)
class SkippedOp:
    """Ops a convention does not count, grouped, with what they would cost."""

    kind: str
    op: str
    module_type: str
    calls: int
    would_be: int
    reason: str


@dataclass(frozen=True)
class ConventionCost:
    """A model's cost under one convention: total, breakdowns, and what it leaves out."""

    convention: str
    unit: str
    summary: str
    model: str
    input: tuple[int, int]
    batch: int
    records: tuple[RecordAmount, ...]
    bias_adds: int
    bias_calls: int
    uncounted: tuple[UncountedOp, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        """The total in the convention's own unit (``unit``)."""
        return sum(r.amount for r in self.records)

    @property
    def macs(self) -> int:
        return self.total // 2 if self.unit == FLOPS else self.total

    @property
    def flops(self) -> int:
        return self.total if self.unit == FLOPS else 2 * self.total

    @property
    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            if r.counted:
                out[r.kind] = out.get(r.kind, 0) + r.amount
        return out

    @property
    def by_category(self) -> dict[str, int]:
        out = dict.fromkeys(CATEGORIES, 0)
        for r in self.records:
            out[r.category] += r.amount
        return out

    @property
    def skipped(self) -> list[SkippedOp]:
        """Ops the convention does not count (plus bias adds), grouped by kind, op, module type, reason."""
        groups: dict[tuple[str, str, str, str], list[int]] = {}
        for r in self.records:
            if not r.counted:
                g = groups.setdefault((r.kind, r.op, r.module_type, r.reason), [0, 0])
                g[0] += 1
                g[1] += r.would_be
        out = [SkippedOp(kind=k[0], op=k[1], module_type=k[2], calls=v[0], would_be=v[1], reason=k[3])
               for k, v in groups.items()]
        if self.bias_adds:
            out.append(SkippedOp(kind="bias_add", op="add", module_type="conv/linear bias", calls=self.bias_calls,
                                 would_be=self.bias_adds, reason="1 per output element; no counter counts bias adds"))
        return out

    def to_dict(self, *, records: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "convention": self.convention, "unit": self.unit, "summary": self.summary, "model": self.model,
            "input": list(self.input), "batch": self.batch, "total": self.total, "macs": self.macs,
            "flops": self.flops, "by_kind": self.by_kind, "by_category": self.by_category,
            "skipped": [asdict(s) for s in self.skipped], "uncounted": [asdict(u) for u in self.uncounted],
        }
        if records:
            d["records"] = [asdict(r) for r in self.records]
        return d


def apply_convention(cost: ModelCost, convention: str | Convention) -> ConventionCost:
    """Charge every record of ``cost`` what ``convention`` would: a pure function of the records.

    Args:
        cost: the engine's analysis of a model.
        convention: ``"paper"``, ``"fvcore"``, ``"thop"``, ``"torch"`` or a ``Convention``.

    Returns:
        A ``ConventionCost`` whose ``total`` equals that counter's total on the same model.

    Example:
        >>> import mbcost
        >>> apply_convention(mbcost.analyze("v2", 224), "fvcore").total
        314193216
    """
    conv = get_convention(convention) if isinstance(convention, str) else convention
    records = []
    for layer in cost.layers:
        t = conv.treat(layer)
        records.append(RecordAmount(
            layer=layer.name, module_type=layer.module_type, op=layer.op, kind=layer.kind, category=layer.category,
            paper_macs=layer.macs, amount=t.amount, counted=t.counted, reason=t.reason,
            would_be=_mac_units(layer, conv.unit) + layer.other_ops))
    return ConventionCost(
        convention=conv.name, unit=conv.unit, summary=conv.summary, model=cost.label, input=cost.input,
        batch=cost.batch, records=tuple(records), bias_adds=cost.bias_adds,
        bias_calls=sum(1 for layer in cost.layers if layer.bias_adds), uncounted=cost.uncounted)


def convention_view(cost: ModelCost, convention: str | Convention) -> ModelCost:
    """``cost`` with every layer's ``macs`` replaced by what ``convention`` charges it (in MACs).

    ``view.macs`` is the convention's MAC total (for ``torch``, ``view.flops`` is its FLOP total);
    params, bytes and elementwise ops are unchanged. Renderers can show it like any ``ModelCost``.
    """
    cc = apply_convention(cost, convention)
    if cc.convention == "paper":
        return cost
    layers = tuple(replace(layer, macs=r.amount // 2 if cc.unit == FLOPS else r.amount)
                   for layer, r in zip(cost.layers, cc.records, strict=True))
    return replace(cost, layers=layers)
