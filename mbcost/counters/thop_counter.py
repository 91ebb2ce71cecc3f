"""thop's ``profile`` (forward hooks per module type; its "ops" are multiply-accumulates).

thop writes a ``total_ops`` attribute on every module and registers hooks while it counts, so
``measure`` runs it on a deep copy of a caller's module.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from mbcost.counters.adapter import RawCount, require

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ABOUT", "MUTATES", "NAME", "UNIT", "check_available", "count"]

NAME = "thop"
ABOUT = "thop.profile"
UNIT = "MACs (thop's ops)"
MUTATES = True


def check_available() -> None:
    require("thop", "thop")


def count(model: nn.Module, args: tuple[torch.Tensor, ...]) -> RawCount:
    """thop's total, its per-module-type breakdown, and the module types it has no rule for."""
    thop = require("thop", "thop")
    from thop.profile import register_hooks

    names = {m: n for n, m in model.named_modules(remove_duplicate=False)}
    total, _params, tree = thop.profile(model, inputs=args, verbose=False, report_missing=False,
                                        ret_layer_info=True)
    by_type: Counter[str] = Counter()
    _own_ops(model, tree, by_type, total)
    missing = Counter(type(m).__name__ for m in dict.fromkeys(names)
                      if not any(t in register_hooks for t in type(m).__mro__))
    by_op = {k: int(v) if float(v).is_integer() else v for k, v in by_type.items() if v}
    return RawCount(total=total, by_op=by_op, unsupported=dict(missing),
                    version=getattr(thop, "__version__", "unknown"),
                    notes=["unsupported: module types with no thop rule (their own ops count 0), x modules"])


def _own_ops(module: nn.Module, tree: dict, by_type: Counter[str], subtree_total: float) -> None:
    """Split thop's per-subtree totals into each module type's own ops."""
    children_total = 0.0
    for child_name, child in module.named_children():
        if child_name not in tree:
            continue
        ops, _p, sub = tree[child_name]
        children_total += ops
        _own_ops(child, sub, by_type, ops)
    own = subtree_total - children_total
    if own:
        by_type[type(module).__name__] += own
