"""A walk's private copy of a module tree, whose every module call the walk sees.

``Shadow(model, walk, training)`` copies each module of ``model``'s tree shallowly: a new object of the
same class whose attribute dict, parameter dict, buffer dict and child dict are new dicts holding the
same values (the same parameter tensors, the same hooks), children replaced by their copies. A
module registered in several places gets one copy, so sharing is kept. Each copy's ``_call_impl``
(what ``Module.__call__`` runs) is replaced by the walk's ``WalkCall``, so a walk knows when every
module of the tree is entered and left without torch's global module hooks, which every other
module in the process would pay for too.

The copies are the walk's own: whatever a forward rebinds (a cached anchor grid, a ``training``
flag, a parametrization's weight), or fills in place in a list, dict or set it holds (a cache of
attention biases), at any depth, lands on them, and the user's modules are never touched. A module
that cannot be copied this way (a TorchScript module, a class whose ``__new__`` needs arguments) is
used as it is; its ops are attributed to its nearest copied ancestor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from mbcost.cost.answers import tensors_in
from mbcost.cost.programs import SETTING_TYPES, layer_key, own_attributes
from mbcost.cost.torch_internals import CALL_ATTRS, flat_weights, storage_key

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Frame", "Shadow", "WalkCall"]


class Shadow:
    """A walk's copy of ``model``'s tree (``root``), each copy's calls run by a ``WalkCall`` of ``walk`` and
    its ``training`` flag set to ``training`` (what ``Module.train`` would do), and what the walk needs to
    know of the tree (names, leaves, parameters, weights' ids and storages: ``RecordBook``), read in the same
    visit."""

    def __init__(self, model: nn.Module, walk: Any, training: bool) -> None:
        self.training = training
        self.made: dict[int, Any] = {}
        self.copies: list[dict[str, Any]] = []  # the copies' attribute dicts
        self.others: list[tuple[Any, dict[str, Any]]] = []  # copies of classes not torch.nn's own
        self.recurrent: list[Any] = []  # copies that hold a weight list (``torch_internals.flat_weights``)
        self.names: dict[nn.Module, str] = {}
        self.order: list[nn.Module] = []
        self.seen: set[int] = set()  # parameter ids
        self.buffer_ids: set[int] = set()
        self.keys: dict[int, int] = {}  # each weight's storage id (views of a weight share it), by its id
        self.counts: dict[nn.Module, int] = {}
        self.total = self.buffers = self.trainable = 0
        self.nonfloat_buffers = self.nonfloat_buffer_bytes = 0  # integer and boolean buffers
        self.root = self._visit(model, "", walk)
        self.leaves = frozenset(m for m in self.order if not m._modules)
        self.own_params = {self.names[m]: self.counts[m] for m in self.order}
        self.weight_ids = self.seen | self.buffer_ids  # the tensors that are weights, not activations

    def _visit(self, m: Any, prefix: str, walk: Any) -> Any:
        """Read ``m`` (a module registered twice keeps its last name, as ``named_modules(remove_duplicate=False)``
        would give it; its parameters count once, for their first owner in registration order) and, with
        ``walk``, return its copy, its children's copies in it (a method: a nested function that calls
        itself would be a reference cycle holding the walk until the next collection)."""
        d = m.__dict__
        if m not in self.names:
            self.order.append(m)
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
            self.counts[m] = n
            self.total += n
        self.names[m] = prefix
        children = d["_modules"]
        s = self.made.get(id(m)) if walk else None
        cls = type(m)
        if s is not None or not walk or not _copyable(cls):  # read only: copied already, or not copied
            if walk and s is None:
                self.made[id(m)] = m
            for key, child in children.items():
                if child is not None:
                    self._visit(child, f"{prefix}.{key}" if prefix else key, None)
            return m if s is None else s
        s = object.__new__(cls)
        d = d.copy()
        d["_parameters"] = d["_parameters"].copy()
        d["_buffers"] = d["_buffers"].copy()
        children = d["_modules"] = children.copy()
        object.__setattr__(s, "__dict__", d)
        self.made[id(m)] = s
        for key, child in children.items():
            if child is not None:
                children[key] = self._visit(child, f"{prefix}.{key}" if prefix else key, walk)
        d[_COMPILED_CALL] = None  # run eagerly, through the walk's call
        d["training"] = self.training
        d[_CALL] = WalkCall(walk, m, s)
        self.copies.append(d)
        if not _torch_nn_class(cls):
            self.others.append((s, d))
        if type(flat_weights(s)) is list:
            self.recurrent.append(s)
        return s

    @contextlib.contextmanager
    def calls(self) -> Iterator[nn.Module]:
        """The copy of the tree, ready to be called: the plain lists, tuples and dicts its modules hold
        point at the copies (``_point_at_copies``), and a class with its own ``train`` has it called on the
        copy of the root instead, with the flags as they were, when a flag changes.

        On leaving, the walk's calls are taken off the copies: a call that refers back to its copy
        makes a reference cycle, which only Python's cyclic collector could free; without it the copies
        go as soon as the walk drops them."""
        try:
            shared: dict[int, Any] = {}  # a container held by several modules gets one copy
            for s, d in self.others:
                _point_at_copies(s, d, self.made, shared)
            if any(_own_train(type(m)) for m in self.names):
                for m in self.names:
                    if self.made.get(id(m), m) is not m:
                        self.made[id(m)].__dict__["training"] = m.training
                if self.training or any(m.training for m in self.names):
                    self.root.train(self.training)
            yield self.root
        finally:
            for d in self.copies:
                d.pop(_CALL, None)


def _point_at_copies(s: Any, d: dict[str, Any], made: dict[int, Any], shared: dict[int, Any]) -> None:
    """In a copy ``s`` of a module whose class is not torch.nn's own, the plain containers it holds are the
    walk's own copies (``_copied``), so that calls through them are seen (``self.stages = [self.a, self.b]``)
    and what a forward puts in them in place (a cache of attention biases) lands on the copies too."""
    for key, value in zip(*own_attributes(s), strict=True):
        if type(value) in _CONTAINERS:
            d[key] = _copied(value, made, shared)


_CONTAINERS = (list, dict, set, tuple)


def _copied(value: Any, made: dict[int, Any], shared: dict[int, Any]) -> Any:
    """A list, dict or set (at any depth) as the walk's own copy, one per original (``shared``: by its id), and
    each module in it as its copy (``made``); a tuple is rebuilt only when something in it was copied."""
    kind = type(value)
    if kind not in _CONTAINERS:
        return made.get(id(value), value)
    copied = shared.get(id(value))
    if copied is not None:
        return copied
    if kind is tuple:
        items = tuple(v if type(v) in SETTING_TYPES else _copied(v, made, shared) for v in value)
        copied = value if all(a is b for a, b in zip(items, value, strict=True)) else items
    else:
        copied = shared[id(value)] = kind()  # registered first: a container that holds itself
        if kind is dict:
            copied.update((k, v if type(v) in SETTING_TYPES else _copied(v, made, shared)) for k, v in value.items())
        else:
            (copied.extend if kind is list else copied.update)(
                v if type(v) in SETTING_TYPES else _copied(v, made, shared) for v in value)
    shared[id(value)] = copied
    return copied


#: What ``Module.__call__`` runs, and its compiled form (``torch_internals``).
_CALL, _COMPILED_CALL = CALL_ATTRS


@cache
def _torch_nn_class(cls: type) -> bool:
    """torch.nn's own classes keep modules only in ``_modules``."""
    return cls.__module__.startswith("torch.nn.")


@cache
def _own_train(cls: type) -> bool:
    """Whether ``cls`` has a ``train`` method of its own."""
    from torch.nn import Module

    return cls.train is not Module.train


@cache
def _copyable(cls: type) -> bool:
    """Whether modules of ``cls`` can be copied this way: not TorchScript, and made by
    ``object.__new__`` (torch.nn's classes all are)."""
    from torch.jit import ScriptModule

    return not issubclass(cls, ScriptModule) and all(
        c.__dict__.get("__new__") in (None, object.__new__) for c in cls.__mro__ if c is not object)


class Frame:
    """A module call in progress: the module, and whether it has made no record yet."""

    __slots__ = ("first", "mod")

    def __init__(self, mod: Any) -> None:
        self.mod, self.first = mod, True


class WalkCall:
    """What ``Module.__call__`` runs for one module of a walk's copy of the tree (``shadow.py``):
    the ops inside are ``mod``'s, its arguments live until it returns, and a pure torch.nn layer
    replays its program (``Walk.layer``). A small object rather than a closure: the walk makes one
    per module, and each is one object for Python's collector to scan, not nine."""

    __slots__ = ("copy", "mod", "walk")

    def __init__(self, walk: Any, mod: Any, copy: Any) -> None:
        self.walk, self.mod, self.copy = walk, mod, copy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        walk, copy = self.walk, self.copy
        walk.enter(self.mod)
        held = False
        try:
            if walk.replay and not kwargs:
                key = layer_key(copy, walk.blocks)
                if key is not None:
                    held = True
                    return walk.layer(copy, key, args)  # holds the arguments itself
            d = copy.__dict__
            if walk.plain and not (d["_forward_pre_hooks"] or d["_forward_hooks"] or d["_backward_pre_hooks"]
                                   or d["_backward_hooks"]):
                return copy.forward(*args, **kwargs)  # what Module._call_impl does without hooks
            return walk.call_impl(copy, *args, **kwargs)  # hooks, then forward, as Module.__call__ runs them
        finally:
            walk.leave()
            if walk.lifetimes is not None and args and not held:
                walk.hold(tensors_in(args, [], walk.tensor_type))
