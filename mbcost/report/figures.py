"""Plotly figures of costs and measurements. One function per figure; each reads result objects
(``ModelCost``, ``ConvComparison``, the typed measurement records of ``mbcost.bench.records``,
grouped into runs by their ``label``) and computes no cost itself.

Every axis title carries its unit and convention; every text that comes from the user (model
labels, layer names, run labels) is HTML-escaped, because plotly renders a subset of HTML in
text. Each function returns a ``plotly.graph_objects.Figure``, which displays inline in Jupyter.

Example:
    >>> from mbcost.report.data import gather
    >>> from mbcost.report.figures import params_macs_figure
    >>> fig = params_macs_figure(gather("v1,v2,vgg16").models)
    >>> fig.layout.yaxis.type
    'log'
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mbcost import units as fmt
from mbcost.bench.records import ConvRecord, LayerRecord, ModelRecord, PeakRecord, Record
from mbcost.bench.runtimes import runtime_label
from mbcost.cost.conv import ConvComparison
from mbcost.cost.result import CATEGORIES, ModelCost
from mbcost.report.data import Predictions, ReportData, category_times
from mbcost.zoo.registry import Reported

if TYPE_CHECKING:
    from mbcost.bench.matrix import RuntimeRow
    from mbcost.claims.frontier import FrontierPoint
    from mbcost.experiments.linear_bottleneck import LinearBottleneck

__all__ = [
    "FIGURES", "FIGURE_BY_KEY", "NOT_MEASURED", "NOT_PROFILED", "ReportFigure", "bottleneck_error_figure",
    "category_figure", "conv_ratio_figure", "frontier_figure", "latency_figure", "params_macs_figure",
    "predicted_figure",
    "report_figures", "roofline_figure", "runtime_figure", "spirals_figure", "time_share_figure",
]

NOT_MEASURED = "not measured: run  mbcost bench --save results.jsonl  and pass  --from results.jsonl"
NOT_PROFILED = ("not measured: run  mbcost profile v1 --save results.jsonl  (per-layer times and the device's "
                "peaks)<br>and pass  --from results.jsonl,  or make the report with  --bench")

CATEGORY_NAMES = {
    "conv": "standard conv (KxK)",
    "dwconv": "depthwise conv",
    "pwconv": "pointwise conv (1x1)",
    "linear": "fully connected",
    "other": "other (BN, act., pool, add)",
}
CATEGORY_COLORS = {"conv": "#4c72b0", "dwconv": "#dd8452", "pwconv": "#55a868", "linear": "#8172b3",
                   "other": "#937860"}
PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
           "#ccb974", "#64b5cd")
DASHES = ("dot", "dash", "dashdot", "longdash")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down")

_LAYOUT = dict(template="plotly_white", font=dict(size=13), height=480,
               margin=dict(l=80, r=20, t=100, b=70), hoverlabel=dict(namelength=-1),
               legend=dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top", tracegroupgap=4))


def esc(text: Any) -> str:
    """Escape a user-derived string for plotly text (plotly renders a subset of HTML)."""
    return html.escape(str(text), quote=False)


def _size(hw: Sequence[int] | None) -> str:
    return "?" if not hw else "x".join(str(v) for v in hw)


def _layout(fig: go.Figure, title: str, subtitle: str = "", **extra: Any) -> go.Figure:
    text = f"<b>{title}</b>" + (f"<br><span style='font-size:12px;color:#555'>{subtitle}</span>" if subtitle else "")
    layout = {**_LAYOUT, **extra}
    fig.update_layout(**layout, title=dict(text=text, x=0.01, xanchor="left", yref="container", yanchor="top",
                                           y=1 - 14 / layout["height"]))
    fig.update_xaxes(exponentformat="SI")
    fig.update_yaxes(exponentformat="SI")
    # a trace with hover text and no template of its own shows the text alone
    fig.update_traces(hovertemplate="%{hovertext}<extra></extra>",
                      selector=lambda t: t.hovertext is not None and t.hovertemplate is None)
    return fig


def _not_measured(fig: go.Figure, text: str = NOT_MEASURED) -> go.Figure:
    fig.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font=dict(size=15, color="#a33"), bordercolor="#a33", borderwidth=1, borderpad=8,
                       bgcolor="#fff8f8")
    return fig


def _log_axis(fig: go.Figure, values: Iterable[float], title: str, *, axis: str = "y", row: int | None = None,
              col: int | None = None, from_decade: bool = False, above: float = 0.15, below: float = 0.15) -> None:
    """Make an axis logarithmic with readable ticks: 1-2-5 steps labelled in full ("200 M", "0.05").

    ``from_decade`` starts the axis at the power of ten below the smallest value (for bars).
    """
    positive = [float(v) for v in values if v is not None and v > 0]
    update: dict[str, Any] = dict(type="log", title_text=title)
    if positive:
        lo = math.log10(min(positive))
        hi = math.log10(max(positive)) + above
        lo = math.floor(lo) if from_decade else lo - below
        steps = [(m, e) for e in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in (1, 2, 5)
                 if lo - 1e-9 <= math.log10(m) + e <= hi]
        if len(steps) > 10:  # many decades: powers of ten only
            steps = [(m, e) for m, e in steps if m == 1]
        ticks = [float(f"{m}e{e}") for m, e in steps]
        update.update(range=[lo, hi], tickvals=ticks, ticktext=[_tick(t) for t in ticks])
    (fig.update_yaxes if axis == "y" else fig.update_xaxes)(**update, row=row, col=col)


def _tick(v: float) -> str:
    return fmt.count(v, 0) if v >= 1000 else f"{v:g}"


def _hover(lines: Iterable[str]) -> str:
    return "<br>".join(lines)


# ---------------------------------------------------------------------------------------------
# Analytic figures


def params_macs_figure(models: Sequence[ModelCost], references: Mapping[str, Reported] | None = None) -> go.Figure:
    """Parameters and MACs per model on log axes, with the papers' quoted figures beside the counts."""
    references = references or {}
    labels = [esc(m.label) for m in models]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("Parameters per model", "MACs per model (one forward pass)"))
    for col, key, unit, axis in ((1, "params", "parameters", "parameters (count, log scale)"),
                                 (2, "macs", "MACs", "MACs (multiply-accumulates, log scale)")):
        values = [getattr(m, key) for m in models]
        _log_axis(fig, values, axis, row=1, col=col, from_decade=True, above=0.3)
        fig.add_trace(go.Bar(
            x=labels, y=values, name="counted by mbcost", legendgroup="counted", showlegend=col == 1,
            marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(models))],
            text=[fmt.count(v) for v in values], textposition="outside", cliponaxis=False,
            hovertext=[f"{lab}: {fmt.exact(v)} {unit}" for lab, v in zip(labels, values, strict=True)]), row=1, col=col)
        quoted = [(esc(m.label), getattr(references.get(m.label), f"{key}_millions", None)) for m in models]
        quoted = [(lab, v * 1e6) for lab, v in quoted if v is not None]
        if quoted:
            fig.add_trace(go.Scatter(
                x=[q[0] for q in quoted], y=[q[1] for q in quoted], mode="markers",
                name="reported in the paper (quoted)", legendgroup="paper", showlegend=col == 1,
                marker=dict(symbol="line-ew-open", size=34, color="#111", line=dict(width=3, color="#111")),
                hovertext=[f"{lab}: paper reports {fmt.count(v)} {unit}" for lab, v in quoted]), row=1, col=col)
    fig.update_xaxes(title_text="model")
    first = models[0]
    return _layout(fig, "Parameters and MACs per model",
                   f"input {_size(first.input)}, batch {first.batch}; MACs = multiply-accumulates of conv and linear "
                   "layers (FLOPs = 2 x MACs); black marks: the papers' figures, quoted")


def category_figure(models: Sequence[ModelCost]) -> go.Figure:
    """Share of MACs and of parameters by layer category, per model (MobileNet V1 Table 2 style)."""
    labels = [esc(m.label) for m in models]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("Share of MACs by layer category", "Share of parameters by layer category"))
    for col, key, what in ((1, "macs", "MACs"), (2, "params", "parameters")):
        fig.update_yaxes(title_text=f"share of the model's {what} (%)", row=1, col=col)
        for cat in CATEGORIES:
            parts = [getattr(m.categories[cat], key) for m in models]
            totals = [getattr(m, key) for m in models]
            shares = [100 * p / t if t else 0.0 for p, t in zip(parts, totals, strict=True)]
            fig.add_trace(go.Bar(
                x=labels, y=shares, name=CATEGORY_NAMES[cat], legendgroup=cat, showlegend=col == 1,
                marker_color=CATEGORY_COLORS[cat],
                text=[f"{s:.1f}%" if s >= 4 else "" for s in shares], textposition="inside",
                hovertext=[f"{lab}, {CATEGORY_NAMES[cat]}: {s:.2f}% ({fmt.exact(p)} {key.replace('macs', 'MACs')})"
                           for lab, s, p in zip(labels, shares, parts, strict=True)]), row=1, col=col)
    fig.update_layout(barmode="stack")
    fig.update_yaxes(range=[0, 100], ticksuffix="%")
    fig.update_xaxes(title_text="model")
    return _layout(fig, "Where the cost sits: MACs and parameters by layer category",
                   "as in the MobileNet V1 paper, Table 2 (resource per layer type); hover for exact counts")


def layers_figure(model: ModelCost) -> go.Figure:
    """MACs and parameters of every conv and linear layer, in forward order, coloured by category."""
    counted = [lc for lc in model.layers if lc.macs or lc.kind in ("conv", "matmul")]
    layers = list(enumerate(counted, 1))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("MACs per layer", "Parameters per layer"))
    for cat in CATEGORIES:
        chosen = [(i, lc) for i, lc in layers if lc.category == cat]
        if not chosen:
            continue
        hover = [_hover([f"#{i} {esc(lc.name)} ({esc(lc.module_type)})", CATEGORY_NAMES[cat],
                         f"{_size(lc.input_shape)} -> {_size(lc.output_shape)}",
                         f"MACs {fmt.exact(lc.macs)} ({fmt.percent(lc.macs, model.macs)})",
                         f"params {fmt.exact(lc.params)} ({fmt.percent(lc.params, model.params)})"])
                 for i, lc in chosen]
        for row, key in ((1, "macs"), (2, "params")):
            fig.add_trace(go.Bar(x=[i for i, _ in chosen], y=[getattr(lc, key) for _, lc in chosen],
                                 name=CATEGORY_NAMES[cat], legendgroup=cat, showlegend=row == 1,
                                 marker_color=CATEGORY_COLORS[cat], hovertext=hover), row=row, col=1)
    fig.update_layout(barmode="overlay", bargap=0.15)
    fig.update_yaxes(title_text="MACs (multiply-accumulates)", row=1, col=1)
    fig.update_yaxes(title_text="parameters (count)", row=2, col=1)
    fig.update_xaxes(title_text="conv / linear layer, in forward order (hover for its name)", row=2, col=1)
    return _layout(fig, f"{esc(model.label)}: MACs and parameters per layer",
                   f"input {_size(model.input)}, batch {model.batch}; conv and linear layers only "
                        "(BatchNorm parameters are in 'other' in the category chart)", height=560)


def conv_ratio_figure(grid: Sequence[ConvComparison], records: Iterable[Record] = ()) -> go.Figure:
    """Separable / standard cost ratio across channels and kernels: the paper's 1/N + 1/K^2, the
    exact counts and, when measured, the measured time ratios."""
    fig = go.Figure()
    kernels = list(dict.fromkeys(c.kernel for c in grid))
    for n, k in enumerate(kernels):
        color = PALETTE[n % len(PALETTE)]
        cs = sorted((c for c in grid if c.kernel == k), key=lambda c: c.out_channels)
        fig.add_trace(go.Scatter(
            x=[c.out_channels for c in cs], y=[float(c.formula_ratio) for c in cs], mode="lines",
            name=f"K={k}: formula 1/N + 1/K<sup>2</sup>", line=dict(color=color, width=2), legendgroup=f"k{k}",
            hovertext=[f"K={k}, N={c.out_channels}: 1/N + 1/K<sup>2</sup> = {c.formula_ratio} "
                       f"= {float(c.formula_ratio):.4f}" for c in cs]))
        fig.add_trace(go.Scatter(
            x=[c.out_channels for c in cs], y=[float(c.macs_ratio) for c in cs], mode="markers",
            name=f"K={k}: exact MAC count", marker=dict(color=color, size=9, symbol="circle-open", line=dict(width=2)),
            legendgroup=f"k{k}",
            hovertext=[_hover([f"M={c.in_channels}, N={c.out_channels}, K={k}, {_size(c.size)} map",
                               f"standard {fmt.exact(c.standard.macs)} MACs, separable {fmt.exact(c.separable.macs)}",
                               f"ratio {float(c.macs_ratio):.4f} ({fmt.ratio(float(c.macs_ratio))})"]) for c in cs]))
    measured = [r for r in records if isinstance(r, ConvRecord)]
    groups: dict[tuple[str, int, str], list[ConvRecord]] = {}
    for r in measured:  # one series per run, kernel and feature-map size
        groups.setdefault((r.label, r.k, _size(r.size)), []).append(r)
    runs = list(dict.fromkeys(run for run, _, _ in groups))
    sizes = list(dict.fromkeys(size for _, _, size in groups))
    for (run, k, size), rs in groups.items():
        rs = sorted(rs, key=lambda r: r.cout)
        color = PALETTE[kernels.index(k) % len(PALETTE)] if k in kernels else "#444"
        fig.add_trace(go.Scatter(
            x=[r.cout for r in rs], y=[r.separable_ms / r.standard_ms for r in rs], mode="markers+lines",
            name=f"K={k}: measured time" + (f" ({size} map)" if len(sizes) > 1 else "") + f", {esc(run)}",
            legendgroup=f"k{k}", line=dict(color=color, width=1, dash=DASHES[sizes.index(size) % len(DASHES)]),
            marker=dict(color=color, size=10, symbol=SYMBOLS[(runs.index(run) + 1) % len(SYMBOLS)]),
            hovertext=[_hover([esc(run), f"M={r.cin}, N={r.cout}, K={k}, {_size(r.size)} map",
                               f"standard {r.standard_ms:.3f} ms, separable {r.separable_ms:.3f} ms",
                               f"measured speed-up {r.measured_speedup:.2f}x"
                               + (f" (MAC count predicts {1 / r.macs_ratio:.2f}x)" if r.macs_ratio else "")])
                       for r in rs]))
    fig.update_xaxes(type="log", title_text="output channels N (= input channels M in the grid; log scale)",
                     tickvals=sorted({c.out_channels for c in grid} | {r.cout for r in measured}))
    _log_axis(fig, [float(c.formula_ratio) for c in grid] + [float(c.macs_ratio) for c in grid]
              + [r.separable_ms / r.standard_ms for r in measured], "separable / standard (ratio, log scale)")
    if measured:
        fig.add_hline(y=1, line=dict(color="#888", dash="dash", width=1))
        # annotation positions on a log axis are given in log10 units: log10(1) = 0
        fig.add_annotation(y=0, yref="y", x=1, xref="paper", xanchor="right", yanchor="bottom", showarrow=False,
                           text="break-even: same time as the standard conv", font=dict(size=11, color="#666"))
    sub = ("lower = cheaper; lines: the paper's 1/N + 1/K<sup>2</sup>; circles: exact MAC counts; "
           + ("dotted: measured time ratio (separable ms / standard ms)" if measured
              else "time not measured (run mbcost bench --save results.jsonl and pass --from results.jsonl)"))
    return _layout(fig, "Depthwise + pointwise vs standard KxK convolution", sub, height=520)


def scaling_figure(scaling: Sequence[ModelCost]) -> go.Figure:
    """MACs and parameters across width multipliers and resolutions (the papers' trade-off tables)."""
    names = list(dict.fromkeys(m.name for m in scaling))
    if not names:
        fig = go.Figure()
        _not_measured(fig, "no width-multiplier model (v1, v1-conv, v2) in this report")
        return _layout(fig, "Width multiplier and resolution trade-off", height=300)
    fig = make_subplots(rows=1, cols=len(names) + 1, horizontal_spacing=0.09,
                        subplot_titles=[f"{esc(n)}: MACs" for n in names] + ["parameters (any resolution)"])
    resolutions = sorted({m.input for m in scaling}, reverse=True)
    for col, name in enumerate(names, 1):
        for n, res in enumerate(resolutions):
            ms = sorted((m for m in scaling if m.name == name and m.input == res), key=lambda m: m.width or 1.0)
            fig.add_trace(go.Scatter(
                x=[m.width for m in ms], y=[m.macs for m in ms], mode="lines+markers",
                name=f"MACs at {_size(res)}", legendgroup=f"r{res}", showlegend=col == 1,
                line=dict(color=PALETTE[n % len(PALETTE)]),
                hovertext=[f"{esc(m.label)} at {_size(res)}: {fmt.count(m.macs)} MACs ({fmt.exact(m.macs)})"
                           for m in ms]), row=1, col=col)
        _log_axis(fig, [m.macs for m in scaling if m.name == name],
                  "MACs (multiply-accumulates, log scale)" if col == 1 else "", row=1, col=col)
    for n, name in enumerate(names):
        first_res = max(m.input for m in scaling if m.name == name)
        ms = sorted((m for m in scaling if m.name == name and m.input == first_res), key=lambda m: m.width or 1.0)
        fig.add_trace(go.Scatter(
            x=[m.width for m in ms], y=[m.params for m in ms], mode="lines+markers", name=f"{esc(name)} parameters",
            line=dict(color="#222", dash=("solid", "dash", "dot", "dashdot")[n % 4]),
            marker=dict(symbol=SYMBOLS[n % len(SYMBOLS)], color="#222"),
            hovertext=[f"{esc(m.label)}: {fmt.count(m.params)} parameters ({fmt.exact(m.params)})" for m in ms]),
            row=1, col=len(names) + 1)
    _log_axis(fig, [m.params for m in scaling], "parameters (count, log scale)", row=1, col=len(names) + 1)
    widths = sorted({m.width for m in scaling if m.width is not None})
    fig.update_xaxes(type="log", title_text="width multiplier (log)", tickvals=widths,
                     ticktext=[f"{w:g}" for w in widths], tickangle=0)
    return _layout(fig, "Width multiplier and resolution trade-off",
                   "MACs grow with width<sup>2</sup> x resolution<sup>2</sup>, parameters roughly with "
                   "width<sup>2</sup> and not with resolution (as in the MobileNet V1 paper, Tables 6-7); "
                   "log-log axes: slope 2 = quadratic")


# ---------------------------------------------------------------------------------------------
# Measured figures


def latency_figure(records: Iterable[Record], input: tuple[int, int] | None = None) -> go.Figure:
    """MACs against measured latency, one series per run (machine / device / dtype)."""
    fig = go.Figure()
    rs = [r for r in records if isinstance(r, ModelRecord)]
    runs = list(dict.fromkeys(r.label for r in rs))
    for n, run in enumerate(runs):
        mine = sorted((r for r in rs if r.label == run), key=lambda r: r.macs)
        text = [esc(r.model) + ("" if not input or r.input == tuple(input) else f" ({_size(r.input)})") for r in mine]
        fig.add_trace(go.Scatter(
            x=[r.macs for r in mine], y=[r.median_ms for r in mine], mode="markers+text", name=esc(run),
            text=text, textposition="top center", cliponaxis=False,
            marker=dict(size=11, color=PALETTE[n % len(PALETTE)], symbol=SYMBOLS[n % len(SYMBOLS)]),
            error_y=dict(type="data", array=[r.iqr_ms for r in mine], visible=True, thickness=1),
            hovertext=[_hover([f"{esc(r.model)}, input {_size(r.input)}, batch {r.batch}",
                               esc(run), f"median {r.median_ms:.3f} ms, IQR {r.iqr_ms:.3f} ms, {r.runs} runs"
                               + (" (wide spread)" if r.wide_spread else ""),
                               f"{fmt.count(r.macs)} MACs"
                               + (f", {r.achieved_gflops:.1f} GFLOP/s achieved" if r.achieved_gflops else "")
                               + (f", {r.throughput_ips:.1f} images/s" if r.throughput_ips else "")])
                       for r in mine]))
    _log_axis(fig, [r.macs for r in rs] or [1e8, 2e10], "MACs per forward pass (multiply-accumulates, log scale)",
              axis="x", above=0.2, below=0.2)
    _log_axis(fig, [r.median_ms for r in rs] or [0.1, 1000],
              "latency (ms per forward pass, median, log scale)", above=0.25, below=0.2)
    if not rs:
        _not_measured(fig)
    return _layout(fig, "MACs vs measured latency, per model and device",
                   "one series per run (machine, device, dtype); error bars: interquartile range; "
                   "is the model with fewer MACs faster?")


def predicted_figure(pred: Predictions) -> go.Figure:
    """Predicted (``mbcost.predict``, interval as error bars) against measured latency, one point per model, with
    the y = x line and the +/-10 % band."""
    pts = pred.points
    fig = go.Figure()
    values = [v for p in pts for v in (p.measured_ms, *p.interval_ms)]
    lo, hi = min(values) / 1.3, max(values) * 1.3
    for scale, name, dash in ((1.0, "predicted = measured", "solid"), (1.1, "+10 %", "dot"), (0.9, "-10 %", "dot")):
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * scale, hi * scale], mode="lines", name=name,
                                 line=dict(color="#8c8c8c", width=1, dash=dash), hoverinfo="skip",
                                 showlegend=scale != 0.9))
    fig.add_trace(go.Scatter(
        x=[p.measured_ms for p in pts], y=[p.predicted_ms for p in pts], mode="markers+text", name="models",
        text=[esc(p.model) for p in pts], textposition="top center", cliponaxis=False,
        marker=dict(size=11, color=PALETTE[0]),
        error_y=dict(type="data", symmetric=False, array=[p.interval_ms[1] - p.predicted_ms for p in pts],
                     arrayminus=[p.predicted_ms - p.interval_ms[0] for p in pts], visible=True, thickness=1),
        hovertext=[_hover([esc(p.model), f"predicted {p.predicted_ms:.3f} ms ({p.interval_ms[0]:.3f}-"
                           f"{p.interval_ms[1]:.3f}), measured {p.measured_ms:.3f} ms", f"error {p.error:+.1%}"])
                   for p in pts]))
    fig.update_xaxes(type="log", range=[math.log10(lo), math.log10(hi)],
                     title="measured latency (ms per forward pass, fastest timed run, log scale)")
    fig.update_yaxes(type="log", range=[math.log10(lo), math.log10(hi)],
                     title="predicted latency (ms, mbcost.predict, log scale)")
    forced = f"; FORCED: profile made for another setup ({'; '.join(pred.mismatch)})" if pred.forced else ""
    return _layout(fig, "Predicted vs measured latency", esc(f"run {pred.run}; error bars: the prediction's "
                                                             f"interval; dotted: +/-10 %{forced}"))


def time_share_figure(records: Iterable[Record]) -> go.Figure:
    """Per run and model: share of MACs vs share of measured time, by layer category."""
    groups = category_times(records)
    if not groups:
        fig = go.Figure()
        fig.update_xaxes(title_text="model / run", showticklabels=False)
        fig.update_yaxes(title_text="share of the model's total (%)", range=[0, 100], ticksuffix="%")
        return _layout(_not_measured(fig, NOT_PROFILED), "Share of MACs vs share of measured time, by layer category",
                       height=360)
    xs = [f"{esc(g.model)}<br>{esc(g.run)}" for g in groups]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=("Share of MACs (counted)", "Share of measured time (sum of layer medians)"))
    for col, attr, total in ((1, "macs", "total_macs"), (2, "time_ms", "total_ms")):
        for cat in CATEGORIES:
            shares = [100 * getattr(g, attr)[cat] / getattr(g, total) if getattr(g, total) else 0.0 for g in groups]
            fig.add_trace(go.Bar(
                x=xs, y=shares, name=CATEGORY_NAMES[cat], legendgroup=cat, showlegend=col == 1,
                marker_color=CATEGORY_COLORS[cat], text=[f"{s:.0f}%" if s >= 5 else "" for s in shares],
                textposition="inside",
                hovertext=[f"{x}<br>{CATEGORY_NAMES[cat]}: {s:.1f}%" for x, s in zip(xs, shares, strict=True)]),
                row=1, col=col)
    fig.update_layout(barmode="stack")
    fig.update_yaxes(range=[0, 100], ticksuffix="%")
    fig.update_yaxes(title_text="share of the model's total (%)", row=1, col=1)
    fig.update_xaxes(title_text="model / run")
    return _layout(fig, "Share of MACs vs share of measured time, by layer category",
                   "from per-layer timings (mbcost bench layer records); a category whose time share exceeds its "
                   "MAC share runs below the device's arithmetic rate", height=520)


def roofline_figure(records: Iterable[Record]) -> go.Figure:
    """Each measured layer on its run's roofline: achieved GFLOP/s against arithmetic intensity."""
    records = list(records)
    layers = [r for r in records if isinstance(r, LayerRecord) and r.achieved_gflops > 0
              and r.arithmetic_intensity > 0]
    peaks = {r.label: r for r in records if isinstance(r, PeakRecord)}
    runs = list(dict.fromkeys([r.label for r in layers] + list(peaks)))
    if not runs:
        fig = go.Figure()
        _log_axis(fig, [0.1, 1000], "arithmetic intensity (FLOP per byte moved, log scale)", axis="x", above=0,
                  below=0)
        _log_axis(fig, [1, 10_000], "achieved GFLOP/s (log scale)", above=0, below=0)
        return _layout(_not_measured(fig, NOT_PROFILED), "Roofline: each layer against the device's measured limits",
                       height=360)
    fig = make_subplots(rows=len(runs), cols=1, vertical_spacing=0.12 / max(1, len(runs) - 1) if len(runs) > 1 else 0,
                        subplot_titles=[esc(r) for r in runs])
    models = list(dict.fromkeys(r.model for r in layers))
    shown: set[str] = set()
    for row, run in enumerate(runs, 1):
        mine = [r for r in layers if r.label == run]
        intensities = [r.arithmetic_intensity for r in mine] or [1.0]
        lo, hi = min(intensities) / 2, max(intensities) * 2
        peak = peaks.get(run)
        if peak:
            ridge = peak.peak_gflops / peak.peak_gbps
            lo, hi = min(lo, ridge / 20), max(hi, ridge * 20)
            xs = [lo, ridge, hi]
            fig.add_trace(go.Scatter(
                x=xs, y=[min(peak.peak_gflops, x * peak.peak_gbps) for x in xs], mode="lines",
                name="roofline: min(peak GFLOP/s, intensity x peak GB/s)", legendgroup="roof",
                showlegend="roof" not in shown, line=dict(color="#222", width=2),
                hovertext=[f"{esc(run)}: peak {peak.peak_gflops:.1f} GFLOP/s, {peak.peak_gbps:.1f} GB/s, "
                           f"ridge at {ridge:.1f} FLOP/byte"] * 3),
                row=row, col=1)
            shown.add("roof")
        else:
            fig.add_annotation(text="no peak measured for this run (kind 'peak' record missing)", xref="x domain",
                               yref="y domain", x=0.02, y=0.95, showarrow=False, row=row, col=1)
        for cat in CATEGORIES:
            for m, model in enumerate(models):
                pts = [r for r in mine if r.category == cat and r.model == model]
                if not pts:
                    continue
                fig.add_trace(go.Scatter(
                    x=[r.arithmetic_intensity for r in pts], y=[r.achieved_gflops for r in pts],
                    mode="markers", name=f"{CATEGORY_NAMES[cat]}" + (f" ({esc(model)})" if len(models) > 1 else ""),
                    legendgroup=f"{cat}/{model}", showlegend=f"{cat}/{model}" not in shown,
                    marker=dict(color=CATEGORY_COLORS[cat], size=8, symbol=SYMBOLS[m % len(SYMBOLS)], opacity=0.8),
                    hovertext=[_hover([f"{esc(model)} {esc(r.layer)} ({CATEGORY_NAMES[cat]})", esc(run),
                                       f"{r.median_ms:.3f} ms, {r.achieved_gflops:.2f} GFLOP/s achieved",
                                       f"intensity {r.arithmetic_intensity:.2f} FLOP/byte"
                                       + (f", {100 * r.bound_fraction:.0f}% of its roofline bound"
                                          if r.bound_fraction is not None else "")]) for r in pts]), row=row, col=1)
                shown.add(f"{cat}/{model}")
        _log_axis(fig, [lo, hi], "arithmetic intensity (FLOP per byte moved: input + weights + output; log scale)",
                  axis="x", row=row, col=1, above=0, below=0)
        _log_axis(fig, [r.achieved_gflops for r in mine] + ([peak.peak_gflops] if peak else []),
                  "achieved GFLOP/s (log scale)", row=row, col=1, above=0.3, below=0.3)
    return _layout(fig, "Roofline: each measured layer against its device's measured limits",
                   "line: min(peak GFLOP/s, intensity x peak GB/s), both measured on the run's device; "
                   "points: layers (colour: category, symbol: model)", height=140 + 420 * len(runs))


def _row_name(row: RuntimeRow, many: bool) -> str:
    """A runtime row as a legend names it: ``onnxruntime``, ``openvino int8`` (and its setting when several)."""
    name = runtime_label(row.runtime, row.precision)
    if many:
        s = row.setting
        name += f" ({s.device_name}, {s.threads} thr, batch {s.batch})"
    return esc(name)


def runtime_figure(rows: Sequence[RuntimeRow]) -> go.Figure:
    """The runtimes side by side: each model's median on each runtime (bars, log scale; the speed-up against
    eager PyTorch on each bar), and the measured speed-ups between the models on each runtime next to their
    MAC ratio (black marks). A runtime whose output check failed is marked ``!!``."""
    from mbcost.bench.matrix import RuntimeRow

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, column_widths=[0.55, 0.45],
                        subplot_titles=("Median latency per model and runtime",
                                        "Measured speed-up between models, against the MAC ratio"))
    if not rows:
        _not_measured(fig, "no model measured on a runtime other than eager: run  mbcost bench --runtime "
                           "eager,onnxruntime,openvino --save results.jsonl  and pass  --from results.jsonl")
        return _layout(fig, "Runtimes side by side")
    many = len({row.setting for row in rows}) > 1
    models, pairs = RuntimeRow.columns(rows)
    macs: dict[tuple[str, str], float] = {}
    for n, row in enumerate(rows):
        name, color = _row_name(row, many), PALETTE[n % len(PALETTE)]
        here = [m for m in models if m in row.records]
        recs = [row.records[m] for m in here]
        vs = [row.vs_eager(m) for m in here]
        wrong = [r.output_check is not None and not r.output_check.passed for r in recs]
        fig.add_trace(go.Bar(
            x=[esc(m) for m in here], y=[r.median_ms for r in recs], name=name, legendgroup=name,
            marker_color=color, text=[("!! " if w else "") + ("eager" if row.is_baseline else fmt.speed(v))
                                      for v, w in zip(vs, wrong, strict=True)],
            textposition="outside", cliponaxis=False,
            error_y=dict(type="data", array=[r.iqr_ms for r in recs], visible=True, thickness=1),
            hovertext=[_hover([f"{esc(r.model)} on {name}: median {r.median_ms:.3f} ms (IQR {r.iqr_ms:.3f} ms)",
                               "the baseline (eager PyTorch)" if row.is_baseline else
                               f"{fmt.speed(v)} as fast as eager PyTorch" if v is not None else "no eager baseline",
                               "OUTPUT CHECK FAILED: its answer differs from eager float32" if w else
                               "output checked against eager float32"])
                       for r, v, w in zip(recs, vs, wrong, strict=True)]), row=1, col=1)
        by_pair = {p: sp for p in pairs if (sp := row.speedup(p)) is not None}
        shown = list(by_pair)
        macs.update({p: sp.macs_ratio for p, sp in by_pair.items()})
        fig.add_trace(go.Bar(
            x=[f"{esc(a)} vs {esc(b)}" for a, b in shown], y=[by_pair[p].measured for p in shown], name=name,
            legendgroup=name, showlegend=False, marker_color=color,
            text=[fmt.speed(by_pair[p].measured) for p in shown], textposition="outside", cliponaxis=False,
            hovertext=[f"{name}: {esc(a)} ran {by_pair[(a, b)].measured:.2f}x as fast as {esc(b)}; the MAC ratio "
                       f"predicts {by_pair[(a, b)].macs_ratio:.2f}x ({by_pair[(a, b)].realised:.0%} realised)"
                       for a, b in shown]), row=1, col=2)
    if macs:
        fig.add_trace(go.Scatter(
            x=[f"{esc(a)} vs {esc(b)}" for a, b in macs], y=list(macs.values()), mode="markers",
            name="MAC ratio (what the counts predict)",
            marker=dict(symbol="line-ew-open", size=40, color="#111", line=dict(width=3, color="#111")),
            hovertext=[f"{esc(a)} vs {esc(b)}: {v:.2f}x fewer MACs" for (a, b), v in macs.items()]), row=1, col=2)
    fig.update_layout(barmode="group")
    _log_axis(fig, [r.median_ms for row in rows for r in row.records.values()],
              "latency (ms per forward pass, median, log scale)", row=1, col=1, from_decade=True, above=0.3)
    _log_axis(fig, [s.measured for row in rows for s in row.speedups] + list(macs.values()),
              "speed-up (times faster, log scale)", row=1, col=2, from_decade=True, above=0.3)
    fig.update_xaxes(title_text="model", row=1, col=1)
    fig.update_xaxes(title_text="model pair (the one with fewer MACs first)", row=1, col=2)
    first = rows[0].setting
    return _layout(fig, "Runtimes side by side",
                   f"{esc(first.device_name)}, {first.threads} thread{'s' if first.threads != 1 else ''}, batch "
                   f"{first.batch}; on each bar: the speed-up against eager PyTorch ({esc(first.dtype)}); black marks: "
                   "the MAC ratio, the speed-up the counts predict", height=520)


# ---------------------------------------------------------------------------------------------
# Claims: the linear-bottleneck experiment and the accuracy-vs-cost frontier


def spirals_figure(result: LinearBottleneck) -> go.Figure:
    """The MobileNetV2 paper's Figure 1, reproduced: the input spiral and the spiral recovered with
    ``pinv(T)`` after ReLU in ``n`` dimensions, for each ``n`` of the experiment's figure."""
    dims = sorted(result.recovered)
    titles = ["input spiral"] + [f"n = {n}" for n in dims]
    fig = make_subplots(rows=1, cols=len(titles), horizontal_spacing=0.03, subplot_titles=titles)
    xs, ys = result.spiral
    colors = list(range(len(xs)))
    panels = [(xs, ys, None)] + [(*result.recovered[n], n) for n in dims]
    for col, (px, py, n) in enumerate(panels, 1):
        point = result.at(n) if n is not None else None
        fig.add_trace(go.Scatter(
            x=list(px), y=list(py), mode="markers", showlegend=False, name=titles[col - 1],
            marker=dict(size=4, color=colors, colorscale="Viridis"),
            hovertext=[titles[col - 1] + (f": relative error {point.relu_pinv:.2f} (median of {result.draws} T)"
                                          if point else "")] * len(px),
            hovertemplate="%{hovertext}<br>(%{x:.3f}, %{y:.3f})<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="x<sub>1</sub>", showticklabels=False, row=1, col=col)
        fig.update_yaxes(title_text="x<sub>2</sub>" if col == 1 else "", showticklabels=False, row=1, col=col,
                         scaleanchor=f"x{col if col > 1 else ''}", scaleratio=1)
    return _layout(fig, "Linear bottleneck: a spiral through ReLU in n dimensions and back",
                   f"X -> pinv(T) ReLU(T X), T a random n x 2 matrix (seed {result.seed}); colour follows the "
                   "spiral; low n collapses points together (Sandler et al. 2018, Figure 1)", height=340)


def bottleneck_error_figure(result: LinearBottleneck) -> go.Figure:
    """Relative reconstruction error against the embedding dimension ``n``: ReLU (mapped back with
    ``pinv(T)``, and with the best linear read-out) and the identity."""
    fig = go.Figure()
    ns = [p.n for p in result.points]
    series = (("ReLU, mapped back with pinv(T)", "relu_pinv", "#c44e52", "solid"),
              ("ReLU, best linear read-out (least squares)", "relu_readout", "#dd8452", "dash"),
              ("identity (no ReLU), pinv(T)", "identity", "#4c72b0", "dot"))
    floor = 1e-17
    for name, attr, color, dash in series:
        values = [getattr(p, attr) for p in result.points]
        fig.add_trace(go.Scatter(
            x=ns, y=[max(v, floor) for v in values], mode="lines+markers", name=name,
            line=dict(color=color, dash=dash), marker=dict(color=color, size=7),
            hovertext=[f"n = {p.n}: {name}, relative error {v:.3g}; {p.collapsed_fraction:.0%} of the points "
                       "collapse to 0 after ReLU" for p, v in zip(result.points, values, strict=True)]))
    fig.update_xaxes(type="log", title_text="embedding dimension n (log scale)", tickvals=ns)
    fig.update_yaxes(type="log", title_text="relative error ||X_hat - X|| / ||X|| (log scale)")
    _layout(fig, "Reconstruction error against the embedding dimension",
            f"median over {result.draws} random matrices T per n (seed {result.seed}); the identity's error is "
            "rounding only", height=440)
    fig.update_yaxes(exponentformat="power")  # 10^-15, not the SI prefixes _layout sets
    return fig


def frontier_figure(points: Sequence[FrontierPoint], records: Iterable[Record] = ()) -> go.Figure:
    """Quoted ImageNet top-1 against counted MACs (log x), one series per family, each point cited on
    hover; with measured runs, a second panel against measured latency."""
    models = [r for r in records if isinstance(r, ModelRecord)]
    measured = [(p, r) for p in points for r in models
                if r.model == p.spec and r.input == (p.resolution, p.resolution)]
    panels = 2 if models else 1
    fig = make_subplots(rows=1, cols=panels, horizontal_spacing=0.1, shared_yaxes=True,
                        subplot_titles=["top-1 against counted MACs"]
                        + (["top-1 against measured latency"] if panels == 2 else []))
    families = list(dict.fromkeys(p.family for p in points))
    for n, family in enumerate(families):
        mine = sorted((p for p in points if p.family == family), key=lambda p: p.macs)
        color = PALETTE[n % len(PALETTE)]
        fig.add_trace(go.Scatter(
            x=[p.macs for p in mine], y=[p.top1 for p in mine], mode="markers", name=esc(family),
            legendgroup=family, marker=dict(size=10, color=color, symbol=SYMBOLS[n % len(SYMBOLS)]),
            hovertext=[_hover([f"{esc(p.label)}: top-1 {p.top1:.1f}% (quoted)",
                               f"{fmt.count(p.macs)} MACs " + ("counted" if p.counted else "quoted")
                               + (f" (paper: {p.quoted_macs_millions:g} M)" if p.quoted_macs_millions else ""),
                               f"source: {esc(p.source)}"]) for p in mine]), row=1, col=1)
    _log_axis(fig, [p.macs for p in points], "MACs per image (counted, log scale)", axis="x", row=1, col=1,
              above=0.1, below=0.1)
    fig.update_yaxes(title_text="ImageNet top-1 (%, quoted from the papers)", row=1, col=1)
    if panels == 2:
        runs = list(dict.fromkeys(r.label for _, r in measured))
        for n, run in enumerate(runs):
            mine = sorted(((p, r) for p, r in measured if r.label == run), key=lambda pr: pr[1].median_ms)
            fig.add_trace(go.Scatter(
                x=[r.median_ms for _, r in mine], y=[p.top1 for p, _ in mine], mode="markers+text",
                name=f"measured: {esc(run)}", text=[esc(p.label) for p, _ in mine], textposition="top center",
                marker=dict(size=10, color=PALETTE[(n + len(families)) % len(PALETTE)], symbol="diamond"),
                hovertext=[_hover([f"{esc(p.label)}: top-1 {p.top1:.1f}% (quoted, {esc(p.source)})",
                                   f"{esc(run)}: median {r.median_ms:.3f} ms, batch {r.batch}"])
                           for p, r in mine]), row=1, col=2)
        _log_axis(fig, [r.median_ms for _, r in measured] or [1, 100],
                  "latency (ms per forward pass, median, log scale)", axis="x", row=1, col=2, above=0.2, below=0.2)
        if not measured:
            fig.add_annotation(text="no measured model matches a quoted point<br>(v1, v2, vgg16 at their "
                                    "published resolutions)", xref="x2 domain", yref="y2 domain", x=0.5, y=0.5,
                               showarrow=False, font=dict(color="#a33"))
    return _layout(fig, "Accuracy against cost",
                   "top-1 accuracies are quoted (hover for the source), never measured; MACs counted by mbcost "
                   "at each model's width and resolution", height=500)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFigure:
    """One figure of the report, declared once: its id, how it is drawn from the ``ReportData`` (a list: one figure
    per model, ids ``KEY-0``, ``KEY-1``...; ``None``: not drawn for this data), its heading and paragraph on the
    page, and the claim whose evidence shows it instead of a section of its own (``claim``)."""

    key: str
    draw: Callable[[ReportData], go.Figure | list[go.Figure] | None]
    heading: str = ""
    text: str = ""
    claim: str | None = None


def _bottleneck(data: ReportData) -> LinearBottleneck | None:
    return data.claims.get("bottleneck").evidence if data.claims is not None else None


#: Every figure of the report, in page order (static text, ours).
FIGURES: tuple[ReportFigure, ...] = (
    ReportFigure("params_macs", lambda d: params_macs_figure(d.models, d.references), "Parameters and MACs",
                 "Counted by mbcost's analytic engine (bars, exact values on hover) next to the figures the papers "
                 "report (black marks, quoted). Both axes are logarithmic, so equal steps are equal factors."),
    ReportFigure("categories", lambda d: category_figure(d.models), "Cost by layer category",
                 "Which kind of layer carries the multiply-accumulates and the weights. The MobileNet V1 paper "
                 "(Table 2) reports that 1x1 pointwise convolutions hold about 95% of its Mult-Adds and 75% of its "
                 "parameters, and depthwise convolutions about 3% of the Mult-Adds; the fully connected layer holds "
                 "most of the rest of the parameters."),
    ReportFigure("layers", lambda d: [layers_figure(m) for m in d.models], "Per-layer MACs and parameters",
                 "Every convolution and linear layer in forward order, coloured by category. Hover a bar for the "
                 "layer's name, shapes and share of the model."),
    ReportFigure("conv_ratio", lambda d: conv_ratio_figure(d.conv_grid, d.records),
                 "Standard vs depthwise + pointwise convolution",
                 "For a KxK convolution from M to N channels, the depthwise KxK + pointwise 1x1 replacement costs "
                 "1/N + 1/K^2 of the standard one (MobileNet paper, section 3.1). Lines: the formula; open circles: "
                 "the exact MAC counts of both layer stacks (M = N, 14x14 map, no bias, where the two agree "
                 "exactly); dotted markers: measured time ratios when a conv sweep was measured. Fewer MACs need "
                 "not mean proportionally less time: depthwise convolutions do little arithmetic per byte moved."),
    ReportFigure("scaling", lambda d: scaling_figure(d.scaling) if d.scaling else None,
                 "Width multiplier and resolution", "The width multiplier alpha thins every layer (MACs and "
                 "parameters shrink roughly with alpha^2); the resolution multiplier shrinks the feature maps "
                 "(MACs shrink with resolution^2, parameters do not change)."),
    ReportFigure("latency", lambda d: latency_figure(d.records, d.input), "MACs vs measured latency",
                 "Each point is one model measured on one machine and device; runs from several machines merge "
                 "here, labelled by their environment."),
    ReportFigure("predicted", lambda d: predicted_figure(d.predicted) if d.predicted else None,
                 "Predicted vs measured latency",
                 "Each model's latency predicted from its analysis and this device's profile (mbcost calibrate), "
                 "without running it, against the fastest of its timed runs; error bars: the prediction's interval. "
                 "Points on the solid line are exact; between the dotted lines, within 10 %."),
    ReportFigure("runtimes", lambda d: runtime_figure(d.runtime_rows) if d.runtime_rows else None,
                 "Runtimes side by side",
                 "The same models run by the runtimes they are deployed on (ONNX Runtime, OpenVINO, ExecuTorch with "
                 "XNNPACK, torch.compile), in float32 and int8, next to eager PyTorch: each one's median, its "
                 "speed-up against eager, and how much of the MAC ratio between two models survives as time on "
                 "each runtime. Every runtime's output was checked against eager float32 (a failed check is marked "
                 "!!); int8 models were calibrated on random inputs unless the run says otherwise, so their latency "
                 "is representative and their accuracy is not."),
    ReportFigure("time_share", lambda d: time_share_figure(d.records), "Where the time goes",
                 "Per-layer timings summed by category, beside the share of MACs (from the layer records of "
                 "mbcost bench)."),
    ReportFigure("roofline", lambda d: roofline_figure(d.records), "Roofline",
                 "Each measured layer at its arithmetic intensity (FLOPs and elementwise ops per byte of input, "
                 "weights and output) against the achieved GFLOP/s; the line is the run's measured peak compute "
                 "and memory bandwidth. Layers under the sloped part are memory-bound. The byte count assumes every "
                 "tensor comes from memory, so a small layer whose data stayed in cache can sit above the sloped "
                 "roof."),
    ReportFigure("spirals", lambda d: spirals_figure(b) if (b := _bottleneck(d)) else None, claim="bottleneck"),
    ReportFigure("bottleneck_error", lambda d: bottleneck_error_figure(b) if (b := _bottleneck(d)) else None,
                 claim="bottleneck"),
    ReportFigure("frontier", lambda d: frontier_figure(d.claims.frontier, d.records) if d.claims else None,
                 claim="versus_vgg"),
)
FIGURE_BY_KEY: dict[str, ReportFigure] = {f.key: f for f in FIGURES}


def report_figures(data: ReportData) -> dict[str, go.Figure]:
    """Every figure of a report (``FIGURES``), keyed by a short id, in page order."""
    figs: dict[str, go.Figure] = {}
    for spec in FIGURES:
        drawn = spec.draw(data)
        if isinstance(drawn, list):
            figs.update({f"{spec.key}-{n}": fig for n, fig in enumerate(drawn)})
        elif drawn is not None:
            figs[spec.key] = drawn
    return figs
