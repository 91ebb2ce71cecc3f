"""Tables and records for ``compare``, ``layers`` and ``conv`` (analytic costs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mbcost import units as fmt
from mbcost.cost.conv import ConvComparison
from mbcost.cost.conventions.base import Unit
from mbcost.cost.precision import INT8_RULE
from mbcost.cost.result import CATEGORIES, LayerCost, ModelCost, UnpricedParams
from mbcost.render import conventions
from mbcost.render.table import Table

if TYPE_CHECKING:
    from mbcost.bench.records import ConvRecord

__all__ = [
    "compare_dict", "compare_records", "compare_table", "conv_document", "conv_records", "conv_table",
    "convention_fields", "convention_rows", "layer_records", "layers_table", "ratios", "uncounted_ops",
]


def _ratio(a: int, b: int) -> float | None:
    """``a / b``, or ``None`` when ``b`` is 0 (a parameter-free model): JSON has no NaN."""
    return a / b if b else None


def ratios(models: list[ModelCost]) -> dict[str, dict[str, dict[str, float | None]]]:
    """``ratios[a][b] = {"params": a.params / b.params, "macs": a.macs / b.macs}`` for a != b; ``None``
    where ``b`` has none (no parameters, no MACs)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for a in models:
        out[a.label] = {
            b.label: {"params": _ratio(a.params, b.params), "macs": _ratio(a.macs, b.macs)}
            for b in models if b.label != a.label
        }
    return out


def compare_dict(models: list[ModelCost], extra: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON document of ``mbcost compare``: ``{"conventions": ..., "models": [...]}``."""
    r = ratios(models)
    entries = []
    for m in models:
        d = m.to_dict()
        d["ratios"] = r[m.label]
        if extra and m.label in extra:
            d.update(extra[m.label])
        entries.append(d)
    conv = {"macs": conventions.MACS, "flops": conventions.FLOPS, "elementwise_ops": conventions.ELEMENTWISE,
            "params": conventions.PARAMS}
    if any(m.mode == "train" for m in models):
        conv["training"] = conventions.TRAIN
    return {"conventions": conv, "models": entries}


def train_rows(models: list[ModelCost]) -> list[list[str]]:
    """``--mode train``: the step's backward, optimizer and memory (conventions: mbcost.cost.training)."""
    return [
        [f"training step ({models[0].optimizer})", *["" for _ in models]],
        ["  forward MACs", *[fmt.count(m.forward_macs) for m in models]],
        ["  backward MACs (grad input + grad weight)", *[f"{fmt.count(m.backward_macs)} ({fmt.exact(m.backward_macs)})"
                                                         for m in models]],
        ["  backward elementwise ops", *[fmt.count(m.backward_elementwise_ops) for m in models]],
        ["  optimizer ops", *[_maybe(fmt.count, m.optimizer_ops) for m in models]],
        ["  trainable params", *[fmt.count(m.trainable_params) for m in models]],
        ["  memory (weights + grads + optimizer state + activations)",
         *[_maybe(fmt.nbytes, m.train_peak_memory_bytes) for m in models]],
        ["  activations at the step's worst point", *[_maybe(fmt.nbytes, m.train_peak_activation_bytes)
                                                     for m in models]],
        ["    at", *[m.train_peak_op or "n/a (real run)" for m in models]],
    ]


def _maybe(render: Any, value: Any) -> str:
    return "n/a (real run)" if value is None else render(value)


def uncounted_ops(cost: ModelCost) -> str:
    """The ops the engine has no formula for, each with its calls summed over every module: ``embedding x3``."""
    return ", ".join(f"{op} x{calls}" for op, calls in cost.uncounted_calls.items())


def execution_notes(models: list[ModelCost]) -> list[str]:
    """One line per model whose counts came from a real CPU forward instead of the meta device."""
    return [f"{m.label}: counted on a real CPU forward with random inputs ({m.execution_note}); counts of "
            f"data-dependent ops (proposals, masks...) depend on that data" for m in models if m.execution == "real"]


def compare_records(models: list[ModelCost]) -> list[dict[str, Any]]:
    """One flat row per model (CSV)."""
    r = ratios(models)
    rows = []
    for m in models:
        row: dict[str, Any] = {
            "model": m.label, "name": m.name, "width": m.width, "input": m.input_label,
            "execution": m.execution, "batch": m.batch, "dtype": m.dtype, "precision": m.precision,
            "params": m.params, "unattributed_params": m.unattributed_params, "macs": m.macs,
            "flops": m.flops,
            "elementwise_ops": m.elementwise_ops, "weight_bytes": m.weight_bytes,
            "activation_bytes": m.activation_bytes, "peak_activation_bytes": m.peak_activation_bytes,
            "peak_memory_bytes": m.peak_memory_bytes, "peak_op": m.peak_op, "largest_op_bytes": m.largest_op_bytes,
            **m.train_fields(),  # --mode train: the JSON's training fields, by the same names
        }
        for other in models:
            if other.label != m.label:
                row[f"params_vs_{other.label}"] = r[m.label][other.label]["params"]
                row[f"macs_vs_{other.label}"] = r[m.label][other.label]["macs"]
        for c, v in m.categories.items():
            row[f"{c}_params"] = v.params
            row[f"{c}_macs"] = v.macs
        rows.append(row)
    return rows


def compare_table(models: list[ModelCost], extra_rows: list[list[str]] | None = None) -> Table:
    """Metrics as rows, models as columns (the papers' side-by-side layout)."""
    r = ratios(models)
    int8 = any(m.precision == "int8" for m in models)
    rows: list[list[str]] = [
        ["params", *[f"{fmt.count(m.params)} ({fmt.exact(m.params)})" for m in models]],
        ["MACs (int8)" if int8 else "MACs", *[f"{fmt.count(m.macs)} ({fmt.exact(m.macs)})" for m in models]],
        ["FLOPs (2 x MACs)", *[fmt.count(m.flops) for m in models]],
        ["elementwise ops", *[fmt.count(m.elementwise_ops) for m in models]],
    ]
    for key, name in (("params", "params"), ("macs", "MACs")) if len(models) > 1 else ():
        rows += [[f"{name} vs {other.label}", *[fmt.ratio(r[m.label][other.label][key]) if m.label != other.label
                                                 else "1x" for m in models]] for other in models]
    rows += [
        ["weights (int8, per-channel scales)" if int8 else f"weights ({models[0].dtype})",
         *[fmt.nbytes(m.weight_bytes) for m in models]],
        ["activation memory (sum of outputs)", *[fmt.nbytes(m.activation_bytes) for m in models]],
        ["peak memory (weights + live activations)", *[_maybe(fmt.nbytes, m.peak_memory_bytes) for m in models]],
        ["peak live activations (lifetimes)", *[_maybe(fmt.nbytes, m.peak_activation_bytes) for m in models]],
        ["  at layer", *[m.peak_op or "n/a (real run)" for m in models]],
        ["largest op (input + output)", *[fmt.nbytes(m.largest_op_bytes) for m in models]],
    ]
    if any(m.mode == "train" for m in models):
        rows += train_rows(models)
    for key, name in (("macs", "MAC"), ("params", "param")):
        rows += [[f"{name} share {c}", *[fmt.percent(getattr(m.categories[c], key), getattr(m, key)) for m in models]]
                 for c in CATEGORIES]
    rows += extra_rows or []
    first = models[0]
    title = f"mbcost compare: input {first.input_label}, batch {first.batch}" + (", int8" if int8 else "")
    notes = conventions.for_costs()
    if int8:
        notes.append(INT8_RULE)
    if any(m.mode == "train" for m in models):
        notes.append(conventions.TRAIN)
    notes += execution_notes(models)
    for m in models:
        if m.uncounted:
            notes.append(f"{m.label}: ops without a formula (not counted): {uncounted_ops(m)}")
        if m.unattributed:
            notes.append(f"{m.label}: params include {fmt.exact(m.unattributed_params)} of modules that issued no op "
                         f"in this forward (in 'other'): " + ", ".join(
                             f"{u.module} ({u.module_type}, {fmt.exact(u.params)})" for u in m.unattributed))
    return Table(title=title, columns=["metric", *[m.label for m in models]], rows=rows, notes=notes)


LAYER_COLUMNS = ["name", "category", "kind", "module_type", "input_shape", "output_shape", "kernel", "stride",
                 "groups", "params", "macs", "flops", "elementwise_ops", "activation_bytes", "bytes_moved",
                 "arithmetic_intensity"]
#: With ``--mode train``: each record's backward, as in the JSON's layers.
TRAIN_LAYER_COLUMNS = ["backward_macs", "backward_elementwise_ops"]
#: The note on the rows of modules whose ops have no formula (``ModelCost.unpriced_params``).
UNPRICED_NOTE = ("'(no formula)' rows: modules that ran only ops without a cost formula (an embedding's lookup: "
                 "listed as uncounted); they hold the module's params, 0 MACs counted")
#: The note on the rows of parameters no op was attributed to (``ModelCost.unattributed``).
UNATTRIBUTED_NOTE = ("'no op' rows: modules that issued no op in this forward (an auxiliary head the eval forward "
                     "skips, a layer whose weights another module read), by the top of each such subtree; they "
                     "hold its params, 0 MACs")


def layer_records(cost: ModelCost) -> list[dict[str, Any]]:
    """One flat row per layer record (CSV), with a row for each module whose ops have no formula
    (its params, nothing counted) where it ran; ``--mode train`` adds each record's backward."""
    train = cost.mode == "train"
    columns = LAYER_COLUMNS + (TRAIN_LAYER_COLUMNS if train else [])
    rows = []
    for lc in cost.in_forward_order():
        if isinstance(lc, UnpricedParams):
            row: dict[str, Any] = dict.fromkeys(columns, "")
            row.update(name=lc.module or "(root)", category="other", kind=f"{lc.op} (no formula)",
                       module_type=lc.module_type, params=lc.params, macs=0, flops=0, elementwise_ops=0)
            if train:
                row.update(backward_macs=0, backward_elementwise_ops=0)
            rows.append(row)
            continue
        d = lc.to_dict()
        row = {k: d[k] for k in columns}
        for k in ("input_shape", "output_shape", "kernel", "stride"):
            v = row[k]
            row[k] = "x".join(str(i) for i in v) if isinstance(v, tuple) else ("" if v is None else v)
        rows.append(row)
    for u in cost.unattributed:
        rows.append({**dict.fromkeys(columns, ""), "name": u.module, "category": "other", "kind": "(no op)",
                     "module_type": u.module_type, "params": u.params, "macs": 0, "flops": 0, "elementwise_ops": 0,
                     **(dict(backward_macs=0, backward_elementwise_ops=0) if train else {})})
    return rows


def layers_table(cost: ModelCost) -> Table:
    def shape(s: tuple[int, ...] | None) -> str:
        return "" if s is None else "x".join(str(i) for i in s)

    def geometry(lc: LayerCost) -> str:
        if lc.kernel is None:
            return ""
        parts = [shape(lc.kernel)]
        if lc.stride and any(s != 1 for s in lc.stride):
            parts.append(f"s{shape(lc.stride)}")
        if lc.groups and lc.groups > 1:
            parts.append(f"g{lc.groups}")
        return " ".join(parts)

    train = cost.mode == "train"
    rows = []
    for lc in cost.in_forward_order():
        if isinstance(lc, UnpricedParams):
            row = [f"{lc.module or '(root)'} ({lc.op}, no formula)", "other", "", "", fmt.count(lc.params), "0",
                   "0", "", ""]
            rows.append(row + (["0", "0"] if train else []))
            continue
        row = [lc.name, lc.category, shape(lc.output_shape[1:]), geometry(lc), fmt.count(lc.params),
               fmt.count(lc.macs), fmt.count(lc.elementwise_ops), fmt.nbytes(lc.activation_bytes),
               f"{lc.arithmetic_intensity:.1f}"]
        rows.append(row + ([fmt.count(lc.backward_macs), fmt.count(lc.backward_elementwise_ops)] if train else []))
    for u in cost.unattributed:
        rows.append([f"{u.module} ({u.module_type}, no op)", "other", "", "", fmt.count(u.params), "0", "0", "", ""]
                    + (["0", "0"] if train else []))
    total = ["total", "", "", "", fmt.count(cost.params), fmt.count(cost.macs), fmt.count(cost.elementwise_ops),
             fmt.nbytes(cost.activation_bytes), ""]
    rows.append(total + ([fmt.count(cost.backward_macs), fmt.count(cost.backward_elementwise_ops)] if train else []))
    notes = conventions.for_costs() + [
        "output = C x H x W per image; kernel: KxK, sN = stride, gN = groups",
        "intensity = (FLOPs + elementwise ops) / bytes moved (input + weights + output), FLOP/byte",
        "params of a module are shown on its first op",
        "exact integers, shapes and module types: --format json or csv",
    ]
    if cost.unpriced_params:
        notes.append(UNPRICED_NOTE)
    if cost.unattributed:
        notes.append(UNATTRIBUTED_NOTE)
    columns = ["layer", "category", "output", "kernel", "params", "MACs", "elementwise", "activation", "intensity"]
    title = f"mbcost layers: {cost.label}, input {cost.input_label}, batch {cost.batch}"
    if train:
        columns += ["backward MACs", "backward elementwise"]
        title += f", training step ({cost.optimizer})"
        notes.append(conventions.TRAIN)
    notes += execution_notes([cost])
    return Table(title=title, columns=columns, rows=rows, notes=notes)


def conv_table(c: ConvComparison, measured: ConvRecord | None = None) -> Table:
    """``mbcost conv``: the standard conv, its depthwise and pointwise parts, the exact ratio and the paper's
    closed form; with ``measured`` (``mbcost conv --bench``), the measured times and speed-up too."""
    from mbcost.render.bench import TIMING, conv_rows, env_line, wide_note

    std, sep = c.standard, c.separable
    dw, pw = sep.layers[0], sep.layers[1]
    k2 = f"{c.kernel}x{c.kernel}"
    rows = [
        [f"standard {k2} conv {c.in_channels}->{c.out_channels}", fmt.exact(std.params), fmt.exact(std.macs),
         fmt.count(std.flops), "1x"],
        [f"  depthwise {k2} ({c.in_channels} groups)", fmt.exact(dw.params), fmt.exact(dw.macs), fmt.count(dw.flops),
         fmt.ratio(dw.macs / std.macs)],
        [f"  pointwise 1x1 {c.in_channels}->{c.out_channels}", fmt.exact(pw.params), fmt.exact(pw.macs),
         fmt.count(pw.flops), fmt.ratio(pw.macs / std.macs)],
        ["depthwise + pointwise", fmt.exact(sep.params), fmt.exact(sep.macs), fmt.count(sep.flops),
         fmt.ratio(float(c.macs_ratio))],
        ["exact ratio separable / standard", f"{float(c.params_ratio):.6f}", f"{float(c.macs_ratio):.6f}", "",
         f"= {c.macs_ratio}"],
        [f"paper: 1/N + 1/K^2 = 1/{c.out_channels} + 1/{c.kernel**2}", f"{float(c.formula_ratio):.6f}",
         f"{float(c.formula_ratio):.6f}", "", f"= {c.formula_ratio}"],
        ["speed-up in MACs (standard / separable)", "", f"{float(1 / c.macs_ratio):.2f}x", "", ""],
    ]
    oh, ow = c.output_size
    notes = [conventions.MACS, conventions.FLOPS,
             "agreement: MAC ratio " + ("equals" if c.macs_ratio == c.formula_ratio else "differs from")
             + " the closed form exactly", *c.notes]
    if measured is not None:
        rows += conv_rows(measured)
        notes += ["measured: " + TIMING + "; a short time budget (mbcost sweep measures a grid)", env_line(measured)]
        if measured.wide_spread or measured.standard_wide_spread:
            notes.append(wide_note())
    return Table(
        title=(f"mbcost conv: M={c.in_channels}, N={c.out_channels}, K={c.kernel}, input {c.size[0]}x{c.size[1]} -> "
               f"{oh}x{ow}, stride {c.stride}, padding {c.padding}, bias {'yes' if c.bias else 'no'}, batch {c.batch}"),
        columns=["layer", "params", "MACs", "FLOPs", "vs standard"], rows=rows, notes=notes)


def conv_records(c: ConvComparison, measured: ConvRecord | None = None) -> list[dict[str, Any]]:
    """One CSV row; with ``measured``, ``standard_ms``, ``separable_ms`` and ``measured_speedup`` too."""
    d = c.to_dict()
    row = {"in_channels": c.in_channels, "out_channels": c.out_channels, "kernel": c.kernel,
           "input_h": c.size[0], "input_w": c.size[1], "stride": c.stride, "padding": c.padding, "bias": c.bias,
           "batch": c.batch, "standard_params": c.standard.params, "standard_macs": c.standard.macs,
           "separable_params": c.separable.params, "separable_macs": c.separable.macs, "ratio": d["ratio"],
           "params_ratio": d["params_ratio"], "formula_ratio": d["formula_ratio"]}
    if measured is not None:
        row.update(standard_ms=measured.standard_ms, separable_ms=measured.separable_ms,
                   measured_speedup=measured.measured_speedup)
    return [row]


def conv_document(c: ConvComparison, measured: ConvRecord | None = None) -> dict[str, Any]:
    """``mbcost conv``'s JSON: ``ConvComparison.to_dict()``, plus ``measured`` (the record) with ``--bench``."""
    return {**c.to_dict(), **({"measured": measured.to_dict()} if measured is not None else {})}


# --- --convention X: the counter's own figures, each row in its own unit -------------------------


def convention_rows(ccs: list[Any]) -> list[list[str]]:
    """Rows of a convention's figures (``ConventionCost`` per model): its total in its own unit, split into
    the MACs and the elementwise ops it counts, and its FLOPs (2 per MAC, each elementwise op once)."""
    first = ccs[0]
    name = first.convention
    return [
        [f"{name} total ({first.library_unit})", *[f"{fmt.count(c.total)} ({fmt.exact(c.total)})" for c in ccs]],
        [f"  {name}: MACs it counts" + (" (x2 in its total)" if first.unit is Unit.FLOP else ""),
         *[fmt.count(c.macs) for c in ccs]],
        [f"  {name}: elementwise ops it counts", *[fmt.count(c.ops) for c in ccs]],
        [f"  {name}: FLOPs (2 x its MACs + its elementwise ops once)", *[fmt.count(c.flops) for c in ccs]],
    ]


def convention_fields(cost: ModelCost, cc: Any, others: list[tuple[ModelCost, Any]]) -> dict[str, Any]:
    """JSON fields of one model under ``--convention X`` (``cc``: its ``ConventionCost``; ``others``: every
    model's cost and ``ConventionCost``, for the ratios). ``macs`` is X's total, except for a FLOP counter
    (torch), whose total is ``flops`` and whose MACs are ``macs``; ``flops`` never doubles elementwise work."""
    flop_counter = cc.unit is Unit.FLOP

    def headline(x: Any) -> int:
        return x.macs if flop_counter else x.total

    by_cat = cc.by_category
    return {
        "convention": cc.convention, "macs": headline(cc), "flops": cc.total if flop_counter else cc.flops,
        "categories": {c: {"params": v.params, "macs": by_cat[c] // 2 if flop_counter else by_cat[c]}
                       for c, v in cost.categories.items()},
        "convention_total": cc.total, "convention_unit": cc.library_unit, "convention_macs": cc.macs,
        "convention_ops": cc.ops,
        "ratios": {o.label: {"params": _ratio(cost.params, o.params), "macs": _ratio(headline(cc), headline(occ))}
                   for o, occ in others if o.label != cost.label},
        "skipped": [{"kind": s.kind, "op": s.op, "module_type": s.module_type, "calls": s.calls,
                     "would_be": s.would_be, "reason": s.reason} for s in cc.skipped],
    }
