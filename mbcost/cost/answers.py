"""What the walk knows of an op before running it: its table entry (``OpInfo``) and memoised answers.

A shortcut op's answer (its outputs' layouts, priced record and scratch) is a pure function of its
signature (shapes, strides, dtypes, scalars: ``signature``), like the cache of ``FakeTensorMode``'s
dispatch, so a repeated block or a second analysis reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mbcost.cost.ops import SHORTCUTS, adapter_of, is_inplace, op_name
from mbcost.cost.records import Priced
from mbcost.cost.torch_internals import storage_key

__all__ = ["SCALARS", "Answer", "OpInfo", "answer_of", "forget", "op_info", "recall", "remember", "remembered",
           "signature", "tensors_in"]


def tensors_in(args: Any, out: list[Any], tensor: type) -> list[Any]:
    """The tensors among an op's arguments, lists of tensors (``cat``) included, appended to ``out``."""
    for a in args:
        if isinstance(a, tensor):
            out.append(a)
        elif type(a) in (list, tuple) and a and not isinstance(a[0], int):
            tensors_in(a, out, tensor)
    return out


@dataclass(frozen=True)
class OpInfo:
    """What the walker needs to know of one ATen overload, looked up once per overload."""

    packet: str
    name: str
    inplace: bool
    shortcut: Any
    adapter: Any
    memoised: bool  # whether its shortcut's answer may be memoised (``signature``)


_OP_INFO: dict[Any, OpInfo] = {}
#: Ops whose shortcut also reads global state: true division of integers gives the default dtype.
_NOT_MEMOISED = frozenset({"div", "div_"})


def op_info(func: Any) -> OpInfo:
    """The ``OpInfo`` of an ATen overload (made on its first call)."""
    info = _OP_INFO.get(func)
    if info is None:
        name = op_name(func)
        packet = func.overloadpacket.__name__ if func.namespace == "aten" else name
        info = OpInfo(packet, name, is_inplace(func), SHORTCUTS.get(packet), adapter_of(name),
                      packet not in _NOT_MEMOISED and func.namespace == "aten")
        if func.namespace == "aten":  # a user's op is looked up on each call: its formula may come and go
            _OP_INFO[func] = info
    return info


@dataclass(frozen=True, slots=True)
class Answer:
    """What one op call gave, for any later call with the same signature: its outputs' layouts (or
    which argument it returns, in place), its priced record and its scratch. Shortcuts and adapters
    read only shapes, strides, dtypes and scalars, so the answer is a pure function of the signature."""

    #: (shape, strides, dtype, base, offset) of each output: a new tensor (``base`` None) or a view of
    #: argument ``base`` at ``offset`` elements from its own offset
    outs: tuple[tuple[Any, tuple[int, ...], Any, int | None, int], ...]
    alias: int | None  # the argument returned (an in-place op); None: new outputs
    single: bool  # one tensor, not a tuple
    #: The op's call, cost and category; ``None`` when it makes no record (its adapter calls it free,
    #: a view or a copy, or it has no adapter).
    priced: Priced | None
    scratch: int
    views: bool = False  # whether an output is a view of an argument

    def replay(self, args: tuple, empty_strided: Any, device: Any) -> Any:
        """The op's result for a call with this signature: the argument it returns, or new tensors."""
        if self.alias is not None:
            return args[self.alias]
        if self.single:
            shape, strides, dtype, base, offset = self.outs[0]
            if base is None:
                return empty_strided(shape, strides, dtype=dtype, device=device)
            return args[base].as_strided(shape, strides, args[base].storage_offset() + offset)
        return tuple(empty_strided(shape, strides, dtype=dtype, device=device) if base is None
                     else args[base].as_strided(shape, strides, args[base].storage_offset() + offset)
                     for shape, strides, dtype, base, offset in self.outs)


#: Answers by signature, shared by all walks (bounded: cleared when full).
_ANSWERS: dict[tuple, Answer] = {}
_MAX_ANSWERS = 16384
SCALARS = (int, float, bool, str, type(None))


def signature(func: Any, args: tuple, kwargs: dict, tensor: type, settings: tuple[type, ...] = ()) -> tuple | None:
    """The op and everything its shortcut, adapter and meta kernel read: each tensor's shape, strides,
    dtype and whether it is on meta (lists of tensors too: ``cat``), and the other arguments with
    their types (``settings``: the types of torch's own hashable values an op may take, a dtype or a
    memory format); ``None`` when not memoisable (0-dim tensors, whose type promotion depends on more
    than their dtype; a device, a generator or any other object)."""
    key: list[Any] = [func]
    for name, v in kwargs.items():  # a keyword's value: a scalar, a dtype, a memory format or scalars
        if type(v) in SCALARS or type(v) in settings:
            key.append((name, type(v), v))
        elif type(v) in (list, tuple) and all(isinstance(x, SCALARS) for x in v):
            key.append((name, type(v), tuple((type(x), x) for x in v)))
        else:
            return None
    for a in args:
        if isinstance(a, tensor):
            shape = a.shape
            if not shape:
                return None
            key.append((shape, a.stride(), a.dtype, a.is_meta))
        elif type(a) in SCALARS or type(a) in settings:
            key.append((type(a), a))
        elif type(a) in (list, tuple):
            if a and isinstance(a[0], tensor):
                key.append(_tensor_list(a, tensor))
                if key[-1] is None:
                    return None
            elif any(not isinstance(v, SCALARS) for v in a):
                return None
            else:
                key.append((type(a), tuple((type(v), v) for v in a)))
        else:
            return None  # a device, a generator...: let the shortcut answer each time
    return tuple(key)


def _tensor_list(a: Any, tensor: type) -> tuple | None:
    """The signature of a list of tensors (``cat``'s), or ``None`` when an item is not a tensor of rank 1 or more."""
    items = []
    for v in a:
        if not isinstance(v, tensor) or not v.shape:
            return None
        items.append((v.shape, v.stride(), v.dtype, v.is_meta))
    return type(a), tuple(items)


def answer_of(args: tuple, out: Any, tensor: type, priced: Priced | None, scratch: int) -> Answer | None:
    """The answer an op call gave, for later calls with its signature; ``None`` when its outputs are
    not new meta tensors, views of a meta argument of theirs (a free op: a view, ``unbind``) nor one
    of its arguments."""
    for i, a in enumerate(args):
        if out is a:
            return Answer((), i, True, priced, scratch)
    outs = (out,) if isinstance(out, tensor) else out
    if type(outs) not in (tuple, list) or not all(isinstance(o, tensor) and o.is_meta for o in outs) \
            or any(o is a for o in outs for a in args):
        return None
    bases = {storage_key(a): i for i, a in enumerate(args) if isinstance(a, tensor) and a.is_meta}
    shared = len(bases) < sum(isinstance(a, tensor) and a.is_meta for a in args)  # which one it views is unknown
    layouts = []
    for o in outs:
        base = bases.get(storage_key(o))
        if base is not None and (shared or priced is not None or o.dtype != args[base].dtype):
            return None
        offset = 0 if base is None else o.storage_offset() - args[base].storage_offset()
        layouts.append((o.shape, o.stride(), o.dtype, base, offset))
    return Answer(tuple(layouts), None, isinstance(out, tensor), priced, scratch,
                  any(base is not None for _, _, _, base, _ in layouts))


def recall(key: tuple) -> Answer | None:
    """The answer memoised for a signature, if any."""
    return _ANSWERS.get(key)


def remember(key: tuple, answer: Answer | None) -> None:
    """Memoise an answer for its signature (nothing for ``None``)."""
    if answer is not None:
        if len(_ANSWERS) >= _MAX_ANSWERS:
            _ANSWERS.clear()
        _ANSWERS[key] = answer


def forget() -> None:
    """Drop every memoised answer (for tests that walk from a cold start)."""
    _ANSWERS.clear()


def remembered() -> int:
    """How many answers are memoised."""
    return len(_ANSWERS)
