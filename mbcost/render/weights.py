"""Table, CSV records and JSON of ``mbcost weights`` (a ``KernelHealth``). Computes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mbcost import units as fmt
from mbcost.render.table import Table

if TYPE_CHECKING:
    from mbcost.weights import KernelHealth

__all__ = ["weights_document", "weights_records", "weights_table"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def weights_document(health: KernelHealth) -> dict[str, Any]:
    """``{"layers": [...], "categories": {...}}`` (``KernelHealth.to_dict``)."""
    return health.to_dict()


def weights_records(health: KernelHealth) -> list[dict[str, Any]]:
    """One flat row per layer (CSV)."""
    return [{"model": health.model, **layer.to_dict(), "weights": layer.weights, "zero_weights": layer.zero_weights}
            for layer in health.layers]


def weights_table(health: KernelHealth) -> Table:
    """Every conv and linear layer, then one row per category."""
    rows = [[la.name, la.category, fmt.exact(la.kernels), fmt.exact(la.dead_kernels), _pct(la.dead_fraction),
             _pct(la.zero_fraction)] for la in health.layers]
    for cat, ch in health.categories.items():
        if ch.kernels:
            rows.append([f"all {cat}", cat, fmt.exact(ch.kernels), fmt.exact(ch.dead_kernels),
                         _pct(ch.dead_fraction), _pct(ch.zero_fraction)])
    return Table(
        title=f"Dead kernels: {health.model}, {health.checkpoint}",
        columns=["layer", "category", "kernels", "dead kernels", "dead", "zero weights"],
        rows=rows,
        notes=[f"kernel: one output channel's filter; dead: L1 norm below {health.threshold:g} x the median L1 norm "
               "of its layer's kernels (or exactly zero); zero weights: weights exactly 0.0",
               "loaded with torch.load(weights_only=True): tensors only, no code"])
