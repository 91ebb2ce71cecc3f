"""Tables, markdown and JSON for ``mbcost gate`` (reads ``GateResult`` / ``UpdateResult`` only)."""

from __future__ import annotations

import math
from typing import Any

from mbcost import units as fmt
from mbcost.gate.baseline import CONVENTIONS, input_label
from mbcost.gate.check import EntryDiff, GateResult, UpdateResult
from mbcost.io import display_path
from mbcost.render import conventions
from mbcost.render.table import Table

__all__ = ["document", "markdown", "tables", "update_message", "verdict"]

LAYER_NOTE = ("layer = module path; its own parameters and the MACs of the ops it issued; "
              "(unattributed) = parameters of modules the forward pass never ran")


def _exact(n: int | None) -> str:
    return "-" if n is None else fmt.exact(n)


def _signed(n: int) -> str:
    return f"{n:+,}" if n else "0"


def _pct(p: float | None) -> str:
    if p is None:
        return "-"
    if p == 0:
        return "0%"
    text = f"{p:+.2f}%"
    return text if text not in ("+0.00%", "-0.00%") else f"{p:+.2g}%"


def _model(e: Any) -> str:
    return e.model + (f" b{e.batch}" if e.batch != 1 else "")


def tolerance_note(macs_tolerance: float) -> str:
    macs = "MACs must match exactly" if not macs_tolerance else \
        f"MACs may differ by up to {100 * macs_tolerance:g}% (relative, per layer and in total)"
    return f"parameter counts must match exactly; {macs}"


def _status(e: EntryDiff, update: bool) -> str:
    if e.status == "ok":
        return "unchanged" if update else "ok"
    if e.status == "added":
        return "added" if update else "DRIFT: not in baseline"
    if e.status == "removed":
        return "removed" if update else "DRIFT: in baseline, not gated"
    n = len(e.rows)
    layers = f"{n} layer{'s' if n != 1 else ''}" if n else ("activation memory" if e.memory_drift else "totals")
    return f"changed ({layers})" if update else f"DRIFT ({layers})"


def summary_table(result: GateResult, *, update: bool = False) -> Table:
    """One row per model x input: the status, params and MACs now (before, for a removed entry), the change."""
    rows = []
    for e in result.entries:
        params = e.params_after if e.params_after is not None else e.params_before
        macs = e.macs_after if e.macs_after is not None else e.macs_before
        d_params = "-" if e.status in ("added", "removed") else \
            f"{_signed(e.params_delta)} ({_pct(e.params_percent)})" if e.params_delta else "0"
        d_macs = "-" if e.status in ("added", "removed") else \
            f"{_signed(e.macs_delta)} ({_pct(e.macs_percent)})" if e.macs_delta else "0"
        peak = e.memory_after if e.memory_after is not None else e.memory_before
        d_peak = "-" if e.memory_before is None or e.memory_after is None else (
            f"{_signed(e.memory_after - e.memory_before)} ({_pct(_percent(e.memory_before, e.memory_after))})"
            if e.memory_after != e.memory_before else "0")
        rows.append([_model(e), input_label(e.input), _status(e, update), _exact(params), d_params, _exact(macs),
                     d_macs, "-" if peak is None else _exact(peak), d_peak])
    shown = display_path(result.baseline)
    title = f"mbcost gate: baseline {shown}" if not update else f"mbcost gate --update: {shown}"
    notes = [tolerance_note(result.macs_tolerance)] if not update else []
    notes += [conventions.PARAMS, conventions.MACS]
    if not update:
        notes.append(f"activation peak: estimated bytes live at the forward's worst point (tensor lifetimes), "
                     f"{'exact' if result.memory_tolerance == 0 else f'within {result.memory_tolerance:.1%}'}"
                     + ("; the training step's peak is gated too" if any(e.train_memory_before is not None
                                                                       for e in result.entries) else ""))
    return Table(title=title, columns=["model", "input", "status", "params", "Δ params", "MACs", "Δ MACs",
                                           "act. peak", "Δ peak"], rows=rows, notes=notes, left=3)


def _percent(before: int, after: int) -> float:
    return (after - before) / before * 100 if before else math.inf


def diff_table(result: GateResult) -> Table | None:
    """One row per drifted layer (changed, added, removed); ``None`` when no layer drifted."""
    if not result.rows:
        return None
    rows = [[_model(r), input_label(r.input), r.layer, r.change, _exact(r.params_before), _exact(r.params_after),
             _signed(r.params_delta), _pct(r.params_percent), _exact(r.macs_before), _exact(r.macs_after),
             _signed(r.macs_delta), _pct(r.macs_percent)]
            for r in result.rows]
    n = len(rows)
    return Table(title=f"Per-layer changes ({n} layer{'s' if n != 1 else ''})", left=4,
                     columns=["model", "input", "layer", "change", "params before", "params after", "Δ params",
                              "Δ params %", "MACs before", "MACs after", "Δ MACs", "Δ MACs %"],
                     rows=rows, notes=[LAYER_NOTE])


def verdict(result: GateResult) -> str:
    """The closing line of a gate run."""
    n = len(result.entries)
    if result.passed:
        return f"mbcost gate: passed: {n} model x input entr{'y' if n == 1 else 'ies'} match " \
               f"{display_path(result.baseline)}"
    layers = len(result.rows)
    return (f"mbcost gate: FAILED: {len(result.drifted)} of {n} entries drifted ({layers} layer"
            f"{'s' if layers != 1 else ''}); if the change is intended, run `mbcost gate --update` and commit "
            f"{display_path(result.baseline)}")


def update_message(update: UpdateResult) -> str:
    """The closing line of ``mbcost gate --update``."""
    n = len(update.baseline.entries)
    entries = f"{n} entr{'y' if n == 1 else 'ies'}"
    path = display_path(update.path)
    if update.created:
        return f"mbcost gate: baseline created at {path} ({entries})"
    if update.replaced_reason:
        return f"mbcost gate: replaced an unreadable baseline ({update.replaced_reason}); wrote {path} " \
               f"({entries})"
    changed = update.changes.drifted
    if not update.written:
        return f"mbcost gate: baseline {path} unchanged ({entries} match); nothing written"
    if not changed:
        return f"mbcost gate: baseline {path} rewritten (no count changed)"
    by = {s: sum(1 for e in changed if e.status == s) for s in ("drift", "added", "removed")}
    return (f"mbcost gate: baseline {path} updated: {by['drift']} changed, {by['added']} added, "
            f"{by['removed']} removed ({len(update.changes.rows)} layer rows); review and commit it")


def tables(result: GateResult, *, update: bool = False) -> list[Table]:
    """The tables a run prints: the per-entry summary, then the per-layer changes if any."""
    out = [summary_table(result, update=update)]
    layer_table = diff_table(result)
    if layer_table is not None:
        out.append(layer_table)
    return out


def markdown(result: GateResult, *, update: UpdateResult | None = None) -> str:
    """A markdown report (for ``--format markdown`` and ``$GITHUB_STEP_SUMMARY``)."""
    if update is not None:
        head = "### mbcost gate --update\n\n" + update_message(update)
    else:
        head = f"### mbcost gate: {'passed' if result.passed else 'FAILED'}\n\n" + verdict(result)
    parts = [head, *[t.to_markdown() for t in tables(result, update=update is not None)]]
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def document(result: GateResult, *, update: UpdateResult | None = None) -> dict[str, Any]:
    """The JSON document: the raw result plus the conventions."""
    doc = update.to_dict() if update is not None else result.to_dict()
    doc["conventions"] = CONVENTIONS
    doc["tolerance"] = tolerance_note(result.macs_tolerance)
    return doc
