"""A walk's private copy of a module tree, whose every module call the walk sees.

``Shadow(model, walk, training)`` copies each module of ``model``'s tree shallowly: a new object of the
same class whose attribute dict, parameter dict, buffer dict and child dict are new dicts holding the
same values (the same parameter tensors, the same hooks), children replaced by their copies. A
module registered in several places gets one copy, so sharing is kept. Copies are made when the walk
first needs them (a child when its parent's child dict is first read), so the subtree of a block
whose program is replayed (``mbcost.cost.programs``) is read, never copied. Each copy's ``_call_impl``
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
    """A walk's copy of ``model``'s tree (its root: ``calls``), each copy's calls run by a ``WalkCall`` of ``walk`` and
    its ``training`` flag set to ``training`` (what ``Module.train`` would do), and what the walk needs to
    know of the tree (names, leaves, parameters, weights' ids and storages: ``RecordBook``), read first.

    A module is copied when the walk first needs it (``copy``): its children when something first reads
    its child dict (``_Children``), a module a container holds when the container is copied. A block
    whose program is replayed (``programs.block_key``) is read where it stands, and its subtree is never
    copied."""

    def __init__(self, model: nn.Module, walk: Any, training: bool) -> None:
        self.walk = walk
        self.training = training
        self.made: dict[int, Any] = {}  # each copy (or the module itself, when it is not copied), by the module's id
        self.copies: list[dict[str, Any]] = []  # the copies' attribute dicts
        self.lazy: list[_Children] = []  # the copies' child dicts as made (``_Children``)
        self.shared: dict[int, Any] = {}  # a container held by several modules gets one copy
        self.names: dict[nn.Module, str] = {}
        self.order: list[nn.Module] = []
        self.ids: set[int] = set()  # the modules' ids
        self.seen: set[int] = set()  # parameter ids
        self.buffer_ids: set[int] = set()
        self.keys: dict[int, int] = {}  # each weight's storage id (views of a weight share it), by its id
        self.counts: dict[nn.Module, int] = {}
        self.total = self.buffers = self.trainable = 0
        self.nonfloat_buffers = self.nonfloat_buffer_bytes = 0  # integer and boolean buffers
        self._visit(model, "")
        self.model = model
        # a class with its own ``train`` decides its children's flags: copies start with the modules' own
        self.own_train = any(_own_train(type(m)) for m in self.names)
        self.leaves = frozenset(m for m in self.order if not m._modules)
        self.own_params = {self.names[m]: self.counts[m] for m in self.order}
        self.weight_ids = self.seen | self.buffer_ids  # the tensors that are weights, not activations

    def _visit(self, m: Any, prefix: str) -> None:
        """Read ``m`` and its subtree (a module registered twice keeps its last name, as
        ``named_modules(remove_duplicate=False)`` would give it; its parameters count once, for their first
        owner in registration order)."""
        d = m.__dict__
        if m not in self.names:
            self.order.append(m)
            self.ids.add(id(m))
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
        for key, child in d["_modules"].items():
            if child is not None:
                self._visit(child, f"{prefix}.{key}" if prefix else key)

    def copy(self, m: Any) -> Any:
        """The walk's copy of ``m``, a module of the tree, made now if it was not: a new object of its class
        whose attribute, parameter and buffer dicts are new dicts holding the same values, and whose child
        dict gives the children's copies (``_Children``); ``m`` itself when it cannot be copied."""
        s = self.made.get(id(m))
        if s is not None:
            return s
        cls = type(m)
        if not _copyable(cls):
            self.made[id(m)] = m
            return m
        s = self.made[id(m)] = object.__new__(cls)
        d = m.__dict__.copy()
        d["_parameters"] = d["_parameters"].copy()
        d["_buffers"] = d["_buffers"].copy()
        children = d["_modules"]
        if children:
            d["_modules"] = lazy = _Children(children)
            lazy.shadow, lazy.owner = self, d
            self.lazy.append(lazy)
        else:
            d["_modules"] = {}
        object.__setattr__(s, "__dict__", d)
        d[_COMPILED_CALL] = None  # run eagerly, through the walk's call
        d["training"] = m.training if self.own_train else self.training
        d[_CALL] = WalkCall(self.walk, m, s)
        self.copies.append(d)
        if not _torch_nn_class(cls):  # the containers it holds, and the modules in them, are copies too
            for key, value in zip(*own_attributes(s), strict=True):
                if type(value) in _CONTAINERS:
                    d[key] = self._copied(value)
        if type(flat_weights(s)) is list:  # a recurrent layer's weight list (``torch_internals.flat_weights``)
            self.walk.recurrent_copy(s)
        return s

    def unmade(self, m: Any) -> bool:
        """Whether ``m`` is a module of the tree that the walk would copy and has not yet."""
        return id(m) not in self.made and id(m) in self.ids and _copyable(type(m))

    def node(self, m: Any) -> Any:
        """A module of the tree as a block's key reads it: its copy when there is one, else the module (a
        copy would hold what it holds)."""
        return self.made.get(id(m), m)

    def copies_of(self, mods: list[Any]) -> list[Any]:
        """``mods`` (a block's ``node``s) as the walk's copies, each made now if it was not, with its children's
        copies in place (what a forward that rebinds nothing leaves as it is: ``Capture``)."""
        copies = [m if _CALL in m.__dict__ else self.copy(m) for m in mods]
        for s in copies:
            children = s.__dict__["_modules"]
            if type(children) is _Children:
                children.made()
        return copies

    def _copied(self, value: Any) -> Any:
        """A list, dict or set (at any depth) as the walk's own copy, one per original (``shared``: by its
        id), each module of the tree in it as its copy; a tuple is rebuilt only when something in it was
        copied."""
        kind = type(value)
        if kind not in _CONTAINERS:
            return self.copy(value) if id(value) in self.ids else value
        shared = self.shared
        copied = shared.get(id(value))
        if copied is not None:
            return copied
        if kind is tuple:
            items = tuple(v if type(v) in SETTING_TYPES else self._copied(v) for v in value)
            copied = value if all(a is b for a, b in zip(items, value, strict=True)) else items
        else:
            copied = shared[id(value)] = kind()  # registered first: a container that holds itself
            if kind is dict:
                copied.update((k, v if type(v) in SETTING_TYPES else self._copied(v)) for k, v in value.items())
            else:
                (copied.extend if kind is list else copied.update)(
                    v if type(v) in SETTING_TYPES else self._copied(v) for v in value)
        shared[id(value)] = copied
        return copied

    @contextlib.contextmanager
    def calls(self) -> Iterator[nn.Module]:
        """The copy of the tree, ready to be called; a class with its own ``train`` has it called on the
        copy of the root instead, with the flags as they were, when a flag changes.

        On leaving, the walk's calls are taken off the copies, and the child dicts not read let go of the
        walk: a call that refers back to its copy makes a reference cycle, which only Python's cyclic
        collector could free; without it the copies go as soon as the walk drops them."""
        try:
            root = self.copy(self.model)
            if self.own_train and (self.training or any(m.training for m in self.names)):
                root.train(self.training)
            yield root
        finally:
            for d in self.copies:
                d.pop(_CALL, None)
            for lazy in self.lazy:
                lazy.shadow = lazy.owner = None
            self.walk = None


class _Children(dict):
    """A copy's child dict before anything reads it: it holds the user's children, and hands out their
    copies (``Shadow.copy``) from the first read on, having put them in its place in the copy (``owner``) and
    in itself. A block's key reads the children without copying them (``dict.values``)."""

    __slots__ = ("owner", "shadow")

    def made(self) -> dict[str, Any]:
        """Itself, holding the children's copies: made on the first read, and then the copy's child dict
        (a plain dict, read at full speed from then on)."""
        shadow = self.shadow
        if shadow is not None and self.owner.get("_modules") is self:
            ids = shadow.ids  # a module the forward put here is no module of the tree: called as it is
            made = {k: shadow.copy(c) if id(c) in ids else c for k, c in dict.items(self)}
            dict.update(self, made)
            self.owner["_modules"] = made
        return self

    def __getitem__(self, key: str) -> Any:
        return dict.__getitem__(self.made(), key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.made().owner["_modules"][key] = value
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        del self.made().owner["_modules"][key]
        dict.__delitem__(self, key)

    def __iter__(self) -> Iterator[str]:
        return dict.__iter__(self.made())

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self.made(), key, default)

    def values(self) -> Any:
        return dict.values(self.made())

    def items(self) -> Any:
        return dict.items(self.made())

    def pop(self, key: str, *default: Any) -> Any:
        self.made().owner["_modules"].pop(key, *default)
        return dict.pop(self, key, *default)

    def copy(self) -> dict[str, Any]:
        return dict(dict.items(self.made()))


_CONTAINERS = (list, dict, set, tuple)


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
