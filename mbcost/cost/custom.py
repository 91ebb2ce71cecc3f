"""A user's own ops: ``torch.library`` custom ops counted by a formula the user gives.

A custom op (with a fake kernel, so that it runs on the meta device) is listed as uncounted until a
formula is registered for it: for the process (``register_op``) or for one analysis (``analyze(...,
custom_ops={name: formula})``, ahead of the first). The formula is called as FlopCounterMode calls one: the
op's arguments with every tensor replaced by its shape (a tuple of ints), and ``out_shape=`` the output's.
It returns the op's MACs (an ``int``) or an ``OpCost``. Its record's kind is ``custom``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from mbcost.cost.formulas import OpCost, register_formula
from mbcost.cost.readers import OpCall
from mbcost.errors import SpecError, first_line

__all__ = ["OpFormula", "custom_adapter", "custom_ops_in", "qualified_name", "register_op", "unregister_op"]

#: ``formula(*shapes_and_args, out_shape=..., **kwargs) -> int | OpCost``.
OpFormula = Callable[..., Any]

_REGISTERED: dict[str, OpFormula] = {}
_SCOPED: ContextVar[Mapping[str, OpFormula] | None] = ContextVar("mbcost_custom_ops", default=None)


def qualified_name(op: Any) -> str:
    """``"mylib::fused_attn"`` for that string, the op's ``OpOverloadPacket`` or ``OpOverload``, or the
    ``CustomOpDef`` that ``torch.library.custom_op`` returns."""
    name = op if isinstance(op, str) else getattr(op, "_qualname", None)  # a CustomOpDef: no public accessor
    if hasattr(op, "overloads"):  # an OpOverloadPacket: name it by an overload
        op = getattr(op, op.overloads()[0])
    if hasattr(op, "overloadpacket"):  # an OpOverload
        name = f"{op.namespace}::{op.overloadpacket.__name__}"
    namespace, sep, rest = name.partition("::") if isinstance(name, str) else ("", "", "")
    if not sep or not namespace or not rest or "." in rest:
        raise SpecError(f"custom op {op!r}: give its qualified name, namespace::name ('mylib::fused_attn'), or the op")
    if namespace == "aten":
        raise SpecError(f"{name}: ATen ops are counted by mbcost's op table (mbcost.cost.ops); custom formulas are "
                        "for your own torch.library ops")
    return name


def _checked(ops: Mapping[Any, OpFormula]) -> dict[str, OpFormula]:
    out = {}
    for op, formula in ops.items():
        name = qualified_name(op)
        if not callable(formula):
            raise SpecError(f"custom op {name}: its formula must be callable, got {type(formula).__name__}")
        out[name] = formula
    return out


def register_op(name: Any, formula: OpFormula) -> None:
    """Count the custom op ``name`` with ``formula`` in every later analysis of this process.

    Args:
        name: the op's qualified name (``"mylib::fused_attn"``) or the op itself.
        formula: called like a FlopCounterMode formula (tensors replaced by their shapes, ``out_shape=``
            the output's); returns the op's MACs (``int``) or an ``OpCost``.
    """
    _REGISTERED.update(_checked({name: formula}))


def unregister_op(name: Any) -> None:
    """Forget ``register_op(name, ...)``; the op is listed uncounted again."""
    _REGISTERED.pop(qualified_name(name), None)


@contextlib.contextmanager
def custom_ops_in(ops: Mapping[Any, OpFormula] | None) -> Iterator[None]:
    """Count ``ops`` (name or op -> formula) within the block, ahead of ``register_op``'s: what
    ``analyze(custom_ops=...)`` runs its walk in."""
    token = _SCOPED.set({**(_SCOPED.get() or {}), **_checked(ops or {})})
    try:
        yield
    finally:
        _SCOPED.reset(token)


def custom_adapter(name: str) -> Callable[..., OpCall] | None:
    """The adapter of the custom op ``name`` when a formula is registered for it (else ``None``)."""
    formula = (_SCOPED.get() or {}).get(name) or _REGISTERED.get(name)
    if formula is None:
        return None

    def adapt(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpCall:
        shapes, out_shape = _shapes(args), _shapes(out)
        first_in = next((s for s in shapes if _is_shape(s)), ())
        first_out = out_shape if _is_shape(out_shape) else next((s for s in out_shape if _is_shape(s)), ())
        return OpCall(kind="custom", formula_args={"name": name, "formula": formula, "args": shapes,
                                                   "kwargs": _shapes(kwargs), "out_shape": out_shape},
                      input_shape=first_in, output_shape=first_out)
    return adapt


def _shapes(value: Any) -> Any:
    """``value`` with every tensor replaced by its shape (a tuple of ints), in lists, tuples and dicts too."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return type(value)(_shapes(v) for v in value)
    if isinstance(value, dict):
        return {k: _shapes(v) for k, v in value.items()}
    return value


def _is_shape(value: Any) -> bool:
    return isinstance(value, tuple) and all(type(v) is int for v in value)


@register_formula("custom")
def custom_cost(name: str, formula: OpFormula, args: tuple, kwargs: dict[str, Any], out_shape: Any) -> OpCost:
    """A custom op's cost: its formula's, checked (an exact count of MACs, or an ``OpCost`` of them)."""
    try:
        value = formula(*args, out_shape=out_shape, **kwargs)
    except Exception as exc:  # the user's code: say whose formula failed, in one line
        raise SpecError(f"the cost formula of {name} raised {type(exc).__name__}: {first_line(exc)}") from exc
    if isinstance(value, OpCost):
        cost, fields = value, (value.macs, value.bias_adds, value.other_ops)
    elif isinstance(value, int) and not isinstance(value, bool):
        cost, fields = OpCost(macs=value), (value,)
    else:
        raise SpecError(f"the cost formula of {name} returned {value!r} ({type(value).__name__}); it must return its "
                        "MACs as an int, or an mbcost.OpCost")
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in fields):
        raise SpecError(f"the cost formula of {name} returned {value!r}: counts must be ints >= 0")
    return cost
