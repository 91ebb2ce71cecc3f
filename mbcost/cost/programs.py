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
from operator import itemgetter
from typing import Any

from mbcost.cost.torch_internals import CALL_ATTRS

__all__ = ["PROGRAMS", "Capture", "Program", "Slot", "Step", "fill", "layer_key", "remember_program", "weights_of"]

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


def layer_key(layer: Any) -> tuple | None:
    """What a pure torch.nn layer's calls depend on, besides its inputs: its class, its settings and
    its parameters' and buffers' layouts (shape, strides, dtype, meta or not). ``None`` when the
    layer is not replayable (see the module docstring)."""
    d = layer.__dict__
    cls = type(layer)
    rk = (cls, len(d))
    try:
        reader = _READERS[rk]
    except KeyError:
        reader = _READERS[rk] = _reader(cls, d)
    if reader is None or d["_modules"]:
        return None
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

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple, dict, Any, Any, Any]] = []

    def add(self, func: Any, args: tuple, kwargs: dict, out: Any, answer: Any, recorded: Any = None) -> None:
        """One call: its arguments, result, memoised answer and the record it made (or ``None``)."""
        self.calls.append((func, args, kwargs, out, answer, recorded))

    def program(self, layer: Any, inputs: tuple, result: Any, tensor: type, op_info: Any) -> Program | None:
        """The program of these calls (``op_info(func)``: what the walk keeps of an op), or ``None``
        when a tensor in them is not the layer's own."""
        slots: dict[int, int] = {}
        n = 0
        for t in inputs:
            slots.setdefault(id(t), n)
            n += 1
        own = set()  # the layer's weights' slots
        for t in weights_of(layer):
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

        steps = []
        try:
            for func, args, kwargs, out, answer, record in self.calls:
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
                    tuple(i for i in tensors if i not in own), alias))
                for o in results:
                    slots.setdefault(id(o), n)
                    n += 1
            given = {slots[id(t)] for t in inputs if isinstance(t, tensor)}
            return Program(tuple(steps), template(result), bool(steps) and given <= set(steps[-1].reads))
        except LookupError:
            return None


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
