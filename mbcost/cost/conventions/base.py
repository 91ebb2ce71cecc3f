"""What every convention table is made of: units, charges, handler factories, the convention type.

A convention is one table, fvcore-style (``fvcore/nn/jit_handles.py``): a key (an op table row's key, an
ATen op name as the engine records it for one op's quirk, or a ``torch.nn`` class name for counters that
hook modules) maps to a handler
built by a small factory (``macs()``, ``norm(1, 2)``, ``elementwise(1)``), or to ``None``: ignored.
A handler reads one engine record (``LayerCost``) and returns a ``Charge``: the work the counter
counts for it, split by unit, so that multiply-accumulates and elementwise operations never mix:

* ``Charge.macs``: multiply-accumulates (one multiply + one add);
* ``Charge.ops``: elementwise operations (one each: a BatchNorm scale, a bias add, a pooled add).

A counter's total is ``unit.per_mac * macs + ops``: ``Unit.MAC`` counters (fvcore, thop, ptflops)
add a MAC and an elementwise op as one each; ``Unit.FLOP`` (torch's FlopCounterMode) counts 2 per MAC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from math import prod

from mbcost.cost.ops import family
from mbcost.cost.result import LayerCost

__all__ = ["Charge", "Convention", "Handler", "Unit", "elementwise", "macs", "norm", "numel", "op_label",
           "unsupported"]


class Unit(Enum):
    """What one multiply-accumulate is worth in a counter's total."""

    MAC = "MACs"    #: one per multiply-accumulate (fvcore's "flops", thop's "ops", ptflops' "MACs")
    FLOP = "FLOPs"  #: two per multiply-accumulate (torch's FlopCounterMode)

    @property
    def per_mac(self) -> int:
        return 2 if self is Unit.FLOP else 1


@dataclass(frozen=True)
class Charge:
    """What a counter counts for one record: MACs and elementwise ops apart, and why."""

    macs: int = 0
    ops: int = 0
    counted: bool = True
    reason: str = ""
    #: The cause this charge is reported under in ``reconcile`` (default: the record's kind).
    component: str = ""
    #: The part of ``total`` the library divides by the batch (ptflops' module hooks report a mean per image).
    averaged: int = 0

    def total(self, unit: Unit) -> int:
        """The charge in the counter's own unit."""
        return unit.per_mac * self.macs + self.ops


Handler = Callable[[LayerCost], Charge]


def numel(shape: tuple[int, ...]) -> int:
    return prod(shape)


def op_label(op: str) -> str:
    """``aten::relu`` for an ATen op, a user's op by its qualified name (``mylib::fused_attn``)."""
    return op if "::" in op else f"aten::{op}"


# --- handler factories -----------------------------------------------------------------------


def macs(reason: str, *, bias: bool = False) -> Handler:
    """The record's multiply-accumulates; with ``bias``, its bias adds too (as elementwise ops)."""
    def handle(layer: LayerCost) -> Charge:
        return Charge(macs=layer.macs, ops=layer.bias_adds if bias else 0, reason=reason)
    return handle


def norm(per: int, per_affine: int, reason: str) -> Handler:
    """A normalization: ``per`` ops per input element, ``per_affine`` with a learned scale."""
    def handle(layer: LayerCost) -> Charge:
        n = per_affine if layer.facts.affine else per
        return Charge(ops=n * numel(layer.input_shape),
                      reason=f"{reason}: {n} per element ({'with' if layer.facts.affine else 'no'} affine)")
    return handle


def elementwise(per: int, reason: str, *, of: str = "input") -> Handler:
    """``per`` ops per element of the record's input (or ``of="output"``)."""
    def handle(layer: LayerCost) -> Charge:
        shape = layer.input_shape if of == "input" else layer.output_shape
        return Charge(ops=per * numel(shape), reason=reason)
    return handle


def unsupported(library: str) -> Handler:
    """The default of an op-keyed table: no handle, counts 0 (the library lists it as unsupported)."""
    def handle(layer: LayerCost) -> Charge:
        return Charge(counted=False, reason=f"{library} has no handle for {op_label(layer.op)}")
    return handle


@dataclass(frozen=True)
class Convention:
    """A counting convention: its unit, a one-line statement, and its table.

    ``charge(layer)`` looks the record up in ``table`` (see ``lookup``), and an op name missing there
    under its op table row's key (``mbcost.cost.ops.family``); a key missing both ways falls to
    ``default``; a key mapped to ``None`` is ignored with ``ignored_reason``. ``charge(layer, key=K)``
    looks it up under ``K`` instead when ``lookup`` gives the record's own op and the table has ``K``:
    how a product of ``F.scaled_dot_product_attention``'s math path is charged as the fused kernel the
    library sees (:mod:`.attention`); a rule keyed by module type keeps precedence.
    """

    name: str
    unit: Unit
    summary: str
    table: Mapping[str, Handler | None]
    default: Handler
    lookup: Callable[[LayerCost], str] = lambda layer: layer.op
    ignored_reason: str = "ignored"
    #: What the library calls its total (shown next to the number).
    library_unit: str = ""
    #: Whether its rules count conv/linear bias adds (else they are listed with the skipped ops).
    counts_bias: bool = False
    #: The ``lookup`` for a forward's records when a record's key depends on the others (ptflops: a record under a
    #: module it hooks), made from all of them by ``apply_convention``; ``None``: ``lookup`` as it is.
    scope: Callable[[Sequence[LayerCost]], Callable[[LayerCost], str]] | None = None

    def charge(self, layer: LayerCost, key: str | None = None) -> Charge:
        own = self.lookup(layer)
        key = key if key is not None and own == layer.op and key in self.table else own
        if key not in self.table:
            key = family(key)
            if key not in self.table:
                return self.default(layer)
        handler = self.table[key]
        if handler is None:
            return Charge(counted=False, reason=f"{self.ignored_reason} ({key})")
        return handler(layer)
