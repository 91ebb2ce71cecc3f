"""Tables and documents for ``bench``, ``profile``, ``sweep``, ``roofline`` and the measured rows of
``compare`` and ``conv``. Reads measurement records; computes no time (ratios of recorded medians
are formatted here, their arithmetic lives in ``mbcost.bench``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mbcost import units as fmt
from mbcost.bench.runtimes import runtime_label
from mbcost.io import jsonable
from mbcost.render import conventions
from mbcost.render.table import Table
from mbcost.units import ms, number, share, speed

if TYPE_CHECKING:
    from mbcost.bench.layers import LayerProfile
    from mbcost.bench.matrix import RuntimeRow, Setting
    from mbcost.bench.model_bench import Speedup
    from mbcost.bench.records import ConvRecord, LayerRecord, ModelRecord, PeakRecord, Record
    from mbcost.bench.roofline import Peaks

__all__ = [
    "TIMING", "bench_table", "category_table", "check_cell", "compare_notes", "compare_rows", "conv_check_cell",
    "conv_rows", "env_line", "failed_check", "flat", "layer_record_table", "layer_row", "layers_table",
    "memory_difference", "one_time_cell", "peak_record_table", "peaks_table", "profile_document", "results_document",
    "row_check_cell", "runtime_label", "runtime_notes", "runtime_row_dicts", "runtimes_table", "setting_text",
    "settings_text", "speedup_dicts", "spread", "sweep_table", "threads", "wide_note",
]

TIMING = ("median of timed runs (torch.utils.benchmark adaptive auto-ranging after warm-up, eval mode, "
          "inference_mode); IQR = interquartile range of the runs")
GFLOPS = "GFLOP/s = analytic FLOPs (2 x MACs of conv and linear layers) / median time"
WIDE = "! = wide spread: IQR above {:.0%} of the median (shown, not hidden; rerun on an idle machine)"
MEMORY = ("activation peak = bytes of live activations at the forward's worst point, inputs included, weights and "
          "buffers excluded; estimated from tensor lifetimes (freed after their last use, or when the module call "
          "they were passed to returns) plus CPU convolution scratch (oneDNN blocked copies, im2col) modelled for "
          "one thread and AVX-512; measured = the allocator's peak in one extra forward after the timed runs (CPU: "
          "profiler allocation events; CUDA: max_memory_allocated); MB = 10^6 bytes")
MEMORY_DIFFERENCE = ("difference = measured - estimated: what the estimate's model misses (another kernel choice "
                     "with more threads or another CPU, cuDNN workspace, allocator rounding)")
TRAIN_TIMING = ("mode train: median of timed runs (torch.utils.benchmark adaptive auto-ranging after warm-up) of one "
                "training step: the model in train mode (BatchNorm on batch statistics), grad enabled, "
                "zero_grad(set_to_none) + forward + loss = sum of the outputs + backward + optimizer step (SGD, SGD "
                "momentum 0.9, Adam or AdamW, lr 1e-3); images/s = batch / step time; IQR = interquartile range")
TRAIN_GFLOPS = ("train GFLOP/s = 2 x (forward + backward MACs of conv and linear layers) / median step time (the "
                "optimizer's update not counted); vs X compares steps of the same optimizer, MACs = forward + backward")
TRAIN_MEMORY = ("train act. peak est. = the step's gradients (one per trainable weight) + the activations alive at its "
                "worst point (inputs, tensors saved for backward, activation gradients), from tensor lifetimes; "
                "measured: the allocator's peak over one more step with the gradients freed first (the optimizer's "
                "state, made on the first step, existed before)")
ROOFLINE = ("roofline bound = min(peak compute, intensity x peak bandwidth), peaks measured on this device "
            "(matmul, copy); fraction = achieved / bound")
PEAKS = ["peak compute = 2 n^3 / median time of an n x n matmul in the dtype",
         "peak bandwidth = (bytes read + bytes written) / median time of a large tensor copy; GB = 10^9 bytes",
         "ridge point = peak compute / peak bandwidth: layers below this intensity are memory-bound"]
PEAKS_TITLE = "mbcost roofline: measured attainable peaks"
LAYER_COLUMNS = ["layer", "category", "time", "IQR (runs)", "time share", "MAC share", "intensity", "GFLOP/s"]
ROOF_COLUMNS = ["bound GFLOP/s", "of bound"]
INTENSITY = ("intensity = (FLOPs + elementwise ops) / bytes moved (input + weights + output), FLOP/byte; "
             "GFLOP/s here counts the same work")


def threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def _vs_estimate(r: ModelRecord) -> str:
    """`` (+27.1%)``: measured - estimated activation peak as a share of the estimate; empty when either is missing."""
    diff, est = r.peak_memory_difference_bytes, r.estimated_peak_memory_bytes
    return f" ({diff / est:+.1%})" if diff is not None and est else ""


def memory_difference(r: ModelRecord | None) -> str:
    """``+2.61 MB (+27.1%)``: measured - estimated activation peak, signed, with its share of the
    estimate; ``-`` when either is missing."""
    diff = None if r is None else r.peak_memory_difference_bytes
    if r is None or diff is None:
        return "-"
    return ("+" if diff >= 0 else "-") + fmt.nbytes(abs(diff)) + _vs_estimate(r)


def measured_memory(r: ModelRecord) -> str:
    """The measured activation peak with its difference from the estimate: ``12.25 MB (+27.1%)``."""
    return "-" if r.peak_memory_bytes is None else fmt.nbytes(r.peak_memory_bytes) + _vs_estimate(r)


def spread(r: Record) -> str:
    flag = " !" if r.wide_spread else ""
    return f"{ms(r.iqr_ms)} ({r.runs}){flag}"


def env_line(r: Record) -> str:
    e = r.env
    parts = [f"{r.device_name}", threads(r.threads) if r.device == "cpu" else f"CUDA {e.cuda}, cuDNN {e.cudnn}",
             f"torch {e.torch}", f"mbcost {e.mbcost}", e.timestamp]
    if r.device == "cpu" and e.flush_denormal:
        parts.append("denormals flushed to zero")
    if r.device == "cpu" and e.kept_heap:
        parts.append("freed memory kept in the heap")
    if r.device == "cpu" and r.dtype == "bfloat16" and e.cpu_native_bf16 is False:
        parts.append("no native bfloat16 on this CPU (oneDNN converts)")
    if r.device == "cuda":
        parts.append(f"cudnn.benchmark {e.cudnn_benchmark}")
    line = "measured on " + ", ".join(parts)
    if r.device == "cpu" and e.oversubscribed:
        line += (f"; WARNING: {threads(r.threads)} on {e.usable_cpus} CPU{'s' if e.usable_cpus != 1 else ''} "
                 "(oversubscribed): the threads take turns on the cores and the times include it")
    if e.busy:
        line += (f"; WARNING: the machine was busy (other work kept {e.busy_cpus:.1f} of {e.cpu_count} CPUs busy): "
                 "the times include contention")
    return line


def flat(record: Record) -> dict[str, Any]:
    """One CSV row: every scalar field, ``env`` flattened to ``env_*``, raw times left out."""
    d = record.to_dict()
    d.pop("times_ms", None)
    env = d.pop("env", {})
    for k in ("input", "size"):
        if k in d and isinstance(d[k], list):
            d[k] = "x".join(str(v) for v in d[k])
    if "ops" in d:
        d["ops"] = "+".join(d["ops"])
    for k, v in env.items():
        d[f"env_{k}"] = v
    for group in ("output_check", "standard_output_check", "runtime_settings", "one_time_s", "standard_one_time_s"):
        nested = d.pop(group, None)
        for k, v in (nested or {}).items():
            d[f"{group}_{k}"] = "; ".join(map(str, v)) if isinstance(v, list) else v
    for k, v in d.items():  # what is still structured (inputs: [{"shape": ..., "dtype": ...}]) is JSON text
        if isinstance(v, (list, tuple, dict)):
            d[k] = json.dumps(jsonable(v), separators=(",", ":"), allow_nan=False)
    return d


# -- runtimes --------------------------------------------------------------------------------------


CHECK = ("output check: each runtime's outputs against eager float32 on the same {samples} input sets; rel = max "
         "|out - ref| / max |ref|; float32 fails above {f32:g}, int8 shows rel and top-1 agreement and fails above "
         "{i8:g} (an answer that no longer follows the float network)")
WRONG = ("!! = OUTPUT CHECK FAILED: this runtime's answer differs from eager float32 beyond the tolerance; its time "
         "is not the time of the same computation")


def check_cell(r: ModelRecord) -> str:
    """``ok, rel 5.5e-08``; ``rel 1.6e-02, top-1 100%`` (int8); ``!! FAILED: rel 0.23 > 0.001``; ``reference``
    (eager float32 itself); ``-`` when none (a training step, an old record)."""
    c = r.output_check
    if c is None:
        return "-"
    if c.passed and c.samples == 0:
        return "reference"
    rel = "-" if c.rel_error is None else f"{c.rel_error:.2g}"
    top1 = f", top-1 {c.top1_agreement:.0%}" if c.top1_agreement is not None and r.precision == "int8" else ""
    if not c.passed:
        why = f"rel {rel} > {c.tolerance:g}" if c.rel_error is not None else (c.note or "no comparable output")
        return f"!! FAILED: {why}{top1}"
    return f"rel {rel}{top1}" if r.precision == "int8" else f"ok, rel {rel}"


def failed_check(r: Record) -> bool:
    """Whether an output check of ``r`` failed (a conv record has two: the separable pair's and the standard's)."""
    checks = (getattr(r, "output_check", None), getattr(r, "standard_output_check", None))
    return any(c is not None and not c.passed for c in checks)


def one_time_cell(r: ModelRecord) -> str:
    """``export 6.2 + load 0.0 s``: the runtime's one-time phases, in order; ``-`` when it had none."""
    if not r.one_time_s:
        return "-"
    return " + ".join(f"{k} {v:.1f}" for k, v in r.one_time_s.items()) + " s"


def runtime_notes(records: Sequence[ModelRecord | ConvRecord]) -> list[str]:
    """What a table of several runtimes or of int8 says under it: the check, the calibration, the threads set.
    (A conv sweep's records calibrate on random inputs, always.)"""
    from mbcost.bench.runtimes.calibration import CALIBRATION_BATCHES, CHECK_SAMPLES
    from mbcost.bench.runtimes.check import tolerance_for

    notes = [CHECK.format(samples=CHECK_SAMPLES, f32=tolerance_for("float32"), i8=tolerance_for("int8"))]
    random_inputs = f"random: {CALIBRATION_BATCHES} batches of random normal inputs"
    calibrations = list(dict.fromkeys(getattr(r, "calibration", None) or random_inputs for r in records
                                      if r.precision == "int8"))
    for cal in calibrations:
        random = cal.startswith("random")
        source = cal.split(": ", 1)[-1]
        notes.append(f"int8: static post-training quantization, each runtime's own toolchain, calibrated on {source}"
                     + (": the latency is representative, the accuracy is not" if random else "")
                     + ("; BatchNorm statistics re-estimated on the calibration inputs first"
                        if any(getattr(r, "batchnorm_reestimated", False) for r in records) else ""))
    seen: dict[str, str] = {}
    for r in records:
        if r.runtime not in seen and r.runtime_settings:
            seen[r.runtime] = settings_text(r.runtime_settings)
    if seen:
        notes.append("set on each runtime: " + "; ".join(f"{k} {v}" for k, v in seen.items()))
    return notes


# -- runtimes side by side (compare --runtime; the report's runtime table reads the same rows) ------------------


RUNTIMES_NOTES = (
    "median = median of timed runs (a short budget: mbcost bench measures longer); (vs eager) = eager {dtype}'s "
    "median / this median, on the same device, threads and batch: how many times faster than eager PyTorch",
    "X vs Y: how many times faster X ran than Y on that runtime, measured (and as the MAC ratio predicts: Y's MACs / "
    "X's MACs); X is the model with fewer MACs",
)


def setting_text(s: Setting) -> str:
    """``cpu (AMD EPYC), 1 thread, batch 1``."""
    where = f"{s.device} ({s.device_name})" + (f", {threads(s.threads)}" if s.device == "cpu" else "")
    return f"{where}, batch {s.batch}" + (f", {s.dtype}" if s.dtype != "float32" else "")


def row_check_cell(row: RuntimeRow) -> str:
    """The output checks of a row's models in one cell: ``reference`` (the baseline), ``ok, rel <= 3.1e-07``,
    ``rel <= 0.021, top-1 >= 100%`` (int8), or ``!! FAILED: v2 rel 0.23 > 0.001``."""
    checks = [(m, r.output_check) for m, r in row.records.items() if r.output_check is not None]
    return _checks_cell(checks, row.precision)


def _checks_cell(checks: Sequence[tuple[str, Any]], precision: str) -> str:
    """One cell for named output checks: ``-`` (none), ``!! FAILED: ...``, ``reference`` (the baseline itself),
    ``rel <= X, top-1 >= Y`` (int8) or ``ok, rel <= X``."""
    if not checks:
        return "-"
    failed = [(name, c) for name, c in checks if not c.passed]
    if failed:
        return "!! FAILED: " + ", ".join(
            f"{name} " + (f"rel {c.rel_error:.2g} > {c.tolerance:g}" if c.rel_error is not None else (c.note or "?"))
            for name, c in failed)
    if all(c.samples == 0 for _, c in checks):
        return "reference"
    rel = max(c.rel_error or 0.0 for _, c in checks)
    tops = [c.top1_agreement for _, c in checks if c.top1_agreement is not None]
    if precision == "int8":
        return f"rel <= {rel:.2g}" + (f", top-1 >= {min(tops):.0%}" if tops else "")
    return f"ok, rel <= {rel:.2g}"


def runtimes_table(rows: Sequence[RuntimeRow], models: Sequence[str], *, failures: Sequence[str] = (),
                   skipped: Sequence[str] = (), title: str = "runtimes side by side") -> Table:
    """Runtime x model: per row (a runtime at a precision, under one setting) each model's median with its
    speed-up against eager, the measured speed-ups between the models next to their MAC ratios, the output
    checks. A failed check is flagged ``!!`` next to the median. ``failures`` (a runtime that could not export a
    model) and ``skipped`` (a runtime that cannot run here) are notes."""
    from mbcost.bench.matrix import RuntimeRow

    pairs = RuntimeRow.columns(rows)[1]
    settings = list(dict.fromkeys(row.setting for row in rows))
    columns = [*(["setting"] if len(settings) > 1 else []), "runtime", *[f"{m}: median (vs eager)" for m in models],
               *[f"{a} vs {b}: measured (MACs)" for a, b in pairs], "output check"]
    table_rows = []
    for row in rows:
        cells = [setting_text(row.setting)] if len(settings) > 1 else []
        cells.append(runtime_label(row.runtime, row.precision))
        for m in models:
            r = row.records.get(m)
            if r is None:
                cells.append("-")
                continue
            vs = row.vs_eager(m)
            flag = (" !" if r.wide_spread else "") + (" !!" if failed_check(r) else "")
            cells.append(f"{ms(r.median_ms)}{flag} ({'1x' if row.is_baseline else speed(vs)})")
        for pair in pairs:
            sp = row.speedup(pair)
            cells.append("-" if sp is None else f"{speed(sp.measured)} ({speed(sp.macs_ratio)})")
        cells.append(row_check_cell(row))
        table_rows.append(cells)
    records = [r for row in rows for r in row.records.values()]
    dtype = rows[0].setting.dtype if rows else "float32"
    notes = [RUNTIMES_NOTES[0].format(dtype=dtype), RUNTIMES_NOTES[1]]
    if records:
        notes += runtime_notes(records)
    if any(row.failed_checks for row in rows):
        notes.insert(0, WRONG)
    if any(r.wide_spread for r in records):
        notes.append(wide_note())
    if records:
        notes.append(env_line(records[0]))
    notes += [f"not measured: {f}" for f in failures]
    notes += list(skipped)
    head = f"{setting_text(settings[0])}" if len(settings) == 1 else f"{len(settings)} settings"
    return Table(title=f"mbcost compare: {title}, {head}", columns=columns, rows=table_rows, notes=notes)


def runtime_row_dicts(rows: Sequence[RuntimeRow]) -> list[dict[str, Any]]:
    """The rows as JSON: setting, runtime, precision, each model's median, speed-up against eager and output
    check, and the speed-ups between the models."""
    from dataclasses import asdict

    out = []
    for row in rows:
        out.append({
            "setting": asdict(row.setting), "runtime": row.runtime, "precision": row.precision,
            "baseline": row.is_baseline,
            "models": {m: {"median_ms": r.median_ms, "iqr_ms": r.iqr_ms, "vs_eager": row.vs_eager(m),
                           "output_check": None if r.output_check is None else r.output_check.to_dict()}
                       for m, r in row.records.items()},
            "speedups": [{"model": s.model, "other": s.other, "measured_speedup": s.measured,
                          "macs_ratio": s.macs_ratio, "realised": s.realised} for s in row.speedups]})
    return out


def settings_text(settings: dict[str, Any]) -> str:
    """The thread settings of a runtime's record, the way it names them (``intra_op_num_threads 1, ...``)."""
    unset = {str(n).split()[0] for n in settings.get("not_set", ())}
    keys = [k for k in settings if "thread" in k.lower() and k != "not_set" and k not in unset]
    return ", ".join(f"{k} {settings[k]}" for k in keys) or "-"


# -- bench -----------------------------------------------------------------------------------------


def bench_table(records: Sequence[ModelRecord], ups: Sequence[Speedup], failures: Sequence[str] = ()) -> Table:
    """The ``mbcost bench`` table: one row per network, batch and runtime. With a runtime other than eager,
    or int8, the runtime, its one-time cost and its output check get columns; a failed output check is
    flagged ``!!`` next to the median whatever the columns. ``failures``: runtimes that could not measure
    a network (one line each, shown as notes)."""
    models = list(dict.fromkeys(r.model for r in records))
    with_runtimes = any(r.runtime != "eager" or r.precision == "int8" for r in records)
    columns = ["model", *(["runtime"] if with_runtimes else []), "input", "batch", "dtype", "median", "IQR (runs)",
               "images/s", "GFLOP/s", "act. peak est.", "act. peak measured (vs est.)",
               *([] if with_runtimes else ["mode"])]
    if with_runtimes:
        columns += ["one-time", "output check"]
    others = models if len(models) > 1 else []
    columns += [f"vs {o}: measured (MACs)" for o in others]
    by_pair = {(s.model, s.other, s.config.key): s for s in ups}
    rows = []
    for r in records:
        dtype = "int8" if r.precision == "int8" else r.dtype + (" CL" if r.channels_last else "") \
            + (" compiled" if r.compile and not with_runtimes else "")
        median = ms(r.median_ms) + (" !!" if failed_check(r) else "")
        row = [r.model, *([r.runtime] if with_runtimes else []), "x".join(str(d) for d in r.input), str(r.batch),
               dtype, median, spread(r), number(r.throughput_ips), number(r.achieved_gflops),
               fmt.nbytes(r.estimated_peak_memory_bytes), measured_memory(r),
               *([] if with_runtimes else [mode_label(r)])]
        if with_runtimes:
            row += [one_time_cell(r), check_cell(r)]
        for o in others:
            s = by_pair.get((r.model, o, r.config.key))
            row.append("1x" if o == r.model else ("-" if s is None else f"{speed(s.measured)} ({speed(s.macs_ratio)})"))
        rows.append(row)
    first = records[0]
    train = any(r.mode == "train" for r in records)
    inference = any(r.mode != "train" for r in records)
    notes = [*([TIMING, GFLOPS] if inference else []), *([TRAIN_TIMING, TRAIN_GFLOPS] if train else []),
             conventions.MACS, *([MEMORY, MEMORY_DIFFERENCE] if inference else []), *([TRAIN_MEMORY] if train else []),
             "vs X: how many times faster than X, measured (and as the MAC ratio predicts)", env_line(first)]
    if any(r.wide_spread for r in records):
        notes.insert(2, wide_note())
    if with_runtimes:
        notes += runtime_notes(records)
    if any(failed_check(r) for r in records):
        notes.insert(0, WRONG)
    notes += [f"not measured: {f}" for f in failures]
    title = f"mbcost bench: {first.device} ({first.device_name}), {threads(first.threads)}" \
        if first.device == "cpu" else f"mbcost bench: {first.device_name}"
    return Table(title=title, columns=columns, rows=rows, notes=notes)


def mode_label(r: ModelRecord) -> str:
    """``inference``, or ``train (adam)``."""
    return f"train ({r.optimizer})" if r.mode == "train" else r.mode


def speedup_dicts(ups: Sequence[Speedup]) -> list[dict[str, Any]]:
    return [{"model": s.model, "other": s.other, "batch": s.config.batch, "dtype": s.config.dtype,
             "device": s.config.device, "mode": s.config.mode, "optimizer": s.config.optimizer,
             "runtime": s.config.runtime, "precision": s.config.precision,
             "measured_speedup": s.measured, "macs_ratio": s.macs_ratio, "realised": s.realised} for s in ups]


def results_document(records: Sequence[Record], **extra: Any) -> dict[str, Any]:
    """``{"conventions": ..., "results": [record, ...], ...}``: the ``--format json`` document."""
    doc: dict[str, Any] = {"conventions": {"timing": TIMING, "gflops": GFLOPS, "macs": conventions.MACS,
                                           "flops": conventions.FLOPS},
                           "results": [r.to_dict() for r in records]}
    if any(getattr(r, "mode", None) == "train" for r in records):
        doc["conventions"].update(train_timing=TRAIN_TIMING, train_gflops=TRAIN_GFLOPS)
    checked = [r for r in records if getattr(r, "output_check", None) is not None]
    if checked:
        doc["conventions"]["runtimes"] = runtime_notes(checked)
    doc.update(extra)
    return jsonable(doc)


def wide_note() -> str:
    from mbcost.bench.timer import WIDE_SPREAD

    return WIDE.format(WIDE_SPREAD)


# -- profile (per layer) ---------------------------------------------------------------------------


def category_table(p: LayerProfile) -> Table:
    rows = [[c.category, ms(c.time_ms), share(c.time_share), fmt.count(c.macs) if c.macs else "0",
             share(c.mac_share) if c.category != "unattributed" else "-",
             speed(c.time_share / c.mac_share) if c.mac_share else "-",
             number(c.arithmetic_intensity, 2) if c.ops else "-", number(c.achieved_gflops) if c.ops else "-"]
            for c in p.categories]
    total = sum(c.time_ms for c in p.categories)
    rows.append(["total (sum of own times)", ms(total), "100.0%", fmt.count(p.cost.macs), "100.0%", "", "", ""])
    notes = [
        "time = median over passes of each module's own time (hooks on every module; the modules it called "
        "excluded)",
        "time share / MAC share > 1: the category takes more of the time than of the arithmetic",
        "intensity = the category's (FLOPs + elementwise ops) / bytes moved; GFLOP/s = the same work / its time",
        "unattributed = containers' own time and modules with no analytic record (Flatten, Dropout): "
        "module-call and hook overhead",
        f"instrumented pass {ms(p.instrumented_ms)} (median of {p.passes}); without hooks "
        f"{ms(p.end_to_end.median_ms) if p.end_to_end else '-'}",
        conventions.MACS,
    ]
    if p.layers:
        notes.append(env_line(p.layers[0]))
    cfg = p.config
    return Table(title=f"mbcost profile: {p.model}, input {p.cost.input_label}, batch {cfg.batch}, "
                       f"{cfg.dtype}, {cfg.device_name}: time share vs MAC share",
                 columns=["category", "time", "time share", "MACs", "MAC share", "time/MAC share", "intensity",
                          "GFLOP/s"], rows=rows,
                 notes=notes)


def layers_table(p: LayerProfile, top: int | None = None) -> Table:
    layers = list(p.layers)
    if top:
        layers = sorted(layers, key=lambda r: r.median_ms, reverse=True)[:top]
    with_roof = p.peaks is not None
    columns = LAYER_COLUMNS + (ROOF_COLUMNS if with_roof else [])
    rows = [layer_row(r, with_roof) for r in layers]
    notes = [INTENSITY,
             f"time = the module's own time, median over {p.passes} instrumented passes (forward hooks on every "
             "module; CUDA events on GPU); IQR over the same passes"]
    if with_roof:
        pk = p.peaks
        notes += [ROOFLINE, f"peaks ({pk.dtype}, {threads(pk.threads)}): {number(pk.peak_gflops)} GFLOP/s, "
                            f"{number(pk.peak_gbps)} GB/s, ridge point {number(pk.ridge_point, 2)} FLOP/byte"
                            + (" (cached)" if pk.cached else "")]
    notes += list(p.notes)
    title = f"mbcost profile: {p.model} per layer" + (f", top {top} by time" if top else "")
    return Table(title=title, columns=columns, rows=rows, notes=notes)


def layer_row(r: LayerRecord, roofline: bool = True) -> list[str]:
    """One layer's cells under ``LAYER_COLUMNS`` (and ``ROOF_COLUMNS`` with ``roofline``)."""
    row = [r.layer, r.category, ms(r.median_ms), spread(r), share(r.time_share), share(r.mac_share),
           number(r.arithmetic_intensity, 2), number(r.achieved_gflops, 2)]
    return row + [number(r.roofline_bound_gflops, 1), share(r.bound_fraction)] if roofline else row


def layer_record_table(r: LayerRecord) -> Table:
    """One layer of ``mbcost profile``: the columns of its per-layer table, for this layer alone."""
    columns = LAYER_COLUMNS + ROOF_COLUMNS
    row = layer_row(r)
    notes = ["time = the module's own time (forward hooks on every module; the modules it called excluded), median "
             "of the instrumented passes; IQR over the same passes",
             INTENSITY, ROOFLINE, env_line(r)]
    return Table(title=f"mbcost profile: {r.model}, layer {r.layer} ({r.module_type}), batch {r.batch}, {r.dtype}",
                 columns=columns, rows=[row], notes=notes)


def profile_document(p: LayerProfile) -> dict[str, Any]:
    records: list[Any] = [*([p.end_to_end] if p.end_to_end else []), *p.layers]
    return results_document(
        records,
        categories=[{"category": c.category, "time_ms": c.time_ms, "time_share": c.time_share, "macs": c.macs,
                     "mac_share": c.mac_share, "ops": c.ops, "bytes_moved": c.bytes_moved,
                     "arithmetic_intensity": c.arithmetic_intensity if c.ops else None,
                     "achieved_gflops": c.achieved_gflops if c.ops else None} for c in p.categories],
        instrumented_ms=p.instrumented_ms, unattributed_ms=p.unattributed_ms, passes=p.passes,
        peaks=None if p.peaks is None else {"peak_gflops": p.peaks.peak_gflops, "peak_gbps": p.peaks.peak_gbps,
                                            "ridge_point": p.peaks.ridge_point, "cached": p.peaks.cached},
        roofline=ROOFLINE if p.peaks else None,
    )


# -- sweep and conv --------------------------------------------------------------------------------


def conv_check_cell(r: ConvRecord) -> str:
    """Both stacks' output checks in one cell (``check_cell`` of each): ``ok, rel <= 2.1e-07``; ``rel <= 0.012,
    top-1 100%`` (int8); ``!! FAILED: separable rel 0.23 > 0.001``; ``reference`` (eager float32 itself); ``-``
    for records without checks."""
    checks = [(side, c) for side, c in (("standard", r.standard_output_check), ("separable", r.output_check))
              if c is not None]
    return _checks_cell(checks, r.precision)


def sweep_table(records: Sequence[ConvRecord], failures: Sequence[str] = ()) -> Table:
    """The ``mbcost sweep`` table: one row per point (and runtime). With a runtime other than eager, or int8, the
    runtime and both stacks' output checks get columns; a failed check is flagged ``!!`` next to the measured
    speed-up. ``failures``: runtimes that could not measure a point (notes)."""
    with_runtimes = any(r.runtime != "eager" or r.precision == "int8" for r in records)
    rows = []
    for r in records:
        mac_speedup = 1 / r.macs_ratio if r.macs_ratio else math.nan
        row = [str(r.cin), str(r.k), f"{r.size[0]}x{r.size[1]}"]
        if with_runtimes:
            row.append(runtime_label(r.runtime or "eager", r.precision or r.dtype))
        row += [f"{r.macs_ratio:.4f}", f"{r.formula_ratio:.4f}", speed(mac_speedup),
                ms(r.standard_ms) + (" !" if r.standard_wide_spread else ""),
                ms(r.separable_ms) + (" !" if r.wide_spread else ""),
                speed(r.measured_speedup) + (" !!" if failed_check(r) else ""),
                share(r.measured_speedup / mac_speedup)]
        if with_runtimes:
            row.append(conv_check_cell(r))
        rows.append(row)
    first = records[0] if records else None
    notes = ["M = N = channels; standard KxK conv vs depthwise KxK + pointwise 1x1, stride 1, 'same' padding, "
             "no bias",
             "MAC ratio = exact separable / standard MACs; 1/N + 1/K^2 = the MobileNet paper's closed form",
             "realised = measured speed-up / MAC speed-up", TIMING]
    if any(r.wide_spread or r.standard_wide_spread for r in records):
        notes.append(wide_note())
    if with_runtimes:
        notes += runtime_notes(records)
    if any(failed_check(r) for r in records):
        notes.insert(0, WRONG)
    if first:
        notes.append(env_line(first))
    notes += [f"not measured: {f}" for f in failures]
    title = "mbcost sweep: standard vs depthwise-separable convolution" + (
        f", {first.device_name}, {first.dtype}, batch {first.batch}" if first else "")
    columns = ["M=N", "K", "F", *(["runtime"] if with_runtimes else []), "MAC ratio", "1/N+1/K^2", "MAC speed-up",
               "standard", "separable", "measured speed-up", "realised", *(["output check"] if with_runtimes else [])]
    return Table(title=title, columns=columns, rows=rows, notes=notes)


def conv_rows(r: ConvRecord) -> list[list[str]]:
    """Rows appended to ``mbcost conv``'s table (columns: layer, params, MACs, FLOPs, vs standard)."""
    mac_speedup = 1 / r.macs_ratio if r.macs_ratio else math.nan
    where = f"{r.device}, {r.dtype}"
    return [
        [f"measured standard ({where})", "", "", "",
         f"{ms(r.standard_ms)} (IQR {ms(r.standard_iqr_ms)}, {r.standard_runs} runs)"
         + (" !" if r.standard_wide_spread else "")],
        [f"measured depthwise + pointwise ({where})", "", "", "",
         f"{ms(r.separable_ms)} (IQR {ms(r.iqr_ms)}, {r.runs} runs)" + (" !" if r.wide_spread else "")],
        ["measured speed-up (standard / separable)", "", speed(mac_speedup), "", speed(r.measured_speedup)
         + f" ({share(r.measured_speedup / mac_speedup)} of the MAC speed-up)"],
    ]


# -- roofline --------------------------------------------------------------------------------------


def peaks_table(peaks: Sequence[Peaks]) -> Table:
    rows = [[p.device_name, p.dtype, str(p.threads), number(p.peak_gflops), f"{ms(p.matmul_ms)} ({p.matmul_runs})",
             number(p.peak_gbps), f"{ms(p.copy_ms)} ({p.copy_runs})", number(p.ridge_point, 2),
             "cached" if p.cached else p.measured_at] for p in peaks]
    notes = list(PEAKS)
    if peaks:
        p = peaks[0]
        notes.append(f"matmul n = {p.matmul_n}, copy {fmt.nbytes(p.copy_bytes)} moved; torch {p.torch}")
    return Table(title=PEAKS_TITLE,
                 columns=["device", "dtype", "threads", "GFLOP/s", "matmul", "GB/s", "copy", "ridge FLOP/B",
                          "measured"], rows=rows, notes=notes)


def peak_record_table(r: PeakRecord) -> Table:
    """The peaks of ``mbcost roofline`` from their record."""
    row = [r.device_name, r.dtype, str(r.threads), number(r.peak_gflops), f"{ms(r.median_ms)} ({r.runs})",
           number(r.peak_gbps), ms(r.copy_median_ms), number(r.peak_gflops / r.peak_gbps, 2) if r.peak_gbps else "-"]
    notes = [*PEAKS, f"matmul n = {r.matmul_n}, copy {fmt.nbytes(r.copy_bytes)} moved", env_line(r)]
    return Table(title=PEAKS_TITLE,
                 columns=["device", "dtype", "threads", "GFLOP/s", "matmul (runs)", "GB/s", "copy", "ridge FLOP/B"],
                 rows=[row], notes=notes)


# -- compare --------------------------------------------------------------------------------------


def compare_rows(labels: Sequence[str], records: Sequence[ModelRecord], ups: Sequence[Speedup],
                 skipped: Sequence[str] = ()) -> list[list[str]]:
    """Measured rows for ``mbcost compare`` (metrics as rows, one column per model label)."""
    rows: list[list[str]] = []
    devices = list(dict.fromkeys(r.device for r in records))
    for dev in devices:
        by_model = {r.model: r for r in records if r.device == dev}
        first = next(iter(by_model.values()))
        tag = f"{dev.upper()} {first.dtype}"
        for what, cell in ((f"latency (median, batch {first.batch})", lambda r: ms(r.median_ms)),
                           ("IQR (runs)", spread), ("images/s", lambda r: number(r.throughput_ips)),
                           ("GFLOP/s achieved", lambda r: number(r.achieved_gflops))):
            rows.append([f"{tag} {what}", *[cell(by_model[m]) if m in by_model else "-" for m in labels]])
        pairs = {(s.model, s.other): s for s in ups if s.config.device == dev}
        if len(labels) > 1:
            for other in labels:
                cells = []
                for m in labels:
                    s = pairs.get((m, other))
                    cells.append("1x" if m == other else ("-" if s is None else
                                                          f"{speed(s.measured)} (MACs {speed(s.macs_ratio)})"))
                rows.append([f"{tag} speed-up vs {other}", *cells])
    rows += memory_rows(labels, records)
    rows += [[f"measured: {why}", *["" for _ in labels]] for why in skipped]
    return rows


def memory_rows(labels: Sequence[str], records: Sequence[ModelRecord]) -> list[list[str]]:
    """The estimated activation peak, then per device the measured one and the difference
    (measured - estimated), always shown; ``-`` where a figure is missing."""
    if not records:
        return []
    estimated: dict[str, int | None] = {}
    for r in records:
        estimated.setdefault(r.model, r.estimated_peak_memory_bytes)
    rows = [["activation peak, estimated (lifetimes)", *[fmt.nbytes(estimated.get(m)) for m in labels]]]
    for dev in dict.fromkeys(r.device for r in records):
        by_model = {r.model: r for r in records if r.device == dev}
        rows.append([f"activation peak, measured ({dev})",
                     *[fmt.nbytes(by_model[m].peak_memory_bytes) if m in by_model else "-" for m in labels]])
        rows.append([f"difference (workspace, allocator), {dev}", *[memory_difference(by_model.get(m))
                                                                      for m in labels]])
    return rows


def compare_notes(records: Sequence[ModelRecord]) -> list[str]:
    if not records:
        return []
    notes = ["measured rows: " + TIMING + "; a short time budget (mbcost bench measures longer)",
             "speed-up vs X = X's median / this model's median (MACs: X's MACs / this model's MACs)",
             MEMORY, MEMORY_DIFFERENCE, env_line(records[0])]
    if any(r.wide_spread for r in records):
        notes.insert(1, wide_note())
    return notes
