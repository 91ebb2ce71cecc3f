"""``mbcost compare``'s outputs from a ``mbcost.comparison.Comparison``: the tables, the CSV rows and the
JSON document (what each holds: their docstrings). Pure functions: each builds new objects and changes none
of its arguments.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mbcost import units as fmt
from mbcost.render.bench import compare_notes, compare_rows, runtime_row_dicts, runtimes_table
from mbcost.render.costs import compare_dict, compare_records, compare_table, convention_fields, convention_rows
from mbcost.render.table import Table

if TYPE_CHECKING:
    from mbcost.comparison import Comparison

__all__ = [
    "COUNTERS_NOTE", "comparison_document", "comparison_records", "comparison_table", "comparison_tables",
    "counter_rows", "predicted_rows", "runtime_table",
]

COUNTERS_NOTE = ("counters: each library's own total, measured on the real module (CPU, float32, eval mode); "
                 "'mbcost reconcile MODEL' explains every difference")


def counter_rows(c: Comparison) -> list[list[str]]:
    """Per counter: the library's total on each model, then whether its preset reproduces it."""
    from mbcost.cost.conventions import get_convention

    rows: list[list[str]] = []
    for i, counter in enumerate(c.counters):
        first = c.counter_results[0][i]
        rows.append([f"{counter} {first.version} total ({get_convention(counter).library_unit})",
                     *[f"{fmt.count(r[i].total)} ({fmt.exact(r[i].total)})" for r in c.counter_results]])
        gaps = [c.preset_gap(m, counter) for m in range(len(c.costs))]
        rows.append([f"{counter} preset vs library", *["exact" if g == 0 else f"off by {fmt.exact(g)}" for g in gaps]])
    return rows


def _skipped(c: Comparison) -> list[str]:
    return [f"{s.device} skipped ({s.reason})" for s in c.skipped]


def comparison_table(c: Comparison) -> Table:
    """Metrics as rows, models as columns: the paper's counts (``render.costs.compare_table``), the
    convention's figures after the elementwise ops, the counters' rows, the measured rows (eager PyTorch's:
    the other runtimes are in ``runtime_table``)."""
    measured = c.baseline
    ups = [s for s in c.speedups if s.config.runtime == "eager" and s.config.precision == s.config.dtype]
    skipped = [] if c.runtimes else _skipped(c)  # with runtimes, said under the runtime table
    table = compare_table(list(c.costs), extra_rows=[
        *counter_rows(c), *predicted_rows(c), *compare_rows(c.labels, measured, ups, skipped)])
    title, rows, notes = table.title, list(table.rows), list(table.notes)
    if c.convention != "paper":
        title += f", with the {c.convention} convention's figures"
        notes.insert(0, f"convention {c.convention}: {c.convention_costs[0].summary}")
        at = next((i + 1 for i, row in enumerate(rows) if row and row[0] == "elementwise ops"), len(rows))
        rows[at:at] = convention_rows(list(c.convention_costs))
    if c.counters:
        notes.append(COUNTERS_NOTE)
    notes += compare_notes(measured)
    if c.predicted:
        notes.append(f"predicted latency: not measured, from the device profile of mbcost calibrate "
                     f"({c.predicted[0].key.label()}); interval from its leave-one-out error")
    return replace(table, title=title, rows=rows, notes=notes)


def predicted_rows(c: Comparison) -> list[list[str]]:
    """The predicted latency row (``mbcost.predict``), when the device has a profile."""
    if not c.predicted:
        return []

    def cell(p: Any) -> str:
        low, high = p.interval_ms
        return f"{p.predicted_ms:.2f} ms ({low:.2f}-{high:.2f})"

    return [["predicted latency (cpu, eager)", *[cell(p) for p in c.predicted]]]


def runtime_table(c: Comparison) -> Table | None:
    """The runtime x model table (``render.bench.runtimes_table``) of a comparison measured on runtimes, or
    ``None``."""
    if not c.runtimes:
        return None
    title = "runtimes side by side" + (", int8 (each runtime's own quantizer)" if c.precision == "int8" else "")
    return runtimes_table(list(c.runtime_rows), c.labels, failures=[f.message for f in c.failures],
                          skipped=_skipped(c), title=title)


def comparison_tables(c: Comparison) -> list[Table]:
    """What ``mbcost compare`` prints: ``comparison_table``, then ``runtime_table`` when runtimes were measured."""
    extra = runtime_table(c)
    return [comparison_table(c), *([extra] if extra is not None else [])]


def _median_key(r: Any) -> str:
    """The CSV column of a measured median: ``cpu_median_ms`` for eager at the dtype (the baseline, as without
    runtimes), ``cpu_onnxruntime_float32_median_ms`` for the others."""
    if r.runtime == "eager" and r.precision == r.dtype:
        return f"{r.device}_median_ms"
    return f"{r.device}_{r.runtime}_{r.precision}_median_ms"


def _convention_fields(c: Comparison) -> list[dict[str, Any] | None]:
    """Each model's JSON fields under the convention (``None`` under the paper's)."""
    if c.convention == "paper":
        return [None for _ in c.costs]
    pairs = list(zip(c.costs, c.convention_costs, strict=True))
    return [convention_fields(cost, cc, pairs) for cost, cc in pairs]


def comparison_records(c: Comparison) -> list[dict[str, Any]]:
    """One flat row per model (CSV): ``render.costs.compare_records`` plus ``convention``, the convention's
    ``macs``/``flops``/``convention_total``/``<category>_macs``, ``<counter>_total`` and ``<device>_median_ms``."""
    columns: dict[str, dict[str, Any]] = {}
    for i, (cost, cc, fields) in enumerate(zip(c.costs, c.convention_costs, _convention_fields(c), strict=True)):
        col: dict[str, Any] = {}
        if fields is not None:
            col.update(macs=fields["macs"], flops=fields["flops"], convention_total=cc.total,
                       **{f"{cat}_macs": v["macs"] for cat, v in fields["categories"].items()})
        if c.counters:
            col.update({f"{r.counter}_total": r.total for r in c.counter_results[i]})
        if c.bench:
            col.update({_median_key(r): r.median_ms for r in c.measured_for(cost.label)})
        if c.predicted:
            col["predicted_ms"] = c.predicted[i].predicted_ms
        columns[cost.label] = col
    return [{**row, "convention": c.convention, **columns.get(row["model"], {})}
            for row in compare_records(list(c.costs))]


def comparison_document(c: Comparison) -> dict[str, Any]:
    """The JSON document: ``{"conventions": ..., "models": [...], "convention": name}``; each model has
    ``convention`` (and the convention's fields), ``counters`` and ``counter_details`` with ``--counters``,
    ``measured`` (its records) with ``--bench``; with runtimes, ``runtimes`` (``render.bench.runtime_row_dicts``)
    and ``failures`` (a runtime that could not export a model: ``model``, ``batch``, ``runtime``, ``precision``,
    ``reason``)."""
    extra: dict[str, dict[str, Any]] = {}
    for i, (cost, fields) in enumerate(zip(c.costs, _convention_fields(c), strict=True)):
        entry: dict[str, Any] = {"convention": c.convention, **(fields or {})}
        if c.counters:
            rs = c.counter_results[i]
            entry["counters"] = {r.counter: r.total for r in rs}
            entry["counter_details"] = {r.counter: {
                "unit": r.unit, "version": r.version, "seconds": r.seconds, "unsupported": dict(r.unsupported),
                "preset_total": c.preset_totals[i][r.counter]} for r in rs}
        if c.bench:
            entry["measured"] = [r.to_dict() for r in c.measured_for(cost.label)]
        if c.predicted:
            p = c.predicted[i]
            entry["predicted"] = {"predicted_ms": p.predicted_ms, "interval_ms": list(p.interval_ms),
                                  "profile": p.profile, "roofline_kinds": list(p.roofline_kinds)}
        extra[cost.label] = entry
    document = compare_dict(list(c.costs), extra=extra)
    document["convention"] = c.convention
    if c.runtimes:
        document["runtimes"] = runtime_row_dicts(c.runtime_rows)
        document["failures"] = [vars(f) for f in c.failures]
        document["skipped"] = [vars(s) for s in c.skipped]
    if c.convention != "paper":
        summary = c.convention_costs[0].summary
        document["conventions"] = {
            **document["conventions"], "macs": f"{c.convention} convention: {summary}",
            "flops": f"{c.convention} convention: 2 x the MACs it counts + the elementwise ops it counts, once"}
    return document
