"""Layer programs: the ATen calls one of torch.nn's own layers makes, recorded once and replayed.

A layer of a torch.nn class whose forward is a pure function of its settings (convolution,
normalization, activation, pooling, linear, dropout...) makes the same ATen calls every time it is
called with the same settings, weights' layouts and inputs' layouts. The walk records those calls
the first time (``Capture``): each argument becomes a slot (an input of the layer, one of its
parameters or buffers, an output of an earlier call) or a constant, and each call keeps the
memoised answer the walk's dispatch found for it. A later call with the same key (``layer_key``)
hands the same calls, with that call's own tensors, back to the walk (``Walk.replay_program``):
the layer's Python forward, torch's dispatcher and the dispatch mode are skipped. Every call is
still recorded and its lifetimes followed, from what the program kept of it (its record's bytes,
which of its tensors may be activations); in training, and for a call without a memoised answer,
by the same code as a traced call. ``tests/test_programs.py`` compares replayed layers with
op-by-op traced ones on models the project did not write.

Not replayed (traced as before): a layer with hooks of its own, a subclass of torch.nn's classes
(its forward may read anything), a layer whose settings hold something other than numbers, strings
and tuples of them, and a layer whose calls use a tensor that is none of its inputs, weights or
earlier outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from operator import itemgetter
from typing import Any

from mbcost.cost.torch_internals import CALL_ATTRS

__all__ = ["BLOCK", "PROGRAMS", "Capture", "Mark", "Program", "Slot", "Step", "fill", "layer_key", "remember_program",
           "weights_of"]

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
_SETTING_TYPES = (int, float, bool, str, type(None))
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
        if k == "forward" or not (type(v) in _SETTING_TYPES or type(v) is tuple
                                  and all(type(x) in _SETTING_TYPES for x in v)):
            return None
        names.append(k)
    if len(names) > 1:
        return itemgetter(*names)
    return (lambda d, k=names[0]: (d[k],)) if names else (lambda d: ())


def layer_key(layer: Any, blocks: bool = False) -> tuple | None:
    """What a module's calls depend on, besides its inputs. A pure torch.nn layer: its class, its
    settings and its parameters' and buffers' layouts (shape, strides, dtype, meta or not). With
    ``blocks``, any other module whose attributes are all settings (a block: ``block_key``). ``None``
    when the module is not replayable (see the module docstring)."""
    d = layer.__dict__
    cls = type(layer)
    rk = (cls, len(d))
    try:
        reader = _READERS[rk]
    except KeyError:
        reader = _READERS[rk] = _reader(cls, d)
    if reader is None or d["_modules"]:
        return block_key(layer) if blocks else None
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


def _setting(v: Any) -> bool:
    t = type(v)
    return t in _SETTING_TYPES or t is tuple and all(type(x) in _SETTING_TYPES for x in v) or isinstance(v, Enum)


#: Per class and attribute count: the names of a module's attributes that are not bookkeeping, and their getter.
_NAMES: dict[tuple[type, int], tuple[tuple[str, ...], Any]] = {}


def _names(d: dict) -> tuple[tuple[str, ...], Any]:
    names = tuple(k for k in d if k not in _BOOKKEEPING)
    if len(names) > 1:
        return names, itemgetter(*names)
    return names, (lambda d, k=names[0]: (d[k],)) if names else (lambda d: ())


def block_key(block: Any) -> tuple | None:
    """A block's key: per module of its subtree (breadth first, each once), its class, its attributes
    (all settings: numbers, strings, enums, tuples of them), its weights' layouts and its children's
    places, and which weights are shared; ``None`` when any module has hooks, another attribute, or is
    not the walk's copy. Its calls are a pure function of these and its inputs, as a torch.nn layer's
    are, as long as its forward reads nothing but its own attributes: a forward that rebinds one is
    caught when its program is made (``Capture.program``), and is traced from then on. Followed by
    the subtree's copies and the user's modules they copy (``Walk.layer`` takes them off)."""
    mods, users, key, ids = [block], [], [], []
    at = {id(block): 0}
    for m in mods:  # grows as children are found
        d = m.__dict__
        call = d.get(_CALL)
        if call is None or d["_forward_pre_hooks"] or d["_forward_hooks"] or d["_backward_pre_hooks"] \
                or d["_backward_hooks"]:  # not copied by the walk (TorchScript), or hooked
            return None
        users.append(call.mod)
        rk = (type(m), len(d))
        names = _NAMES.get(rk)
        if names is None:
            names = _NAMES[rk] = _names(d)
        try:
            values = names[1](d)
        except KeyError:  # same count, other names
            names = _names(d)
            values = names[1](d)
        for v in values:
            if type(v) not in _SETTING_TYPES and not _setting(v):
                return None
        params, buffers, kids = d["_parameters"], d["_buffers"], d["_modules"]
        layouts: Any = ()
        if params or buffers:
            layouts = []
            try:
                for t in (*params.values(), *buffers.values()):
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
            for c in kids.values():
                if c is not None and id(c) not in at:
                    at[id(c)] = len(mods)
                    mods.append(c)
                places.append(None if c is None else at[id(c)])
            places = (tuple(kids), tuple(places))
        key.append((type(m), names[0], values, layouts, places))
    if len(set(ids)) < len(ids):  # tied weights: which are the same tensor
        key.append(tuple(map(ids.index, ids)))
    return BLOCK, tuple(key), mods, users


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


@dataclass(frozen=True, slots=True)
class Mark:
    """A block's program, between its calls: a module call of the block starts (``enter``: the module's
    place in ``subtree``), ends (``enter`` and ``hold`` ``None``), or has held its arguments (``hold``:
    their slots) until now."""

    enter: int | None = None
    hold: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class Program:
    """The calls one layer call made, and its return value as a template."""

    steps: tuple[Step, ...]
    result: Any
    #: Whether the last call reads every tensor the layer was given: the call's arguments then live
    #: to its end without the walk saying so (``Lifetimes.hold``).
    holds: bool = False

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


def _slots(template: Any, out: list[int]) -> list[int]:
    """The slots in a template, in the order the walk lists an op's tensors."""
    t = type(template)
    if t is Slot:
        out.append(template.i)
    elif t is tuple or t is list:
        for v in template:
            _slots(v, out)
    elif t is dict:
        for v in template.values():
            _slots(v, out)
    return out


class Capture:
    """The calls a layer's forward makes while traced, turned into a ``Program`` afterwards."""

    def __init__(self, mods: list[Any] | None = None, copies: list[Any] | None = None) -> None:
        self.calls: list[Any] = []
        self.mods = mods  # a block's modules (the user's), in ``subtree`` order
        self.copies = copies  # and the walk's copies of them, which its forward runs on
        self.state = None if copies is None else [_state(m) for m in copies]

    def add(self, func: Any, args: tuple, kwargs: dict, out: Any, answer: Any, recorded: Any = None,
            free: bool = False) -> None:
        """One call: its arguments, result, memoised answer, the record it made (or ``None``), and
        whether it is free and reads no weight (``Step.free``)."""
        self.calls.append((func, args, kwargs, out, answer, recorded, free))

    def program(self, weights: list[Any], inputs: tuple, result: Any, tensor: type, op_info: Any) -> Program | None:
        """The program of these calls (``op_info(func)``: what the walk keeps of an op), or ``None``
        when a tensor in them is not the layer's own, or a block's forward rebound something on one
        of its modules, or returned something else than tensors and numbers."""
        if self.copies is not None and not all(map(_same, map(_state, self.copies), self.state)):
            return None
        slots: dict[int, int] = {}
        n = 0
        for t in inputs:
            slots.setdefault(id(t), n)
            n += 1
        own = set()  # the layer's weights' slots
        for t in weights:
            if id(t) not in slots:
                slots[id(t)] = n
                own.add(n)
            n += 1

        def template(v: Any) -> Any:
            if isinstance(v, tensor):
                i = slots.get(id(v))
                if i is None:
                    raise LookupError
                return Slot(i)
            if type(v) in (tuple, list):
                return type(v)(template(x) for x in v)
            if type(v) is dict:
                return {k: template(x) for k, x in v.items()}
            return v

        steps: list[Any] = []
        place = {} if self.mods is None else {id(m): i for i, m in enumerate(self.mods)}
        try:
            for call in self.calls:
                if type(call) is Mark:  # enter: the module; hold: the tensors
                    steps.append(call if call.hold is None and call.enter is None else Mark(
                        None if call.enter is None else place[id(call.enter)],
                        None if call.hold is None else tuple(slots[id(t)] for t in call.hold)))
                    continue
                func, args, kwargs, out, answer, record, free = call
                if func.namespace != "aten":  # a user's op: its formula may come and go (``op_info``)
                    return None
                targs, tkwargs = template(args), template(kwargs)
                top = tuple((pos, a.i) for pos, a in enumerate(targs) if type(a) is Slot)
                if tkwargs and _slots(tkwargs, []) or len(_slots(targs, [])) != len(top):
                    top = None
                results = (out,) if isinstance(out, tensor) else out
                if type(results) not in (tuple, list) or not all(isinstance(o, tensor) for o in results):
                    return None
                tensors = tuple(_slots(tkwargs, _slots(targs, [])))
                alias = None
                sizes = None if record is None else (record.input_bytes, record.output_bytes, record.weight_bytes)
                if answer is not None and answer.alias is not None:
                    returned = targs[answer.alias]
                    if type(returned) is Slot:
                        alias = returned.i
                    else:
                        sizes = None
                steps.append(Step(
                    func, op_info(func), targs, tkwargs, top, tensors, answer,
                    1 if isinstance(out, tensor) else len(results), sizes,
                    tuple(i for i in tensors if i not in own), alias,
                    free and (answer.alias is None or alias is not None)))
                for o in results:
                    slots.setdefault(id(o), n)
                    n += 1
            given = {slots[id(t)] for t in inputs if isinstance(t, tensor)}
            for leaf in _leaves(result, []):
                if not isinstance(leaf, (tensor, *_SETTING_TYPES)):
                    return None
            return Program(tuple(steps), template(result),
                           bool(steps) and type(steps[-1]) is Step and given <= set(steps[-1].reads))
        except LookupError:
            return None


def _state(m: Any) -> tuple:
    """What a block's forward could rebind on one of its modules: its attributes and its weights and children."""
    d = m.__dict__
    return (*d.items(), *d["_parameters"].items(), *d["_buffers"].items(), *d["_modules"].items())


def _same(after: tuple, before: tuple) -> bool:
    return len(after) == len(before) and all(a[0] == b[0] and a[1] is b[1] for a, b in zip(after, before, strict=True))


def _leaves(v: Any, out: list[Any]) -> list[Any]:
    if type(v) in (tuple, list):
        for x in v:
            _leaves(x, out)
    elif type(v) is dict:
        _leaves(tuple(v.values()), out)
    else:
        out.append(v)
    return out


def weights_of(layer: Any) -> list[Any]:
    """A layer's parameters and buffers, in the order ``layer_key`` reads them (``None`` kept)."""
    d = layer.__dict__
    return [*d["_parameters"].values(), *d["_buffers"].values()]


#: Programs by layer key and input layouts, shared by all walks (bounded: cleared when full).
PROGRAMS: dict[tuple, Program | None] = {}
_MAX_PROGRAMS = 4096


def remember_program(key: tuple, program: Program | None) -> None:
    if len(PROGRAMS) >= _MAX_PROGRAMS:
        PROGRAMS.clear()
    PROGRAMS[key] = program
