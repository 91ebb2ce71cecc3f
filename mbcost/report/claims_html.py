"""The report's "Claims checked" section: one row per claim (quoted, with its source), the numbers
mbcost computed for it when the report was made, the verdict; then the evidence of each claim in
detail (per-layer ratios, V2's table side by side, the block comparison, the experiment's figures,
the frontier). Reads ``mbcost.claims.check.ClaimsData``; computes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mbcost import units as fmt
from mbcost.bench.runtimes import runtime_label
from mbcost.claims.check import FAILS, HOLDS, QUALIFIED, Claim, ClaimsData
from mbcost.report.markup import e, table_html

__all__ = ["CLAIMS_CSS", "claims_html"]

VERDICT_CLASS = {HOLDS: "v-holds", QUALIFIED: "v-qual", FAILS: "v-fails"}

CLAIMS_CSS = """
table#claims td.verdict{font-weight:600;white-space:nowrap}
.v-holds{color:#1b6e2a}.v-qual{color:#8a5a00}.v-fails{color:#a33}.v-none{color:#666}
q.claim{font-style:italic}tr.mismatch td{background:#fde8e8}
details.evidence{margin:6px 0 10px}details.evidence summary{cursor:pointer;font-weight:600}
"""


def _table(head: list[str], rows: list[list[str]], *, attrs: str = "", row_classes: list[str] | None = None) -> str:
    """Numbers right-aligned: every cell but the first."""
    def tr(cells: list[str], css: str) -> str:
        tds = "".join(f"<td class='n'>{c}</td>" if n else f"<td>{c}</td>" for n, c in enumerate(cells))
        return "<tr" + (f" class={css!r}" if css else "") + f">{tds}</tr>"

    return table_html(attrs, head, map(tr, rows, row_classes or [""] * len(rows)))


def _ratio(x: Any) -> str:
    return f"{float(x):.5f}"


def _formula(c: Claim) -> str:
    head = ["layer", "M", "N", "K", "output", "separable MACs", "standard MACs (v1-conv)", "exact ratio",
            "1/N + 1/K<sup>2</sup>", "deviation"]
    rows = [[e(la.name), str(la.in_channels), str(la.out_channels), str(la.kernel),
             f"{la.output_size[0]}x{la.output_size[1]}", fmt.exact(la.separable_macs), fmt.exact(la.standard_macs),
             _ratio(la.ratio), _ratio(la.formula), e(str(la.deviation))] for la in c.evidence]
    return _table(head, rows, attrs="class='claim-detail' data-claim='formula'")


def _savings(c: Claim) -> str:
    s = c.evidence
    out = []
    for name, layers, std in (("V1", s.v1, "v1-conv's 3x3 conv at the same place"),
                              ("V2", s.v2, "a 3x3 conv from the expanded width to the block's output")):
        rows = [[e(la.name), str(la.in_channels), str(la.out_channels), fmt.exact(la.separable_macs),
                 fmt.exact(la.standard_macs), f"{la.saving:.2f}x"] for la in layers]
        out.append(f"<p class='small'>{name}: each separable pair against {e(std)}.</p>"
                   + _table(["pair", "M", "N", "separable MACs", "standard MACs", "MAC saving"], rows,
                            attrs=f"class='claim-detail' data-claim='savings-{name.lower()}'"))
    if s.measured:
        groups = s.per_runtime
        several = len(groups) > 1 or groups[0].runtime != "eager" or groups[0].precision == "int8"
        if several:
            rows = [[e(runtime_label(g.runtime, g.precision)), str(len(g.points)),
                     e(fmt.speed_change(g.lowest) if g.lowest == g.highest else fmt.speed_range(g.lowest, g.highest)),
                     "none (slower everywhere)" if g.median_realised is None else f"{g.median_realised:.0%}",
                     f"{len(g.slower)} of {len(g.points)}" if g.slower else "none",
                     (f"<b>!! FAILED at {g.wrong}</b>" if g.wrong else "ok")] for g in groups]
            out.append("<p class='small'>The realised saving per runtime: how much of the MAC saving of depthwise + "
                       "pointwise survives as time on each runtime (median share over the points where the separable "
                       "pair was faster; where it was slower, none survives).</p>"
                       + _table(["runtime", "points", "separable pair, measured", "realised (median)",
                                 "points where slower", "output check"], rows,
                                attrs="class='claim-detail' data-claim='savings-runtimes'"))
        rows = [[e(m.run), *([e(runtime_label(m.runtime, m.precision))] if several else []), str(m.in_channels),
                 str(m.kernel), "x".join(map(str, m.size)), f"{m.mac_speedup:.2f}x",
                 fmt.speed_change(m.measured_speedup) + (" <b>!!</b>" if m.wrong else ""),
                 f"{m.realised:.0%}" if m.measured_speedup >= 1 else "none (slower)", "noisy" if m.noisy else ""]
                for m in s.measured]
        out.append("<p class='small'>Measured conv sweep (standard vs separable, M = N); noisy: a time's "
                   "interquartile range was wide against its median, measure longer with mbcost sweep:</p>"
                   + _table(["run", *(["runtime"] if several else []), "M = N", "K", "map", "MAC speed-up",
                             "separable pair, measured", "realised", ""],
                            rows, attrs="class='claim-detail' data-claim='savings-measured'"))
    else:
        out.append("<p class='small'>Time not measured: make the report without <code>--no-bench</code>, or pass "
                   "<code>mbcost sweep --save sweep.jsonl</code>'s file with <code>--from</code>.</p>")
    out.append(f"<p class='small'>The accuracy given up: Conv MobileNet {s.conv_top1:.1f}% against MobileNet "
               f"{s.separable_top1:.1f}% top-1, quoted ({e(s.top1_source)}).</p>")
    return "".join(out)


def _versus(c: Claim) -> str:
    v = c.evidence
    rows = [["parameters", fmt.exact(v.v1_params), fmt.exact(v.vgg_params), fmt.ratio(v.params_ratio), "1/32"],
            ["MACs", fmt.exact(v.v1_macs), fmt.exact(v.vgg_macs), fmt.ratio(v.macs_ratio), "1/27"],
            ["ImageNet top-1 (quoted)", f"{v.v1_top1:.1f}%", f"{v.vgg_top1:.1f}%",
             f"{-v.top1_difference:+.1f} points", "-0.9 points"]]
    return (_table(["", "v1 (counted)", "vgg16 (counted)", "v1 / vgg16", "paper"], rows,
                   attrs="class='claim-detail' data-claim='versus_vgg'")
            + f"<p class='small'>Accuracies quoted from {e(v.source)}.</p>")


def _v2_table(c: Claim) -> str:
    t = c.evidence

    def cells(row: Any) -> list[str]:
        if row is None:
            return ["(none)"] * 6
        return [e(row.input), e(row.operator), *("-" if v is None else str(v) for v in (row.t, row.c, row.n, row.s))]

    n = max(len(t.built), len(t.published))
    rows = [cells(t.built[i] if i < len(t.built) else None) + cells(t.published[i] if i < len(t.published) else None)
            for i in range(n)]
    head = [f"{side}: {col}" for side in ("built", "published") for col in ("input", "operator", "t", "c", "n", "s")]
    return (_table(head, rows, attrs="id='v2-table' class='claim-detail' data-claim='v2_table'",
                   row_classes=["mismatch" if i in t.mismatches else "" for i in range(n)])
            + f"<p class='small'>Left: read off the modules of the built model (mbcost's zoo) and the engine's "
              f"input shapes. Right: {e(t.source)}, typed in from the paper.</p>")


def _residual(c: Claim) -> str:
    rows = [[e(b.name), e(b.layout), f"{b.channels} x {b.size}x{b.size}", fmt.exact(b.macs), fmt.exact(b.params),
             f"{'x'.join(map(str, b.largest_tensor_shape))} ({fmt.nbytes(b.largest_tensor_bytes)})"]
            for b in c.evidence]
    return _table(["block", "layout (t = 6)", "input = output", "MACs", "params", "largest tensor (float32)"], rows,
                  attrs="class='claim-detail' data-claim='residual'")


def _bottleneck(c: Claim) -> str:
    b = c.evidence
    rows = [[str(p.n), f"{p.relu_pinv:.3f}", f"{p.relu_readout:.4f}", f"{p.identity:.1e}",
             f"{p.collapsed_fraction:.0%}"] for p in b.points if p.n in b.recovered]
    return _table(["n", "ReLU, pinv(T)", "ReLU, best linear read-out", "identity", "points collapsed to 0"], rows,
                  attrs="class='claim-detail' data-claim='bottleneck'")


def _memory(c: Claim) -> str:
    m = c.evidence
    rows = [[e(s.label), f"{s.largest_tensor_bytes / 1000:,.0f} kB ({'x'.join(map(str, s.largest_tensor_shape))})",
             f"{s.streamed_largest_tensor_bytes / 1000:,.0f} kB "
             f"({'x'.join(map(str, s.streamed_largest_tensor_shape))})", f"{q}K"]
            for s, q in ((m.v1, m.quoted_v1_kb), (m.v2, m.quoted_v2_kb))]
    return (_table(["model", "largest tensor, materialized", "largest tensor, streamed blocks", "paper"], rows,
                   attrs="class='claim-detail' data-claim='memory'")
            + "<p class='small'>From <code>mbcost memory v1,v2 --dtype float16</code> (224x224, batch 1; "
              "kB = 1000 bytes).</p>")


def _dead(c: Claim) -> str:
    d = c.evidence
    if not d.checkpoints:
        return ("<p class='small'>To check it, measure trained checkpoints: <code>mbcost weights v1.pt --model v1"
                "</code> and <code>mbcost weights v2.pt --model v2</code>, or add them to the report with "
                "<code>--weights v1=v1.pt --weights v2=v2.pt</code>.</p>")
    rows = [[e(spec), e(h.checkpoint), e(cat), fmt.exact(ch.kernels), fmt.exact(ch.dead_kernels),
             f"{ch.dead_fraction:.2%}", f"{ch.zero_fraction:.2%}"]
            for spec, h in d.checkpoints.items() for cat, ch in h.categories.items() if ch.kernels]
    return _table(["model", "checkpoint", "category", "kernels", "dead kernels", "dead", "zero weights"], rows,
                  attrs="class='claim-detail' data-claim='dead_kernels'")


DETAILS: dict[str, Callable[[Claim], str]] = {
    "formula": _formula, "eight_to_nine": _savings, "versus_vgg": _versus, "v2_table": _v2_table,
    "residual": _residual, "bottleneck": _bottleneck, "memory": _memory, "dead_kernels": _dead,
}


def claims_html(claims: ClaimsData, figures: Mapping[str, Sequence[str]] | None = None) -> str:
    """The section: the summary table, then each claim's evidence (and its figures, already rendered
    as HTML by the page, by claim key: ``mbcost.report.figures.ReportFigure.claim``)."""
    figures = figures or {}
    rows = []
    for n, c in enumerate(claims.claims, 1):
        verdict = f"<td class='verdict {VERDICT_CLASS.get(c.verdict, 'v-none')}'>{e(c.verdict)}</td>"
        rows.append(f"<tr data-claim='{e(c.key)}'><td>{n}</td><td><b>{e(c.title)}</b><br><q class='claim'>"
                    f"{e(c.quote)}</q><br><span class='small'>{e(c.source)}</span></td><td>{e(c.reason)} "
                    f"<a href='#claim-{e(c.key)}' class='small'>details</a></td>{verdict}</tr>")
    out = ["<p>Each claim the MobileNet papers make about cost, quoted with its source, checked with numbers "
           "mbcost computed when this report was made (counts from the analytic engine; measured times when the "
           "report measured or was given runs; quoted accuracies are never measured).</p>",
           table_html("id='claims'", ["#", "claim (quoted) and source", "mbcost's numbers, computed now", "verdict"],
                      rows)]
    for n, c in enumerate(claims.claims, 1):
        body = DETAILS[c.key](c) if c.key in DETAILS else ""
        extra = "".join(figures.get(c.key, ()))
        css = VERDICT_CLASS.get(c.verdict, "v-none")
        out.append(f"<h3 id='claim-{e(c.key)}'>{n}. {e(c.title)}: <span class='{css}'>{e(c.verdict)}</span></h3>"
                   f"{body}{extra}")
    return "\n".join(out)
