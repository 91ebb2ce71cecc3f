"""ATen ops as real models issue them in a training forward, replayed one at a time under
``torch.autograd.graph.saved_tensors_hooks``: what autograd really saves for each op's backward, next to
what ``mbcost.cost.training.saved_for_backward`` (the rule the engine applies) says it saves.

``capture(model, *args)`` runs the model's forward (training mode, gradients on) under a dispatch mode
and keeps one call per distinct op signature: the op, copies of its arguments, which tensors are weights
(parameters, buffers, or views of them) and which require a gradient. ``replay(call)`` runs that op again
on fresh copies, the activations that required a gradient made non-leaf tensors of leaves that do (so
in-place ops are allowed), weights leaves that require one, and reads every tensor its backward node
packs. A packed tensor is the op's input, its output or a new tensor autograd made (a copy); weights are
left out on both sides (they exist anyway). Bytes are compared per distinct storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from mbcost.cost.ops import is_inplace, op_name
from mbcost.cost.training import saved_for_backward

__all__ = ["Call", "Check", "capture", "check", "replay"]


@dataclass
class Call:
    """One op call of a real forward: arguments copied, with each tensor's role."""

    func: Any
    args: tuple
    kwargs: dict
    weight: list[bool] = field(default_factory=list)  # per tensor, in ``_flat`` order
    grad: list[bool] = field(default_factory=list)
    where: str = ""


def _flat(x: Any, out: list) -> list:
    if isinstance(x, torch.Tensor):
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _flat(v, out)
    elif isinstance(x, dict):
        for v in x.values():
            _flat(v, out)
    return out


def _signature(func: Any, args: tuple, kwargs: dict, weights: set[int]) -> tuple:
    def one(a: Any) -> Any:
        if isinstance(a, torch.Tensor):
            return (tuple(a.shape), a.stride(), a.dtype, a.requires_grad, a.untyped_storage()._cdata in weights)
        if isinstance(a, (list, tuple)):
            return tuple(one(v) for v in a)
        return repr(a)
    return (func, one(args), one(tuple(kwargs.items())))


class _Capture(TorchDispatchMode):
    def __init__(self, weights: set[int], calls: dict, label: str) -> None:
        super().__init__()
        self.weights, self.calls, self.label = weights, calls, label

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        tensors = _flat((args, kwargs), [])
        if any(t.requires_grad for t in tensors) and torch.is_grad_enabled():
            key = _signature(func, args, kwargs, self.weights)
            if key not in self.calls:
                copy = tree_map(lambda a: a.detach().clone() if isinstance(a, torch.Tensor) else a, (args, kwargs))
                self.calls[key] = Call(func, copy[0], copy[1],
                                       [t.untyped_storage()._cdata in self.weights for t in tensors],
                                       [t.requires_grad for t in tensors], self.label)
        return func(*args, **kwargs)


def capture(model: torch.nn.Module, *args: Any, calls: dict | None = None, label: str = "") -> dict:
    """Distinct op calls of ``model``'s training forward (added to ``calls``), keyed by signature."""
    calls = {} if calls is None else calls
    weights = {t.untyped_storage()._cdata for t in (*model.parameters(), *model.buffers())}
    model.train()
    with torch.enable_grad(), _Capture(weights, calls, label):
        model(*args)
    return calls


@dataclass(frozen=True)
class Check:
    """One op's saved bytes: by autograd (``real``) and by the rule (``rule``), activations only."""

    op: str
    real: int
    rule: int
    real_roles: tuple[str, ...]
    rule_roles: tuple[str, ...]
    where: str


def _nbytes(t: torch.Tensor) -> int:
    return t.untyped_storage().nbytes()


def replay(call: Call) -> tuple[list[torch.Tensor], list[torch.Tensor], set[int], list[Any]]:
    """Run ``call`` again under saved-tensor hooks: its tensors (as passed), outputs, weight ids and
    what its backward packed."""
    flat_in = _flat((call.args, call.kwargs), [])
    fresh: list[torch.Tensor] = []
    for t, w, g in zip(flat_in, call.weight, call.grad, strict=True):
        t = t.detach().clone()
        if g and w:
            t.requires_grad_()
        elif g:
            t = t.requires_grad_().clone()  # a non-leaf: in-place ops on it are allowed
        fresh.append(t)
    it = iter(fresh)

    def swap(a: Any) -> Any:
        return next(it) if isinstance(a, torch.Tensor) else a

    args, kwargs = tree_map(swap, (call.args, call.kwargs))
    weight_ids = {id(t) for t, w in zip(_flat((args, kwargs), []), call.weight, strict=True) if w}
    packed: list[Any] = []
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        out = call.func(*args, **kwargs)
    return _flat((args, kwargs), []), _flat(out, []), weight_ids, packed


def check(call: Call) -> Check:
    """Real saved bytes of one call against the rule's."""
    tensors, outputs, weight_ids, packed = replay(call)
    name = op_name(call.func)
    role_of: dict[int, str] = {}
    for i, t in enumerate(tensors):
        role_of.setdefault(t.untyped_storage()._cdata, "weight" if id(t) in weight_ids else f"in{i}")
    for j, t in enumerate(outputs):
        role_of.setdefault(t.untyped_storage()._cdata, f"out{j}")
    size = {t.untyped_storage()._cdata: _nbytes(t) for t in (*tensors, *outputs)}
    real: dict[Any, int] = {}
    for t in packed:
        if not isinstance(t, torch.Tensor):
            continue
        key = t.untyped_storage()._cdata
        role = role_of.get(key, f"new{len(real)}")
        if role != "weight":
            real[role if role.startswith(("in", "out")) else (role, key)] = _nbytes(t)
    grads = {id(t) for t in tensors if t.requires_grad}
    saved, copies = saved_for_backward(name, tensors, outputs, weights=weight_ids, grads=grads,
                                       inplace=is_inplace(call.func))
    rule: dict[Any, int] = {}
    for t in saved:
        key = t.untyped_storage()._cdata
        rule[role_of.get(key, "?")] = size.get(key, _nbytes(t))
    if copies:
        rule["copy"] = copies
    return Check(str(call.func), sum(real.values()), sum(rule.values()),
                 tuple(sorted(str(r) if isinstance(r, str) else "new" for r in real)), tuple(sorted(rule)), call.where)
