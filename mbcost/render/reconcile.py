"""``mbcost reconcile``'s outputs: the table, the CSV rows and the JSON document of a model's
reconciliations with each counter (``mbcost.counters.reconcile``). They only read the results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mbcost import units as fmt

if TYPE_CHECKING:
    from mbcost.cost.result import ModelCost
    from mbcost.counters.reconciliation import Reconciliation
    from mbcost.render.table import Table

__all__ = ["reconcile_document", "reconcile_records", "reconcile_table", "reconciliation_table"]


def reconcile_document(cost: ModelCost, recs: list) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "model": cost.label, "input": list(cost.input), "inputs": [i.to_dict() for i in cost.inputs],
        "batch": cost.batch,
        "analytic": {"macs": cost.macs, "convention": "paper",
                     "uncounted": [asdict(u) for u in cost.uncounted]},
        "exact": all(r.exact for r in recs),
        "counters": {r.counter: r.to_dict() for r in recs},
    }


def reconcile_records(recs: list) -> list[dict[str, Any]]:
    rows = []
    for r in recs:
        base = {"counter": r.counter, "version": r.version, "model": r.model,
                "input": "x".join(str(d) for d in r.input), "batch": r.batch, "analytic": r.analytic, "total": r.total}
        for c in r.components:
            rows.append({**base, "row": "component", "kind": c.kind, "reason": c.reason, "amount": c.amount,
                         "calls": c.calls, "would_be": "",
                         "categories": ";".join(f"{k}={v}" for k, v in c.categories.items())})
        for s in r.skipped:
            rows.append({**base, "row": "skipped", "kind": s.kind, "reason": s.reason, "amount": 0,
                         "calls": s.calls, "would_be": s.would_be, "categories": s.module_type})
    return rows


def _signed(n: int | float) -> str:
    return f"{'+' if n > 0 else ''}{fmt.exact(n) if isinstance(n, int) else f'{n:,.1f}'}"


def _rows(recs: list) -> list[list[str]]:
    """Per counter: its total, the analytic MACs, the difference, the components, what it skips."""
    rows: list[list[str]] = []
    for r in recs:
        rows.append([f"{r.counter} {r.version}", "total as the library reports it", fmt.exact(r.total), r.unit])
        rows.append(["", "analytic (paper MACs)", fmt.exact(r.analytic), "conv + linear multiply-accumulates"])
        rows.append(["", "difference", _signed(r.difference), "= sum of the components below"])
        for c in r.components:
            loud = "!! " if c.kind == "unexplained" else ""
            cats = ", ".join(f"{k} {_signed(v)}" for k, v in c.categories.items())
            rows.append(["", f"  {loud}{c.kind} x{c.calls}" if c.calls else f"  {loud}{c.kind}", _signed(c.amount),
                         c.reason + (f"; by category: {cats}" if cats else "")])
        check = "exact: every unit explained" if r.exact else "NOT EXACT: unexplained difference, see '!!' row"
        rows.append(["", "sum of components", _signed(sum(c.amount for c in r.components)), check])
        for s in r.skipped:
            rows.append(["", f"  not counted: {s.module_type} {s.op} x{s.calls}", f"({fmt.count(s.would_be)})",
                         f"{s.kind}; {s.reason}"])
        if r.unsupported:
            listed = ", ".join(f"{k} x{v}" for k, v in r.unsupported.items())
            rows.append(["", f"  {r.counter} reports unsupported", "", listed])
    return rows


def _notes(exact: bool, uncounted: str) -> list[str]:
    notes = [
        "analytic = the papers' Mult-Adds: conv + linear multiply-accumulates, bias excluded",
        "amounts in each counter's unit: fvcore, thop and ptflops add MACs and the elementwise ops they count, one "
        "each (fvcore calls them flops); torch counts FLOPs = 2 x MACs",
        "components: per op kind and reason (per layer category in brackets); they sum exactly to the difference",
        "not counted: ops the counter skips, with what the engine charges for them (its unit) in parentheses",
        "counters ran on the real module: CPU, float32, eval mode, zero input of the given size",
    ]
    if uncounted:
        notes.append(f"ops the analytic engine has no formula for (not counted): {uncounted}")
    if not exact:
        notes.insert(0, "WARNING: a counter's total is not reproduced by its preset; the difference is listed "
                        "as 'unexplained' (!!)")
    return notes


def _table(title: str, recs: list, uncounted: str) -> Table:
    from mbcost.render.table import Table

    exact = all(r.exact for r in recs)
    if not exact:
        title += " -- UNEXPLAINED DIFFERENCE"
    return Table(title=title, columns=["counter", "item", "amount", "detail"], rows=_rows(recs),
                 notes=_notes(exact, uncounted), align_right=False)


def reconcile_table(cost: ModelCost, recs: list) -> Table:
    from mbcost.render.costs import uncounted_ops

    title = (f"mbcost reconcile: {cost.label}, input {cost.input_label}, batch {cost.batch}: "
             f"analytic {fmt.exact(cost.macs)} MACs vs {', '.join(r.counter for r in recs)}")
    return _table(title, recs, uncounted_ops(cost) if cost.uncounted else "")


def reconciliation_table(rec: Reconciliation) -> Table:
    """One counter's reconciliation on its own (a notebook's display of a ``Reconciliation``): the rows of
    ``reconcile_table``, titled from the record itself."""
    calls: dict[str, int] = {}
    for u in rec.uncounted:  # summed per op over the modules that issued it, as ModelCost.uncounted_calls
        calls[u.op] = calls.get(u.op, 0) + u.calls
    uncounted = ", ".join(f"{op} x{n}" for op, n in sorted(calls.items()))
    title = (f"mbcost reconcile: {rec.model}, input {'x'.join(str(d) for d in rec.input)}, batch {rec.batch}: "
             f"analytic {fmt.exact(rec.analytic)} MACs vs {rec.counter}")
    return _table(title, [rec], uncounted)
