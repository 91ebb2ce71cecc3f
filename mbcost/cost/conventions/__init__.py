"""Counting conventions: what each well-known counter counts, as one table of rules per counter.

The engine counts every op once, in the ``paper`` convention (see :mod:`mbcost.cost.formulas`).
The other counters in the field disagree with it, and with each other, only in *what* they
count and *how*, never in the shapes: a convention re-reads the engine's ``LayerCost`` records
and charges each one what that counter would. ``apply_convention(cost, "fvcore")`` therefore
reproduces fvcore's total from formulas, with nothing run, and says for every op whether the
counter counts it and, when it does not, what it would have cost (``skipped``).

Each counter is one table in its own module (:mod:`.paper`, :mod:`.fvcore`, :mod:`.thop`,
:mod:`.torch`, :mod:`.ptflops`), built from the factories of :mod:`.base`; each module's docstring
states what the library counts, read from the library's own source. A charge keeps multiply-
accumulates (``macs``) and elementwise operations (``ops``) apart; a convention's ``unit`` says what
one MAC is worth in its total (``Unit.MAC``: 1, ``Unit.FLOP``: 2), an elementwise op is always 1.
No counter counts bias adds except ptflops; they are listed with the skipped ops.
``F.scaled_dot_product_attention`` is charged as each library sees it on the CPU, where the counters run,
whether the engine traced its math path on the meta device or ran its fused kernel (:mod:`.attention`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mbcost.cost.conventions.attention import sdpa_products
from mbcost.cost.conventions.base import Charge, Convention, Unit
from mbcost.cost.conventions.fvcore import FVCORE
from mbcost.cost.conventions.paper import PAPER
from mbcost.cost.conventions.ptflops import PTFLOPS, PTFLOPS_ATEN
from mbcost.cost.conventions.thop import THOP
from mbcost.cost.conventions.torch import TORCH
from mbcost.cost.result import CATEGORIES, ModelCost, UncountedOp

__all__ = ["CONVENTIONS", "REGISTRY", "Charge", "Convention", "ConventionCost", "RecordAmount", "SkippedOp", "Unit",
           "apply_convention", "get_convention"]

#: The convention table: one entry per counter.
REGISTRY: dict[str, Convention] = {c.name: c for c in (PAPER, FVCORE, THOP, TORCH, PTFLOPS, PTFLOPS_ATEN)}
CONVENTIONS: tuple[str, ...] = tuple(REGISTRY)


def get_convention(name: str) -> Convention:
    from mbcost.errors import SpecError

    if name not in REGISTRY:
        raise SpecError(f"unknown convention {name!r}; choose one of {', '.join(CONVENTIONS)}")
    return REGISTRY[name]


@dataclass(frozen=True)
class RecordAmount:
    """One engine record as a convention sees it: MACs and elementwise ops apart, the total in its unit."""

    layer: str
    module_type: str
    op: str
    kind: str
    category: str
    paper_macs: int
    macs: int
    ops: int
    amount: int  # in the convention's unit: unit.per_mac * macs + ops (per image where the library averages)
    counted: bool
    reason: str
    component: str  # the cause reconcile reports it under (the record's kind unless the rule names one)
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
    """A model's cost under one convention: its work in its own unit, breakdowns, and what it leaves out.

    ``macs`` are the multiply-accumulates the convention counts, ``ops`` the elementwise operations it
    counts; ``total`` is the number the library reports (``unit.per_mac * macs + ops``); ``flops`` is
    the same work in FLOPs (2 per MAC, 1 per elementwise op), so nothing elementwise is doubled.
    """

    convention: str
    unit: Unit
    summary: str
    library_unit: str
    model: str
    input: tuple[int, ...]
    batch: int
    records: tuple[RecordAmount, ...]
    bias_adds: int
    bias_calls: int
    uncounted: tuple[UncountedOp, ...] = field(default_factory=tuple)
    counts_bias: bool = False

    @property
    def total(self) -> int:
        """The total in the convention's own unit, as the library reports it."""
        return sum(r.amount for r in self.records)

    @property
    def macs(self) -> int:
        """Multiply-accumulates the convention counts."""
        return sum(r.macs for r in self.records)

    @property
    def ops(self) -> int:
        """Elementwise operations the convention counts (norms, pools, activations, bias adds...)."""
        return sum(r.ops for r in self.records)

    @property
    def flops(self) -> int:
        """``2 * macs + ops``: the counted work in FLOPs, each elementwise op once."""
        return 2 * self.macs + self.ops

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
        if self.bias_adds and not self.counts_bias:
            out.append(SkippedOp(kind="bias_add", op="add", module_type="conv/linear bias", calls=self.bias_calls,
                                 would_be=self.bias_adds, reason=f"1 per output element; {self.convention} does not "
                                                                 "count bias adds"))
        return out

    def to_dict(self, *, records: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "convention": self.convention, "unit": self.unit.value, "library_unit": self.library_unit,
            "summary": self.summary, "model": self.model, "input": list(self.input), "batch": self.batch,
            "total": self.total, "macs": self.macs, "ops": self.ops, "flops": self.flops, "by_kind": self.by_kind,
            "by_category": self.by_category, "skipped": [asdict(s) for s in self.skipped],
            "uncounted": [asdict(u) for u in self.uncounted],
        }
        if records:
            d["records"] = [asdict(r) for r in self.records]
        return d


def apply_convention(cost: ModelCost, convention: str | Convention) -> ConventionCost:
    """Charge every record of ``cost`` what ``convention`` would: a pure function of the records (and, for the
    torch preset's SDPA kernel, of whether the installed FlopCounterMode has a formula for it).

    Args:
        cost: the engine's analysis of a model.
        convention: a name of ``CONVENTIONS`` (``"paper"``, ``"fvcore"``, ``"thop"``, ``"torch"``,
            ``"ptflops"``, ``"ptflops-aten"``) or a ``Convention``.

    Returns:
        A ``ConventionCost`` whose ``total`` equals that counter's total on the same model.

    Example:
        >>> import mbcost
        >>> apply_convention(mbcost.analyze("v2", 224), "fvcore").total
        314193216
    """
    conv = get_convention(convention) if isinstance(convention, str) else convention
    if conv.scope is not None:
        conv = replace(conv, lookup=conv.scope(cost.layers))
    per_mac = conv.unit.per_mac
    batch = max(cost.batch, 1)
    records = []
    # F.scaled_dot_product_attention's math path: charged as the counters' CPU run sees it (.attention)
    sdpa = sdpa_products(cost.layers, meta=cost.execution == "meta")
    for i, layer in enumerate(cost.layers):
        c = conv.charge(layer, sdpa.get(i))
        amount = c.total(conv.unit)
        if c.averaged:
            amount += c.averaged // batch - c.averaged
        records.append(RecordAmount(
            layer=layer.name, module_type=layer.module_type, op=layer.op, kind=layer.kind, category=layer.category,
            paper_macs=layer.macs, macs=c.macs, ops=c.ops, amount=amount, counted=c.counted, reason=c.reason,
            component=c.component or layer.kind, would_be=per_mac * layer.macs + layer.other_ops))
    return ConventionCost(
        convention=conv.name, unit=conv.unit, summary=conv.summary, library_unit=conv.library_unit,
        model=cost.label, input=cost.input, batch=cost.batch, records=tuple(records), bias_adds=cost.bias_adds,
        bias_calls=sum(1 for layer in cost.layers if layer.bias_adds), uncounted=cost.uncounted,
        counts_bias=conv.counts_bias)
