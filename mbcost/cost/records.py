"""Turning op calls into ``LayerCost`` records: naming, parameter attribution, formulas."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING

from mbcost.cost.formulas import FORMULAS, OpCost
from mbcost.cost.ops import OpCall
from mbcost.cost.result import LayerCost, LayerFacts, UncountedOp, UnpricedParams, categorize
from mbcost.cost.torch_internals import storage_key

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Priced", "RecordBook", "Structure", "Trace", "model_structure", "price"]


@dataclass
class Trace:
    """Raw output of one walk: layer records, parameter totals and uncounted ops."""

    layers: list[LayerCost]
    params: int
    unattributed_params: int
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


@dataclass(frozen=True)
class Structure:
    """What a walk needs to know about a module tree: names, leaves, parameters per module, and
    the ids of every parameter and buffer (the tensors that are weights, not activations)."""

    names: dict[nn.Module, str]
    leaves: frozenset[nn.Module]
    own_params: dict[str, int]
    total_params: int
    weight_ids: frozenset[int]
    #: Storage ids of every parameter and buffer (views of a weight share its storage).
    weight_storages: frozenset[int] = frozenset()
    #: Each parameter's and buffer's storage id, by the tensor's id (read once here, for the lifetimes).
    weight_keys: dict[int, int] = field(default_factory=dict)
    total_buffers: int = 0
    trainable_params: int = 0
    nonfloat_buffers: int = 0
    nonfloat_buffer_bytes: int = 0


def model_structure(model: nn.Module) -> Structure:
    """Read ``model``'s tree once: module names (a module registered twice keeps its last name, as
    ``named_modules(remove_duplicate=False)`` would give it), leaves, each module's own unique
    parameter count (a shared tensor counts once, for its first owner in registration order) and the
    ids of all parameters and buffers."""
    tree = _Tree()
    tree.visit(model, "")
    names, order, counts, keys = tree.names, tree.order, tree.counts, tree.keys
    own_params = {names[m]: counts[m] for m in order}
    leaves = frozenset(m for m in order if not m._modules)
    return Structure(names=names, leaves=leaves, own_params=own_params, total_params=tree.total,
                     weight_ids=frozenset(tree.seen | tree.buffer_ids), weight_storages=frozenset(keys.values()),
                     weight_keys=keys, total_buffers=tree.buffers, trainable_params=tree.trainable,
                     nonfloat_buffers=tree.nonfloat_buffers, nonfloat_buffer_bytes=tree.nonfloat_buffer_bytes)


class _Tree:
    """What ``model_structure`` reads, gathered in one recursive visit (a class rather than a nested
    function calling itself, which would be a reference cycle left for the collector)."""

    def __init__(self) -> None:
        self.names: dict[nn.Module, str] = {}
        self.order: list[nn.Module] = []
        self.seen: set[int] = set()  # parameter ids
        self.buffer_ids: set[int] = set()
        self.keys: dict[int, int] = {}
        self.counts: dict[nn.Module, int] = {}
        self.total = self.buffers = self.trainable = 0
        self.nonfloat_buffers = self.nonfloat_buffer_bytes = 0  # integer and boolean buffers

    def visit(self, mod: nn.Module, prefix: str) -> None:
        d = mod.__dict__
        if mod not in self.names:
            self.order.append(mod)
            seen, keys = self.seen, self.keys
            n = 0
            for p in d["_parameters"].values():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    keys[id(p)] = storage_key(p)
                    k = p.numel()
                    n += k
                    if p.requires_grad:
                        self.trainable += k
            buffer_ids = self.buffer_ids
            for b in d["_buffers"].values():
                if b is not None and id(b) not in buffer_ids:
                    buffer_ids.add(id(b))
                    keys[id(b)] = storage_key(b)
                    k = b.numel()
                    self.buffers += k
                    if not b.is_floating_point():
                        self.nonfloat_buffers += k
                        self.nonfloat_buffer_bytes += k * b.element_size()
            self.counts[mod] = n
            self.total += n
        self.names[mod] = prefix
        children = d["_modules"]
        if children:
            for key, child in children.items():
                if child is not None:
                    self.visit(child, f"{prefix}.{key}" if prefix else key)


#: An op call with its cost and layer category: ``price(call)``.
Priced = tuple[OpCall, OpCost, str]


def price(call: OpCall) -> Priced:
    """The formula's cost of an op call and its layer category (a pure function of the call)."""
    shape = call.input_shape
    category = categorize(call.kind, groups=call.groups, in_channels=shape[1] if len(shape) > 1 else None,
                          kernel=call.kernel)
    return call, FORMULAS[call.kind](**call.formula_args), category


class RecordBook:
    """Collects the records of one walk over ``model``.

    ``structure`` may be passed when the caller knows the tree has not changed (the zoo's cached
    meta-device models); otherwise it is read from ``model`` now.
    """

    def __init__(self, model: nn.Module, structure: Structure | None = None) -> None:
        self.model = model
        st = structure or model_structure(model)
        self.names, self.leaves, self.own_params, self.total_params = (
            st.names, st.leaves, st.own_params, st.total_params)
        self.weight_ids = st.weight_ids
        self.weight_storages = st.weight_storages
        self.weight_keys = st.weight_keys
        self.total_buffers = st.total_buffers
        self.trainable_params = st.trainable_params
        self.nonfloat_buffers, self.nonfloat_buffer_bytes = st.nonfloat_buffers, st.nonfloat_buffer_bytes
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
            weight_bytes, inplace, _facts(is_leaf, call.affine, call.count_include_pad, cls, call.training),
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
        return Trace(layers=self.records, params=self.total_params,
                     unattributed_params=self.total_params - attributed - sum(u.params for u in unpriced),
                     uncounted=unc, buffers=self.total_buffers, trainable_params=self.trainable_params,
                     unpriced_params=unpriced, nonfloat_buffers=self.nonfloat_buffers,
                     nonfloat_buffer_bytes=self.nonfloat_buffer_bytes)


#: Records by what they are made of (``RecordBook.add``): the priced call (by identity, kept alive
#: with the record so that its id keeps its meaning), label, module, op, bytes and flags.
_RECORDS: dict[tuple, tuple[Priced, LayerCost]] = {}
_MAX_RECORDS = 16384


@cache
def _facts(is_leaf: bool, affine: bool | None, count_include_pad: bool | None, cls: type,
           training: bool | None = None) -> LayerFacts:
    """The facts of a record (few distinct ones: made once each)."""
    return LayerFacts(is_leaf, affine, count_include_pad, _torch_bases(cls), training)


@cache
def _torch_bases(cls: type) -> tuple[str, ...]:
    """Names of the ``torch.nn`` classes in ``cls``'s MRO, most derived first."""
    return tuple(c.__name__ for c in cls.__mro__ if c.__module__.startswith("torch.nn."))
