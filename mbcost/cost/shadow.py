"""A walk's private copy of a module tree, whose every module call the walk sees.

``shadow_tree(model, wrap)`` copies each module of ``model``'s tree shallowly: a new object of the
same class whose attribute dict, parameter dict, buffer dict and child dict are new dicts holding the
same values (the same parameter tensors, the same hooks), children replaced by their copies. A
module registered in several places gets one copy, so sharing is kept. Each copy's ``_call_impl``
(what ``Module.__call__`` runs) is replaced by ``wrap(original, copy)``, so a walk knows when every
module of the tree is entered and left without torch's global module hooks, which every other
module in the process would pay for too.

The copies are the walk's own: whatever a forward rebinds (a cached anchor grid, a ``training``
flag, a parametrization's weight) lands on them, and the user's modules are never touched. A module
that cannot be copied this way (a TorchScript module, a class whose ``__new__`` needs arguments) is
used as it is; its ops are attributed to its nearest copied ancestor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from mbcost.cost.answers import tensors_in
from mbcost.cost.programs import layer_key, own_attributes
from mbcost.cost.torch_internals import CALL_ATTRS

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Frame", "WalkCall", "shadow_tree"]


@contextlib.contextmanager
def shadow_tree(model: nn.Module, wrap: Callable[[nn.Module, nn.Module], Callable[..., Any]],
                training: bool | None = None) -> Iterator[nn.Module]:
    """The copy of ``model``'s tree whose calls run ``wrap(original, copy)(*args, **kwargs)``; with
    ``training``, each copy's ``training`` flag is set to it (what ``Module.train`` would do).

    On leaving, the wrapped calls are taken off the copies: a call that refers back to its copy
    makes a reference cycle, which only Python's cyclic collector could free; without it the copies
    go as soon as the walk drops them."""
    made: dict[int, Any] = {}
    copies: list[tuple[Any, dict[str, Any]]] = []  # each copy and its attribute dict
    try:
        root = _copy(model, made, copies, wrap, training)
        for s, d in copies:
            if not _torch_nn_class(type(s)):
                _point_at_copies(s, d, made)
        yield root
    finally:
        for _s, d in copies:
            del d[_CALL]


def _point_at_copies(s: Any, d: dict[str, Any], made: dict[int, Any]) -> None:
    """In a copy ``s`` of a module whose class is not torch.nn's own, the plain lists, tuples and dicts
    it holds (``self.stages = [self.a, self.b]``) get the copies of the modules in them, so that calls
    through them are seen and what they rebind lands on the copies too."""
    for key, value in zip(*own_attributes(s), strict=True):
        kind = type(value)
        if kind is list or kind is tuple:
            if any(id(v) in made for v in value):
                d[key] = kind(made.get(id(v), v) for v in value)
        elif kind is dict and any(id(v) in made for v in value.values()):
            d[key] = {k: made.get(id(v), v) for k, v in value.items()}


#: What ``Module.__call__`` runs, and its compiled form (``torch_internals``).
_CALL, _COMPILED_CALL = CALL_ATTRS


@cache
def _torch_nn_class(cls: type) -> bool:
    """torch.nn's own classes keep modules only in ``_modules``."""
    return cls.__module__.startswith("torch.nn.")


def _copy(m: Any, made: dict[int, Any], copies: list[tuple[Any, dict[str, Any]]],
          wrap: Callable[[Any, Any], Any], training: bool | None) -> Any:
    """The copy of ``m`` and, recursively, of its children (a module-level function: a nested one
    that calls itself would be a reference cycle holding the walk until the next collection)."""
    s = made.get(id(m))
    if s is not None:
        return s
    cls = type(m)
    if not _copyable(cls):
        made[id(m)] = m
        return m
    s = object.__new__(cls)
    d = m.__dict__.copy()
    d["_parameters"] = d["_parameters"].copy()
    d["_buffers"] = d["_buffers"].copy()
    children = d["_modules"] = d["_modules"].copy()
    object.__setattr__(s, "__dict__", d)
    made[id(m)] = s
    if children:
        for key, child in children.items():
            if child is not None:
                children[key] = _copy(child, made, copies, wrap, training)
    d[_COMPILED_CALL] = None  # run eagerly, through the wrapped call
    if training is not None:
        d["training"] = training
    d[_CALL] = wrap(m, s)
    copies.append((s, d))
    return s


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
