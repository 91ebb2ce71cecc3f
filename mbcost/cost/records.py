"""Turning op calls into ``LayerCost`` records: naming, parameter attribution, formulas."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Any

from mbcost.cost.formulas import FORMULAS, OpCost
from mbcost.cost.ops import OpCall
from mbcost.cost.result import LayerCost, LayerFacts, UnattributedParams, UncountedOp, UnpricedParams, categorize

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Priced", "RecordBook", "Trace", "price"]


@dataclass
class Trace:
    """Raw output of one walk: layer records, parameter totals and uncounted ops."""

    layers: list[LayerCost]
    params: int
    unattributed_params: int
    #: Where they are (``RecordBook.unattributed``).
    unattributed: list[UnattributedParams] = field(default_factory=list)
    uncounted: list[UncountedOp] = field(default_factory=list)
    #: ``meta`` (nothing ran) or ``real`` (a CPU forward with random inputs; counts may depend on data).
    execution: str = "meta"
    #: Why the real forward ran (the meta run's failure, or that it was asked for).
    fallback_reason: str | None = None
    #: Elements in the model's buffers (BatchNorm running statistics...).
    buffers: int = 0
    #: Of these, the elements and bytes of the buffers that are not floating point (BatchNorm's int64
    #: ``num_batches_tracked``), each at its own element size: the model's dtype does not apply to them.
    nonfloat_buffers: int = 0
    nonfloat_buffer_bytes: int = 0
    #: Live activation bytes at the worst point of the forward (lifetimes; meta runs only) and where.
    peak_activation_bytes: int | None = None
    peak_op: str | None = None
    #: Training: trainable parameter elements, and the step's activation peak and where.
    trainable_params: int = 0
    train_peak_activation_bytes: int | None = None
    train_peak_op: str | None = None
    #: Training: the parameters' gradients alive at the step's worst point (made during the backward).
    train_peak_grad_bytes: int | None = None
    #: Parameters of modules that ran but issued only ops without a formula (embedding lookups).
    unpriced_params: list[UnpricedParams] = field(default_factory=list)


#: An op call with its cost and layer category: ``price(call)``.
Priced = tuple[OpCall, OpCost, str]


def price(call: OpCall) -> Priced:
    """The formula's cost of an op call and its layer category (a pure function of the call)."""
    shape = call.input_shape
    category = categorize(call.kind, groups=call.groups, in_channels=shape[1] if len(shape) > 1 else None,
                          kernel=call.kernel)
    return call, FORMULAS[call.kind](**call.formula_args), category


class RecordBook:
    """Collects the records of one walk over ``model``, whose tree the walk has read (``tree``: its
    ``mbcost.cost.shadow.Shadow``: names, leaves, parameters per module, weights' ids and storages)."""

    def __init__(self, model: nn.Module, tree: Any) -> None:
        self.model = model
        self.names, self.leaves, self.own_params, self.total_params = (
            tree.names, tree.leaves, tree.own_params, tree.total)
        self.total_buffers, self.trainable_params = tree.buffers, tree.trainable
        self.nonfloat_buffers, self.nonfloat_buffer_bytes = tree.nonfloat_buffers, tree.nonfloat_buffer_bytes
        self.records: list[LayerCost] = []
        self.uncounted: Counter[tuple[str, str, str]] = Counter()
        #: Per module that issued an op without a formula: its type, that op, the records made before it.
        self._unpriced: dict[str, tuple[str, str, int]] = {}
        self._attributed: set[str] = set()
        self._labels: dict[str, int] = {}

    def add(self, mod: nn.Module, *, first_in_call: bool, op: str, priced: Priced, input_bytes: int,
            output_bytes: int, weight_bytes: int, inplace: bool, reuse: bool = True) -> None:
        """Record one costed op issued by ``mod``; ``priced`` is ``price(call)`` of its call.

        The label is the module's path for the first op a leaf module issues in a call, else
        ``path:op``; repeats (a module called twice) get ``#2``, ``#3``... With ``reuse`` (``priced``
        is kept, by a memoised answer or a layer program), the record an earlier walk made of the
        same call in the same place is reused.
        """
        mod_name = self.names.get(mod, "")
        is_leaf = mod in self.leaves
        label = (mod_name or "(root)") if (is_leaf and first_in_call) else f"{mod_name or '(root)'}:{op}"
        seen = self._labels.get(label, 0) + 1
        self._labels[label] = seen
        if seen > 1:
            label = f"{label}#{seen}"
        params = 0
        if mod_name not in self._attributed:
            self._attributed.add(mod_name)
            params = self.own_params.get(mod_name, 0)
        cls = type(mod)
        # The same record (frozen) made by an earlier walk is reused: a second analysis of a model
        # makes the same records, and each costs more to build than to look up.
        key = None
        if reuse:
            key = (id(priced), label, mod_name, cls, op, params, input_bytes, output_bytes, weight_bytes, inplace,
                   is_leaf)
            known = _RECORDS.get(key)
            if known is not None and known[0] is priced:
                self.records.append(known[1])
                return
        call, cost, category = priced
        record = LayerCost(
            label, mod_name, cls.__name__, op, call.kind, category, call.input_shape, call.output_shape,
            call.weight_shape, call.kernel, call.stride, call.padding, call.dilation,
            call.groups, params, cost.macs, cost.bias_adds, cost.other_ops, input_bytes, output_bytes,
            weight_bytes, inplace,
            _facts(is_leaf, call.affine, call.count_include_pad, cls, call.training, call.dims, call.other_rank),
        )
        if key is not None:
            if len(_RECORDS) >= _MAX_RECORDS:
                _RECORDS.clear()
            _RECORDS[key] = (priced, record)
        self.records.append(record)

    def set_backward(self, macs: int, elementwise_ops: int) -> None:
        """Training: the backward cost of the record just added."""
        self.records[-1] = replace(self.records[-1], backward_macs=macs, backward_elementwise_ops=elementwise_ops)

    def add_uncounted(self, op: str, mod: nn.Module) -> None:
        name = self.names.get(mod, "")
        self.uncounted[(op, name, type(mod).__name__)] += 1
        if name not in self._unpriced:
            self._unpriced[name] = (type(mod).__name__, op, len(self.records))

    def finish(self) -> Trace:
        attributed = sum(self.own_params.get(m, 0) for m in self._attributed)
        unc = [UncountedOp(op=k[0], module=k[1], module_type=k[2], calls=v) for k, v in self.uncounted.items()]
        # a module that ran but made no record (its ops have no formula) still owns its parameters
        unpriced = [UnpricedParams(name, cls, op, self.own_params[name], at)
                    for name, (cls, op, at) in self._unpriced.items()
                    if name not in self._attributed and self.own_params.get(name, 0)]
        unattributed = self.total_params - attributed - sum(u.params for u in unpriced)
        return Trace(layers=self.records, params=self.total_params, unattributed_params=unattributed,
                     unattributed=self.unattributed({u.module for u in unpriced}) if unattributed else [],
                     uncounted=unc, buffers=self.total_buffers, trainable_params=self.trainable_params,
                     unpriced_params=unpriced, nonfloat_buffers=self.nonfloat_buffers,
                     nonfloat_buffer_bytes=self.nonfloat_buffer_bytes)

    def unattributed(self, unpriced: set[str]) -> list[UnattributedParams]:
        """The parameters no op was attributed to, by subtree: each module owning some, under the topmost
        ancestor whose subtree owns no attributed (or unpriced) ones, summed there."""
        used = {n for n in (*self._attributed, *unpriced) if self.own_params.get(n)}
        busy = {""}.union(*map(_paths, used))  # the used modules and their ancestors
        types = {n: type(m).__name__ for m, n in self.names.items()}
        tops: dict[str, int] = {}
        for name, n in self.own_params.items():
            if n and name not in used:
                top = next((p for p in _paths(name) if p not in busy), name)
                tops[top] = tops.get(top, 0) + n
        return [UnattributedParams(top, types[top], n) for top, n in tops.items()]


#: Records by what they are made of (``RecordBook.add``): the priced call (by identity, kept alive
#: with the record so that its id keeps its meaning), label, module, op, bytes and flags.
_RECORDS: dict[tuple, tuple[Priced, LayerCost]] = {}
_MAX_RECORDS = 16384


def _paths(name: str) -> list[str]:
    """A module's path and its ancestors' below the root, outermost first: ``a``, ``a.b``, ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]


@cache
def _facts(is_leaf: bool, affine: bool | None, count_include_pad: bool | None, cls: type,
           training: bool | None = None, dims: tuple[int, ...] | None = None,
           other_rank: int | None = None) -> LayerFacts:
    """The facts of a record (few distinct ones: made once each)."""
    return LayerFacts(is_leaf, affine, count_include_pad, _torch_bases(cls), training, dims,
                      f"{cls.__module__}.{cls.__qualname__}", other_rank)


@cache
def _torch_bases(cls: type) -> tuple[str, ...]:
    """Names of the ``torch.nn`` classes in ``cls``'s MRO, most derived first."""
    return tuple(c.__name__ for c in cls.__mro__ if c.__module__.startswith("torch.nn."))
