"""Layer programs: the ATen calls one of torch.nn's own layers makes, recorded once and replayed.

A layer of a torch.nn class whose forward is a pure function of its settings (convolution,
normalization, activation, pooling, linear, dropout...) makes the same ATen calls every time it is
called with the same settings, weights' layouts and inputs' layouts. The walk records those calls
the third time it meets them (``Capture``; ``met``: recording costs a few traced calls, and most layers
and blocks of a model are met once or twice, so the first meetings are only traced): each argument
becomes a slot (an input of the layer, one of its parameters or buffers, an output of an earlier
call) or a constant, and each call keeps the
memoised answer the walk's dispatch found for it. A later call with the same key (``layer_key``)
hands the same calls, with that call's own tensors, back to the walk (``Walk.replay_program``):
the layer's Python forward, torch's dispatcher and the dispatch mode are skipped. Every call is
still recorded and its lifetimes followed, from what the program kept of it (its record's bytes,
which of its tensors may be activations); in training, and for a call without a memoised answer,
by the same code as a traced call. ``tests/test_programs.py`` compares replayed layers with
op-by-op traced ones on models the project did not write.

A block (a module of any other class, its children included) is replayed the same way on an
inference walk when every module under it holds only settings (``block_key``): its program also
keeps where each of its module calls starts and ends and what it holds (``Mark``), so that records
and lifetimes are its modules' as when traced. This assumes what torch.nn's own layers guarantee: a
forward reads nothing but its module's attributes, weights and inputs (a forward that rebinds an
attribute is seen when its program is made, and traced from then on).

Not replayed (traced as before): a module with hooks under it, a layer whose settings hold something
other than numbers, strings, enums and tuples of them, a call with keyword arguments, and calls that
use a tensor that is none of their inputs, weights or earlier outputs, or a user's op.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary

from mbcost.cost.torch_internals import CALL_ATTRS

__all__ = ["BLOCK", "PROGRAMS", "SETTING_TYPES", "Mark", "Plan", "Program", "Slot", "Step", "block_key", "fill",
           "forget", "layer_key", "met", "met_before", "shape_hint", "own_attributes", "remember_program", "weights_of"]

#: The torch.nn files whose classes' forwards read only their settings, weights and inputs.
_PURE_FILES = frozenset(f"torch.nn.modules.{name}" for name in (
    "activation", "batchnorm", "channelshuffle", "conv", "dropout", "flatten", "instancenorm", "linear",
    "normalization", "padding", "pixelshuffle", "pooling", "sparse", "upsampling"))
#: Attributes a forward never reads (hooks must be empty; the rest is bookkeeping).
_HOOKS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")
_BOOKKEEPING = frozenset({
    "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "_is_full_backward_hook",
    "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
    "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
    *CALL_ATTRS, *_HOOKS})
SETTING_TYPES = (int, float, bool, str, type(None))
_CALL = CALL_ATTRS[0]
BLOCK = "block"  # the first item of a block's key

#: Per class and attribute count: how to read a layer's settings (None: not replayable).
_READERS: dict[tuple[type, int], Any] = {}


def _reader(cls: type, d: dict) -> Any:
    """An ``itemgetter`` of the layer's settings, or ``None`` when the class is not one of torch.nn's
    pure layers or a setting is not a number, string or tuple of them."""
    if cls.__module__ not in _PURE_FILES:
        return None
    names = []
    for k, v in d.items():
        if k in _BOOKKEEPING:
            continue
        if k == "forward" or not (type(v) in SETTING_TYPES or type(v) is tuple
                                  and all(type(x) in SETTING_TYPES for x in v)):
            return None
        names.append(k)
    if len(names) > 1:
        return itemgetter(*names)
    return (lambda d, k=names[0]: (d[k],)) if names else (lambda d: ())


def layer_key(layer: Any, blocks: Any = None) -> tuple | None:
    """What a module's calls depend on, besides its inputs. A pure torch.nn layer: its class, its
    settings and its parameters' and buffers' layouts (shape, strides, dtype, meta or not). With
    ``blocks`` (the walk's ``mbcost.cost.shadow.Shadow``), any other module whose attributes are all settings
    (a block: ``block_key``) and that was met before (``met_before``). ``None`` when the module is not
    replayable (see the module docstring)."""
    d = layer.__dict__
    cls = type(layer)
    rk = (cls, len(d))
    try:
        reader = _READERS[rk]
    except KeyError:
        reader = _READERS[rk] = _reader(cls, d)
    if reader is None or d["_modules"]:
        return block_key(layer, blocks) if blocks is not None and met_before(layer) else None
    for h in _HOOKS:
        if d[h]:
            return None
    try:
        settings = reader(d)
    except KeyError:  # same count, other names: read it the slow way
        settings = _reader(cls, d)
        if settings is None:
            return None
        settings = settings(d)
    weights = []
    try:
        for t in (*d["_parameters"].values(), *d["_buffers"].values()):
            weights.append(None if t is None else (t.shape, t.stride(), t.dtype, t.is_meta))
    except (RuntimeError, NotImplementedError):  # a sparse or nested weight has no strides: traced
        return None
    return cls, settings, tuple(d["_parameters"]), tuple(d["_buffers"]), tuple(weights)


#: Per class and attribute count: the names of a module's attributes that are not bookkeeping, and their getter.
_NAMES: dict[tuple[type, int], tuple[tuple[str, ...], Any]] = {}


def _names(d: dict) -> tuple[tuple[str, ...], Any]:
    names = tuple(k for k in d if k not in _BOOKKEEPING)
    if len(names) > 1:
        return names, itemgetter(*names)
    return names, (lambda d, k=names[0]: (d[k],)) if names else (lambda d: ())


def own_attributes(m: Any) -> tuple[tuple[str, ...], tuple]:
    """The names of a module's attributes that are not torch's bookkeeping, and their values."""
    d = m.__dict__
    rk = (type(m), len(d))
    names = _NAMES.get(rk)
    if names is None:
        names = _NAMES[rk] = _names(d)
    try:
        return names[0], names[1](d)
    except KeyError:  # same count, other names
        names = _names(d)
        return names[0], names[1](d)


def block_key(block: Any, tree: Any) -> tuple | None:
    """A block's key: per module of its subtree (breadth first, each once), its class, its attributes
    (all settings: numbers, strings, enums, tuples of them), its weights' layouts and its children's
    places, and which weights are shared; ``None`` when any module has hooks, another attribute, or is
    one the walk does not copy (TorchScript). Its calls are a pure function of these and its inputs, as a
    torch.nn layer's are, as long as its forward reads nothing but its own attributes: a forward that
    rebinds one is caught when its program is made (``Capture.program``), and is traced from then on.
    Followed by the subtree's modules as read (``tree.node``: the walk's copies, or a module not copied yet,
    read as its copy would be: the same attributes and weights, and the walk's ``training`` flag), the user's
    modules and their weights (``Walk.layer`` takes them off)."""
    mods, users, key, ids, weights = [block], [], [], [], []
    at = {id(block): 0}
    node, training = tree.node, None if tree.own_train else tree.training
    for m in mods:  # grows as children are found
        d = m.__dict__
        if d["_forward_pre_hooks"] or d["_forward_hooks"] or d["_backward_pre_hooks"] or d["_backward_hooks"]:
            return None
        call = d.get(_CALL)
        if call is not None:
            users.append(call.mod)
        elif tree.unmade(m):
            users.append(m)
        else:  # not copied by the walk (TorchScript)
            return None
        names, values = own_attributes(m)
        if call is None and training is not None and d["training"] is not training:  # its copy's flag
            values = tuple(training if k == "training" else v for k, v in zip(names, values, strict=True))
        types = []  # 2 == 2.0 == True: a setting's type is part of the key, as its value is
        for v in values:
            if type(v) is tuple:
                if any(type(x) not in SETTING_TYPES for x in v):
                    return None
                types.append(tuple(map(type, v)))
            elif type(v) in SETTING_TYPES or isinstance(v, Enum):
                types.append(type(v))
            else:
                return None
        params, buffers, kids = d["_parameters"], d["_buffers"], d["_modules"]
        layouts: Any = ()
        if params or buffers:
            layouts = []
            try:
                for t in (*params.values(), *buffers.values()):
                    weights.append(t)
                    if t is None:
                        layouts.append(None)
                    else:
                        ids.append(id(t))
                        layouts.append((t.shape, t.stride(), t.dtype, t.is_meta))
            except (RuntimeError, NotImplementedError):  # sparse or nested
                return None
            layouts = (tuple(params), tuple(buffers), tuple(layouts))
        places: Any = ()
        if kids:
            places = []
            for c in dict.values(kids):  # not copied by reading them (``shadow._Children``)
                if c is not None:
                    c = node(c)
                if c is not None and id(c) not in at:
                    at[id(c)] = len(mods)
                    mods.append(c)
                places.append(None if c is None else at[id(c)])
            places = (tuple(dict.keys(kids)), tuple(places))
        # the class's forward too: a forward patched on the class is a different program
        key.append((type(m), type(m).forward, names, values, tuple(types), layouts, places))
    if len(set(ids)) < len(ids):  # tied weights: which are the same tensor
        key.append(tuple(map(ids.index, ids)))
    return BLOCK, tuple(key), mods, users, weights


@dataclass(frozen=True, slots=True)
class Slot:
    """A tensor of a program: an input, a weight, or an earlier call's output, by position."""

    i: int


@dataclass(frozen=True, slots=True)
class Step:
    """One call of a program: the op, its arguments as a template (``Slot``s for tensors), where the
    slots go, the slots of its tensors in the order the walk lists them, and its memoised answer."""

    func: Any
    info: Any
    args: tuple
    kwargs: dict
    top: tuple[tuple[int, int], ...] | None  # (argument position, slot), or None: slots are nested
    tensors: tuple[int, ...]
    answer: Any
    outs: int  # slots its result fills
    #: The record's input, output and weight bytes when the call was recorded (they follow from the
    #: program's key), and the slots of its tensors that may be activations (all but the layer's own
    #: weights): what the walk needs to record a replayed call without re-reading its tensors.
    #: ``None`` when it made no record, or returns an argument that is no slot (it then runs again).
    recorded: tuple[int, int, int] | None = None
    reads: tuple[int, ...] = ()
    alias: int | None = None  # the slot an in-place call returns
    free: bool = False  # a free call (a view) with an answer, reading no weight: recorded as it was
    fast: bool = False  # recorded as it was, from its answer: it has one, and a record or is free


@dataclass(frozen=True, slots=True)
class Mark:
    """A block's program, between its calls: a module call of the block starts (``enter``: the module's
    place in ``subtree``), ends (``enter`` and ``hold`` ``None``), or has held its arguments (``hold``:
    their slots) until now."""

    enter: int | None = None
    hold: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What an inference walk's replay of a program amounts to (``capture.plan_of``), so that it is recorded
    in one go: per op, its module (``-1``: the called one; else its place in the block's ``subtree``),
    name and record (``None``: none; else its place in ``records``); per record, its module, whether it is
    the first of its module call, its ``OpInfo``, priced call and bytes; each op's scratch; the inputs and
    weights it reads, writes or holds, by slot, and its last op to do so; the storages its ops make,
    ``(first op, last op, bytes)``, those its result lies in by the slot that makes them first; and how to
    make the tensors its result needs: ``(slot, base slot or None, shape, strides, dtype, offset)``, or
    ``(slot, slot it is)``."""

    ops: tuple[tuple[int, str, int | None], ...]
    records: tuple[tuple[int, bool, Any, Any, tuple[int, int, int]], ...]
    scratch: tuple[tuple[int, int], ...]
    external: tuple[tuple[int, int], ...]
    storages: tuple[tuple[int, int, int], ...]
    returned: tuple[tuple[int, int, int, int], ...]
    make: tuple[tuple, ...]
    slots: int


@dataclass(frozen=True, slots=True)
class Program:
    """The calls one layer call made, and its return value as a template."""

    steps: tuple[Step, ...]
    result: Any
    #: Whether the last call reads every tensor the layer was given: the call's arguments then live
    #: to its end without the walk saying so (``Lifetimes.hold``).
    holds: bool = False
    plan: Plan | None = None  # on an inference walk: its replay in one go

    def result_with(self, vals: list[Any]) -> Any:
        """The layer's return value, given the tensors by slot."""
        result = self.result
        return vals[result.i] if type(result) is Slot else _fill(result, vals)


def fill(step: Step, vals: list[Any]) -> tuple[tuple, dict]:
    """A step's arguments with this call's tensors (``vals``: the tensors by slot)."""
    top = step.top
    if top is None:
        return _fill(step.args, vals), _fill(step.kwargs, vals)
    filled = list(step.args)
    for pos, i in top:
        filled[pos] = vals[i]
    return tuple(filled), step.kwargs


def _fill(template: Any, vals: list[Any]) -> Any:
    t = type(template)
    if t is Slot:
        return vals[template.i]
    if t is tuple or t is list:
        return t(_fill(v, vals) for v in template)
    if t is dict:
        return {k: _fill(v, vals) for k, v in template.items()}
    return template


def weights_of(layer: Any) -> list[Any]:
    """A layer's parameters and buffers, in the order ``layer_key`` reads them (``None`` kept)."""
    d = layer.__dict__
    return [*d["_parameters"].values(), *d["_buffers"].values()]


#: Programs by layer key and input layouts, shared by all walks (bounded: cleared when full).
PROGRAMS: dict[tuple, Program | None] = {}
_MAX_PROGRAMS = 4096
#: How often each was met, shared by all walks (bounded too): a layer's full key, a block's ``shape_hint``. A
#: program is recorded on the third meeting (``RECORD_AT`` before it), since recording costs a few traced calls
#: and most blocks of a model, and many of its layers, are met once or twice.
MET: dict[Any, int] = {}
RECORD_AT = 2


def remember_program(key: tuple, program: Program | None) -> None:
    if len(PROGRAMS) >= _MAX_PROGRAMS:
        PROGRAMS.clear()
    PROGRAMS[key] = program


def forget() -> None:
    """Empty the programs and what was met (for measurements and tests of a first analysis)."""
    PROGRAMS.clear()
    MET.clear()
    _HINTS.clear()


def met(key: Any) -> bool:
    """Whether ``key`` was met twice before (it is once more now)."""
    n = MET.get(key, 0)
    if n >= RECORD_AT:
        return True
    if not n and len(MET) >= _MAX_PROGRAMS:
        MET.clear()
    MET[key] = n + 1
    return False


#: Each module's ``shape_hint``, by the user's module, while it lives: a repeat analysis reads its blocks' hints
#: without walking their subtrees again. A module changed since costs time, not correctness (``shape_hint``).
_HINTS: WeakKeyDictionary[Any, int | None] = WeakKeyDictionary()


def met_before(block: Any) -> bool:
    """Whether a block like this one (the walk's copy of a module; its ``shape_hint``) was met twice before, by
    this walk or earlier ones (``met``)."""
    hint = shape_hint(block.__dict__[_CALL].mod)
    return hint is not None and met(hint)


def shape_hint(m: Any) -> int | None:
    """A hash of a user's module's subtree as built (classes, attributes, weights' shapes and dtypes), kept
    (``_HINTS``): what says a block was met before without its exact key, whose reading of a subtree at each
    call would cost more than the tracing it saves on a block met once. It only decides whether the exact key
    (``block_key``) is read, so a hint gone stale (a module changed since, a forward that rebinds) costs time,
    not correctness. ``None``: an attribute or a weight cannot be read so (the block is no block)."""
    try:
        return _HINTS[m]
    except KeyError:
        hint = _HINTS[m] = _hint(m)
        return hint


def _hint(m: Any) -> int | None:
    kids = []
    for c in m.__dict__["_modules"].values():
        h = None if c is None else shape_hint(c)
        if h is None and c is not None:
            return None
        kids.append(h)
    try:
        return hash((type(m), *own_attributes(m), *kids,
                     *(None if t is None else (t.shape, t.dtype) for t in weights_of(m))))
    except Exception:  # an attribute whose hash fails, a weight without sizes (nested): traced, as block_key says
        return None
