"""One self-contained HTML page: plotly.js embedded once, the summary tables, the figures.

The page needs no network to open: plotly.js is inlined in a single ``<script>``; each figure is
a ``<div>`` plus a small script with its JSON (plotly's JSON encoder writes ``<``, ``>`` and
``/`` as ``\\u003c``, ``\\u003e``, ``\\u002f``, so no string can close the script). Every text that
comes from the user (model labels, factory paths, run labels, file names) is escaped with
``html.escape``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mbcost import units as fmt
from mbcost.bench.records import ModelRecord
from mbcost.errors import SpecError
from mbcost.render import conventions
from mbcost.render.costs import ratios
from mbcost.report.data import ReportData
from mbcost.report.markup import e, notes_html, table_html

__all__ = ["e", "predicted_html", "prepare_out", "render_html", "runtimes_html", "write_report"]

LATENCY = ("latency = median wall time of one forward pass over the timed runs (IQR = interquartile range); "
           "measured by mbcost bench on the run's device; only the figure marked predicted is estimated, from a "
           "calibrated device profile (mbcost calibrate)")
QUOTED = ("ImageNet top-1 accuracies are quoted from the papers (cited below) for the model at width 1.0 and "
          "224x224 input; mbcost does not measure accuracy")
CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": False}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#222;
background:#fafafa;line-height:1.45}
main{max-width:1280px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:1.6em;margin:0.2em 0 0.1em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd;
padding-bottom:4px}h3{font-size:1.05em}
.meta{color:#555;font-size:0.92em}
table{border-collapse:collapse;margin:10px 0 6px;font-size:0.92em;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d4d4d4;padding:4px 9px;vertical-align:top}
th{background:#f1f3f6;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.q{background:#fffbea}.small{font-size:0.85em;color:#555}
.warn{color:#a33;border:1px solid #e3b3b3;background:#fff8f8;padding:6px 10px;display:inline-block}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}
figure{margin:0}.figure{border:1px solid #eee;margin:8px 0 4px}
ul.conv li{margin:2px 0}
"""


def _latency_columns(data: ReportData) -> list[tuple[str, Any]]:
    labels = {m.label for m in data.models}
    return list(dict.fromkeys((r.label, r.batch) for r in data.of_kind(ModelRecord)
                              if r.model in labels and r.input == tuple(data.input)))


def _latency_cell(data: ReportData, model: str, run: str, batch: int) -> str:
    for r in reversed(data.of_kind(ModelRecord)):
        if r.model == model and r.label == run and r.batch == batch and r.input == tuple(data.input):
            flag = ' <span title="IQR/median above the threshold: noisy measurement">*</span>' if r.wide_spread else ""
            return f"{fmt.ms(r.median_ms)}<br><span class='small'>IQR {fmt.ms(r.iqr_ms)}</span>{flag}"
    return "-"


def _estimate_cell(m: Any) -> str:
    if m.peak_activation_bytes is None:
        return "n/a <span class='small'>(counted on a real run)</span>"
    return f"{fmt.nbytes(m.peak_activation_bytes)}<br><span class='small'>at {e(m.peak_op or '')}</span>"


def _measured_memory_cell(data: ReportData, m: Any) -> str:
    """Measured activation peaks (``mbcost bench`` records) of ``m`` at the report's input, per run."""
    parts = []
    for r in data.of_kind(ModelRecord):
        measured = r.peak_memory_bytes
        if r.model != m.label or r.input != tuple(data.input) or r.batch != m.batch or measured is None \
                or r.mode != "inference":
            continue
        diff = ""
        if m.peak_activation_bytes:
            delta = measured - m.peak_activation_bytes
            diff = f" <span class='small'>{'+' if delta >= 0 else ''}{fmt.nbytes(delta)}</span>"
        parts.append(f"{fmt.nbytes(measured)}{diff}<br><span class='small'>{e(r.label)}</span>")
    return "<br>".join(parts) if parts else "-"


def _train_cell(m: Any) -> str:
    if m.mode != "train":
        return "-"
    memory = fmt.nbytes(m.train_peak_memory_bytes) if m.train_peak_memory_bytes is not None else "n/a"
    return (f"{fmt.count(m.backward_macs)}<br><span class='small'>{memory} (weights, grads, optimizer state, "
            f"activations)</span>")


def summary_html(data: ReportData) -> str:
    """The summary table (models as rows), the ratio matrix and the citations of quoted figures."""
    lat_cols = _latency_columns(data)
    cites = list(dict.fromkeys(ref.source for ref in data.references.values()))
    head = ["model", "params", "MACs", "FLOPs (2 x MACs)", "elementwise ops", "weights",
            "activation peak<br><span class='small'>estimated: tensor lifetimes + CPU scratch</span>",
            "activation peak<br><span class='small'>measured, and the difference (workspace, allocator)</span>"]
    train = any(m.mode == "train" for m in data.models)
    if train:
        head += [f"training step<br><span class='small'>backward MACs; memory with {e(data.models[0].optimizer)}"
                 "</span>"]
    head += [f"latency, {e(run)}<br><span class='small'>batch {e(b)}, median</span>" for run, b in lat_cols]
    head.append("ImageNet top-1<br><span class='small'>quoted from the paper, not measured</span>")
    rows = []
    for m in data.models:
        ref = data.references.get(m.label)
        top1 = (f"{ref.top1:.1f}% <sup>[{cites.index(ref.source) + 1}]</sup>" if ref and ref.top1 is not None
                else "-")
        unused = ("<br><span class='small' title='in modules that issued no op in this forward: "
                  + e(", ".join(f"{u.module} ({u.module_type}, {fmt.exact(u.params)})" for u in m.unattributed))
                  + f"'>{fmt.count(m.unattributed_params)} unused</span>") if m.unattributed else ""
        cells = [f"{fmt.count(m.params)}<br><span class='small'>{fmt.exact(m.params)}</span>{unused}",
                 f"{fmt.count(m.macs)}<br><span class='small'>{fmt.exact(m.macs)}</span>", fmt.count(m.flops),
                 fmt.count(m.elementwise_ops), f"{fmt.nbytes(m.weight_bytes)} <span class='small'>{e(m.dtype)}</span>",
                 _estimate_cell(m), _measured_memory_cell(data, m), *([_train_cell(m)] if train else []),
                 *(_latency_cell(data, m.label, run, b) for run, b in lat_cols)]
        rows.append(f"<tr><th>{e(m.label)}</th>" + "".join(f"<td class='n'>{c}</td>" for c in cells)
                    + f"<td class='n q'>{top1}</td></tr>")
    out = [table_html("id='summary'", head, rows)]
    if not lat_cols:
        out.append("<p class='warn'>Latency not measured: run <code>mbcost bench --save results.jsonl</code> and "
                   "pass <code>--from results.jsonl</code> (or <code>--bench</code>) to add it.</p>")
    if any(r.wide_spread for r in data.of_kind(ModelRecord)):
        out.append("<p class='small'>* noisy measurement: the interquartile range is large against the median.</p>")
    if len(data.models) > 1:
        r = ratios(list(data.models))
        head = ["model", *(f"vs {e(b.label)}" for b in data.models)]
        cell = {a: {b: f"params {fmt.ratio(x['params'])}<br>MACs {fmt.ratio(x['macs'])}" for b, x in row.items()}
                for a, row in r.items()}
        body = [f"<tr><th>{e(a.label)}</th>" + "".join(f"<td class='n'>{cell[a.label].get(b.label, '-')}</td>"
                                                       for b in data.models) + "</tr>" for a in data.models]
        out.append("<h3>Ratios (row model / column model)</h3>"
                   "<p class='small'>1/32.7 means the row model has 32.7 times fewer; 27.2x means 27.2 times more.</p>"
                   + table_html("id='ratios'", head, body))
    if cites:
        items = "".join(f"<li>{e(c)}</li>" for c in cites)
        out.append(f"<h3>Quoted figures</h3><p class='small'>{e(QUOTED)}.</p><ol id='citations'>{items}</ol>")
    return "\n".join(out)


def runs_html(data: ReportData) -> str:
    if not data.runs:
        return ("<p class='warn'>No measurements in this report: run <code>mbcost bench --save results.jsonl</code> "
                "(on each machine and device you care about) and pass <code>--from results.jsonl</code>.</p>")
    head = ["run label", "device", "dtype", "runtime", "threads", "torch", "CPU", "CUDA / cuDNN", "platform",
            "measured at", "records", "from"]
    rows = []
    for run in data.runs:
        env = run.env
        cuda = " / ".join(v for v in (env.cuda, env.cudnn) if v) or "-"
        counts = ", ".join(f"{n} {k}" for k, n in run.counts.items())
        cells = [run.label, f"{run.device} ({run.device_name})" if run.device_name else run.device, run.dtype,
                 run.runtime + (" int8" if run.precision == "int8" else ""), run.threads, env.torch, env.cpu, cuda,
                 env.platform, env.timestamp, counts,
                 ", ".join(Path(s).name for s in run.sources) or "-"]
        rows.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    out = [table_html("id='runs'", head, rows)]
    if data.skipped:
        out.append(notes_html(data.skipped))
    return "\n".join(out)


def runtimes_html(data: ReportData) -> str:
    """The runtime x model table (``data.runtime_rows``): each model's median and speed-up against eager, the
    measured speed-ups between the models next to their MAC ratios, the output checks."""
    from mbcost.bench.matrix import RuntimeRow
    from mbcost.render.bench import row_check_cell, runtime_label, setting_text

    rows = data.runtime_rows
    if not rows:
        return ""
    models, pairs = RuntimeRow.columns(rows)
    many = len({row.setting for row in rows}) > 1
    head = [*(["setting"] if many else []), "runtime",
            *[f"{e(m)}<br><span class='small'>median (vs eager)</span>" for m in models],
            *[f"{e(a)} vs {e(b)}<br><span class='small'>measured (MACs)</span>" for a, b in pairs], "output check"]
    body = []
    for row in rows:
        cells = [f"<td>{e(setting_text(row.setting))}</td>"] if many else []
        cells.append(f"<th>{e(runtime_label(row.runtime, row.precision))}</th>")
        for m in models:
            r = row.records.get(m)
            if r is None:
                cells.append("<td class='n'>-</td>")
                continue
            wrong = r.output_check is not None and not r.output_check.passed
            vs = "1x, the baseline" if row.is_baseline else fmt.speed(row.vs_eager(m))
            cells.append(f"<td class='n'>{fmt.ms(r.median_ms)}{' <b>!!</b>' if wrong else ''}<br>"
                         f"<span class='small'>{e(vs)}</span></td>")
        for pair in pairs:
            sp = row.speedup(pair)
            cells.append("<td class='n'>-</td>" if sp is None else
                         f"<td class='n'>{fmt.speed(sp.measured)}<br><span class='small'>MACs "
                         f"{fmt.speed(sp.macs_ratio)}</span></td>")
        cells.append(f"<td>{e(row_check_cell(row))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = ["median of the timed runs; (vs eager) = eager PyTorch's median / this median, same device, threads and "
             "batch", "X vs Y = Y's median / X's median on that runtime (MACs: Y's MACs / X's MACs); X has fewer MACs",
             "output check: the runtime's outputs against eager float32 on the same inputs; !! = failed: that time is "
             "not the time of the same computation"]
    if any(row.precision == "int8" for row in rows):
        notes.append("int8: static post-training quantization with each runtime's own toolchain; calibrated on "
                     "random inputs unless the run names a file: the latency is representative, the accuracy is not")
    return table_html("id='runtimes'", head, body) + notes_html(notes)


def predicted_html(data: ReportData) -> str:
    """Each model's predicted and measured latency and the error, under the predicted-vs-measured figure."""
    pred = data.predicted
    if pred is None:
        return ""
    body = "".join(f"<tr><th>{e(p.model)}</th><td class='n'>{fmt.ms(p.measured_ms)}</td>"
                   f"<td class='n'>{fmt.ms(p.predicted_ms)} ({p.interval_ms[0]:.2f}-{p.interval_ms[1]:.2f})</td>"
                   f"<td class='n'>{p.error:+.1%}</td></tr>" for p in pred.points)
    notes = [f"predicted with the device profile {pred.profile or '(given)'} for run {pred.run} ({pred.key.label()});"
             " measured: the fastest timed run; error = predicted / measured - 1"]
    if pred.forced:
        notes.append(f"FORCED: the profile was made for another setup ({'; '.join(pred.mismatch)})")
    return (table_html("id='predicted-table'", ["model", "measured", "predicted (interval)", "error"], body)
            + notes_html(notes))


def scaling_html(data: ReportData) -> str:
    """The papers' trade-off tables: MACs per width x resolution, and parameters per width."""
    out = []
    for name in dict.fromkeys(m.name for m in data.scaling):
        ms = [m for m in data.scaling if m.name == name]
        widths = sorted({m.width for m in ms}, reverse=True)
        res = sorted({m.input for m in ms}, reverse=True)
        by = {(m.width, m.input): m for m in ms}
        head = ["model@width", *(f"MACs at {r[0]}x{r[1]}" for r in res), "params"]
        body = []
        for w in widths:
            cells = "".join(f"<td class='n'>{fmt.count(by[(w, r)].macs)}</td>" if (w, r) in by else "<td>-</td>"
                            for r in res)
            params = next(by[(w, r)].params for r in res if (w, r) in by)
            body.append(f"<tr><th>{e(name)}@{w:g}</th>{cells}<td class='n'>{fmt.count(params)}</td></tr>")
        out.append(table_html("class='scaling'", head, body))
    return "\n".join(out)


#: The tables shown under a figure's heading, by figure key.
TABLES: dict[str, Callable[[ReportData], str]] = {"scaling": scaling_html, "runtimes": runtimes_html,
                                                  "predicted": predicted_html}


def _figure_html(key: str, fig: Any) -> str:
    import plotly.io as pio

    height = fig.layout.height or 460
    div = pio.to_html(fig, full_html=False, include_plotlyjs=False, config=CONFIG, div_id=f"fig-{key}",
                      default_height=f"{height}px", default_width="100%")
    return f"<div class='figure' data-figure='{e(key)}'>{div}</div>"


def render_html(data: ReportData, figures: Mapping[str, Any] | None = None, *, command: str | None = None) -> str:
    """The complete page as a string.

    Args:
        data: what to show (``mbcost.report.data.gather``).
        figures: the figures by id (default: ``report_figures(data)``).
        command: the command line that produced the page, shown in its footer.
    """
    import plotly.offline

    from mbcost._version import __version__
    from mbcost.report.figures import FIGURE_BY_KEY, ReportFigure, report_figures

    figures = report_figures(data) if figures is None else figures
    labels = ", ".join(m.label for m in data.models)
    at = data.models[0].input_label if data.models else "x".join(map(str, data.input))
    title = f"mbcost report: {labels} at {at}"
    from mbcost.report.claims_html import CLAIMS_CSS, claims_html

    sections: list[str] = []
    claim_figures: dict[str, list[str]] = {}
    headed = set()
    for key, fig in figures.items():
        spec = FIGURE_BY_KEY.get(key.rpartition("-")[0] or key, ReportFigure(key, lambda d: None, key))
        if spec.claim and data.claims is not None:  # shown with its claim's evidence
            claim_figures.setdefault(spec.claim, []).append(_figure_html(key, fig))
            continue
        if spec.key not in headed:  # one heading for a figure drawn per model
            headed.add(spec.key)
            sections.append(f"<h2 id='{e(spec.key)}'>{e(spec.heading)}</h2><p>{spec.text}</p>")
            if spec.key in TABLES:  # the figure's numbers as a table, under its heading
                sections.append(TABLES[spec.key](data))
        sections.append(_figure_html(key, fig))
    claims = ""
    if data.claims is not None:
        claims = f"<h2 id='claims-h'>Claims checked</h2>\n{claims_html(data.claims, claim_figures)}"
    conv_items = "".join(f"<li>{e(c)}</li>" for c in [*conventions.for_costs(), LATENCY, QUOTED])
    sources = ", ".join(e(s) for s in data.sources) or "none"
    plotly_js = plotly.offline.get_plotlyjs().replace("</script", "<\\/script")
    hint = f"<p class='small' id='predicted-hint'>{e(data.predicted_hint)}</p>" if data.predicted_hint else ""
    footer = f"<p class='small'>Made with <code>{e(command)}</code>.</p>" if command else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_CSS}{CLAIMS_CSS}</style>
<script type="text/javascript">{plotly_js}</script>
</head>
<body>
<main data-figures="{len(figures)}">
<h1>{e(title)}</h1>
<p class="meta">Generated {e(data.created)} by mbcost {e(__version__)}; batch {data.batch};
measurement files: {sources}. Counts are analytic (exact); latencies are measured; accuracies are quoted.</p>
{claims}
<h2 id="conventions">Conventions</h2>
<ul class="conv">{conv_items}</ul>
<h2 id="summary-h">Summary</h2>
{summary_html(data)}
<h2 id="runs-h">Measured runs</h2>
{runs_html(data)}
{hint}
{''.join(sections)}
{footer}
</main>
</body>
</html>
"""


def write_report(data: ReportData, path: str | Path, figures: Mapping[str, Any] | None = None, *,
                 command: str | None = None) -> Path:
    """Render the page and write it atomically to ``path`` (its directory is created if missing).

    Raises:
        SpecError: ``path`` cannot be written; UsageError: the write itself failed.
    """
    from mbcost.io import write_text_atomic

    path = prepare_out(path)
    write_text_atomic(path, render_html(data, figures, command=command))
    return path


def prepare_out(path: str | Path) -> Path:
    """Create ``path``'s directory if missing, then check that ``path`` can be written
    (``mbcost.io.check_target``), before any work.

    Raises:
        SpecError: ``path`` is a directory, its directory cannot be created, or it is not writable.
    """
    from mbcost.io import check_target

    path = Path(path)
    parent = path.parent
    if not path.is_dir():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpecError(f"--out {path}: cannot create directory {parent} ({exc.strerror or exc})") from None
    check_target(path, "--out")
    return path
