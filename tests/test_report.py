"""mbcost report: gathered data, plotly figures, the self-contained page, escaping, merging runs, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import plotly.graph_objects as go
import pytest
from report_samples import CPU, GPU, records_for, typed_records_for, write_jsonl

from mbcost.bench.records import LayerRecord, ModelRecord, parse_record
from mbcost.bench.store import UNREADABLE, load_records
from mbcost.errors import SpecError
from mbcost.report import data as rdata
from mbcost.report.figures import (
    NOT_MEASURED,
    NOT_PROFILED,
    category_figure,
    conv_ratio_figure,
    latency_figure,
    params_macs_figure,
    report_figures,
    roofline_figure,
    time_share_figure,
)
from mbcost.report.html import render_html, write_report

HOSTILE_RUN = '</script><script>window.__pwned=1</script> "quoted" & \'single\''
HOSTILE_MODEL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def plain() -> rdata.ReportData:
    return rdata.gather("v1,v2,vgg16", 224)


@pytest.fixture(scope="module")
def measured_files(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("runs")
    cpu = write_jsonl(d / "cpu.jsonl", records_for(CPU), truncated_tail=True)
    gpu = write_jsonl(d / "gpu.jsonl", records_for(GPU))
    return [cpu, gpu]


@pytest.fixture(scope="module")
def measured(plain, measured_files) -> rdata.ReportData:
    records = load_records(measured_files, placeholders=True)
    kept, runs, skipped = rdata.label_runs(records)
    return rdata.ReportData(input=plain.input, batch=1, models=plain.models, references=plain.references,
                            scaling=plain.scaling, conv_grid=plain.conv_grid, records=tuple(kept), runs=tuple(runs),
                            skipped=tuple(skipped), sources=tuple(str(p) for p in measured_files))


# --------------------------------------------------------------------------------------------- data


def test_gather_holds_the_models_grids_and_quoted_references(plain):
    assert [m.label for m in plain.models] == ["v1", "v2", "vgg16"]
    assert [(m.params, m.macs) for m in plain.models] == [
        (4_231_976, 568_740_352), (3_504_872, 300_774_272), (138_357_544, 15_470_264_320)]
    assert {k: v.top1 for k, v in plain.references.items()} == {"v1": 70.6, "v2": 72.0, "vgg16": 71.5}
    # width x resolution grid for the two width-multiplier models only (vgg16 has none)
    assert {m.name for m in plain.scaling} == {"v1", "v2"}
    (w1, r1), (w2, r2) = rdata.PAPER_GRIDS["v1"], rdata.PAPER_GRIDS["v2"]
    assert len(plain.scaling) == len(w1) * len(r1) + len(w2) * len(r2)  # each paper's own grid
    v1_half_160 = next(m for m in plain.scaling if m.label == "v1@0.5" and m.input == (160, 160))
    assert v1_half_160.macs < next(m for m in plain.scaling if m.label == "v1@0.5" and m.input == (224, 224)).macs
    assert len(plain.conv_grid) == len(rdata.CONV_CHANNELS) * len(rdata.CONV_KERNELS)
    assert plain.records == () and plain.runs == ()


def test_quoted_top1_only_at_the_papers_setting():
    data = rdata.gather("v1@0.5,v2", 160, widths=(1.0,), resolutions=(160,), conv_channels=(8,), conv_kernels=(3,))
    assert data.references == {}  # width 0.5 and 160x160 are not what the papers' top-1 refers to


def test_gather_keeps_a_model_listed_twice_once_as_compare_and_the_gate_do():
    data = rdata.gather("v1@0.25,v2,v1@0.25,v2@1", 32)
    assert [c.label for c in data.models] == ["v1@0.25", "v2"]


def test_unreadable_lines_are_counted_and_the_good_records_around_them_kept(tmp_path):
    good = records_for(CPU, ("v2",))[:3]
    f = write_jsonl(tmp_path / "a.jsonl", good, truncated_tail=True)
    read = load_records(f, placeholders=True)
    assert [r["kind"] for r in read] == [r["kind"] for r in good] + [UNREADABLE]
    glued = tmp_path / "b.jsonl"  # an interrupted append followed by a later run's records
    glued.write_text(json.dumps(good[0]) + '\n{"kind": "model", "med' + json.dumps(good[1]) + "\n[1, 2]\n"
                     + json.dumps(good[2]) + "\n\n")
    read = load_records(glued, placeholders=True)
    assert [r.get("_line") for r in read] == [None, 2, 3, None]
    kept, runs, skipped = rdata.label_runs(read)
    assert kept == [parse_record(good[0]), parse_record(good[2])] and len(runs) == 1
    assert runs[0].sources == (str(glued),)
    assert skipped == ["2 records left out: line that is not a JSON object (a record cut short when a run was "
                       "interrupted?)"]
    with pytest.raises(SpecError, match="no such file"):
        load_records(tmp_path / "missing.jsonl", placeholders=True)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert load_records(tmp_path / "empty.jsonl", placeholders=True) == []


def test_records_that_break_the_contract_are_left_out_with_the_reason():
    model = next(r for r in records_for(CPU, ("v2",)) if r["kind"] == "model")
    no_median = {k: v for k, v in model.items() if k != "median_ms"}
    kept, runs, skipped = rdata.label_runs([model, no_median, no_median, dict(model, median_ms="fast"),
                                            dict(model, input="224"), dict(model, kind="modle")])
    assert kept == [parse_record(model)] and [r.counts for r in runs] == [{"model": 1}]
    assert skipped == ["2 records left out: model record without median_ms",
                       "1 record left out: model record with non-numeric median_ms",
                       "1 record left out: model record with mistyped (tuple[int, ...]) input",
                       "1 record left out: unknown kind 'modle'"]


def test_runs_are_labelled_by_environment_and_merged(measured):
    assert [r.label for r in measured.runs] == ["Intel Xeon Gold 6354 float32", "NVIDIA H200 float16"]
    cpu, gpu = measured.runs
    assert (cpu.device, gpu.device, gpu.env.cuda, cpu.threads) == ("cpu", "cuda", "12.8", CPU["threads"])
    assert cpu.counts == {"peak": 1, "model": 3, "layer": len([r for r in records_for(CPU, ("v1",))
                                                                if r["kind"] == "layer"]), "conv": 3}
    assert cpu.sources[0].endswith("cpu.jsonl") and gpu.sources[0].endswith("gpu.jsonl")
    assert {r.label for r in measured.records} == {cpu.label, gpu.label}


def test_same_label_different_environment_gets_told_apart_and_repeats_keep_the_last():
    a = records_for(CPU, ("v2",))
    other = dict(CPU, threads=8)
    b = records_for(other, ("v2",), label=a[0]["label"])  # same label, 8 threads
    again = [dict(r, median_ms=r["median_ms"] * 2) for r in a if r["kind"] == "model"]  # a re-run, appended
    kept, runs, skipped = rdata.label_runs(a + b + again + [{"kind": "gpu-temp"}, {"kind": "model", "device": "cpu"}])
    labels = [r.label for r in runs]
    assert len(labels) == 2 and len(set(labels)) == 2
    assert all("threads=" in label for label in labels), labels
    models = [r for r in kept if isinstance(r, ModelRecord) and r.label == labels[0]]
    assert len(models) == 1 and models[0].median_ms == again[0]["median_ms"]
    assert {r.label for r in kept} == set(labels)  # every record carries its run's unique label
    assert any("unknown kind 'gpu-temp'" in s for s in skipped)
    assert any("model record without" in s for s in skipped)


def test_a_training_step_and_an_inference_forward_are_two_runs_never_one():
    inference = records_for(CPU, ("v2",))
    step = [dict(r, mode="train", optimizer="sgd", median_ms=r["median_ms"] * 3) for r in inference
            if r["kind"] == "model"]  # `mbcost bench --mode train` on the same machine, same label
    kept, runs, _ = rdata.label_runs(inference + step)
    assert len(runs) == 2 and any("mode=train" in r.label for r in runs)
    models = sorted((r.median_ms, r.mode) for r in kept if isinstance(r, ModelRecord))
    assert models == [(step[0]["median_ms"] / 3, "inference"), (step[0]["median_ms"], "train")]  # both kept


def test_category_times_sum_layer_records_by_category(measured):
    groups = rdata.category_times(measured.records)
    assert [(g.run, g.model) for g in groups] == [(r.label, "v1") for r in measured.runs]
    v1 = measured.models[0]
    assert groups[0].macs["pwconv"] == v1.categories["pwconv"].macs
    assert groups[0].total_macs == v1.macs


# ------------------------------------------------------------------------------------------ figures


def test_report_figures_are_plotly_figures_in_page_order(plain):
    figs = report_figures(plain)
    assert list(figs) == ["params_macs", "categories", "layers-0", "layers-1", "layers-2", "conv_ratio", "scaling",
                          "latency", "time_share", "roofline", "spirals", "bottleneck_error", "frontier"]
    for key, fig in figs.items():
        assert isinstance(fig, go.Figure), key
        assert fig.layout.title.text, key
        if fig.data:
            titles = {k[0]: fig.layout[k].title.text for k in fig.layout if k.startswith(("xaxis", "yaxis"))
                      and fig.layout[k].title.text}
            assert set(titles) == {"x", "y"}, key  # both axes of every figure say what they show


def test_a_figure_is_added_in_one_declaration(plain, monkeypatch):
    """A row of ``FIGURES`` is drawn, headed and explained on the page, or placed in its claim's evidence."""
    from mbcost.report import figures

    extra = (figures.ReportFigure("sizes", lambda d: go.Figure(layout={"title": "sizes"}), "Model sizes",
                                  "One bar per model."),
             figures.ReportFigure("more_vgg", lambda d: go.Figure(layout={"title": "more"}), claim="versus_vgg"))
    monkeypatch.setattr(figures, "FIGURES", (*figures.FIGURES, *extra))
    monkeypatch.setattr(figures, "FIGURE_BY_KEY", {f.key: f for f in figures.FIGURES})
    page = render_html(plain)
    assert "<h2 id='sizes'>Model sizes</h2><p>One bar per model.</p>" in page and "data-figure='sizes'" in page
    vgg = page[page.index("<h3 id='claim-versus_vgg'>"):]
    assert "data-figure='more_vgg'" in vgg[:vgg.index("<h3", 4)] and "<h2 id='more_vgg'>" not in page


def test_params_macs_figure_has_log_axes_with_units_and_quoted_marks(plain):
    fig = params_macs_figure(plain.models, plain.references)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [list(b.y) for b in bars] == [[m.params for m in plain.models], [m.macs for m in plain.models]]
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert fig.layout.yaxis.title.text == "parameters (count, log scale)"
    assert fig.layout.yaxis2.title.text == "MACs (multiply-accumulates, log scale)"
    quoted = [t for t in fig.data if t.type == "scatter"]
    assert quoted and "quoted" in quoted[0].name
    assert list(quoted[1].y) == [569e6, 300e6, 15300e6]  # the papers' Mult-Adds


def test_category_figure_shares_sum_to_100_and_show_the_1x1_share(plain):
    fig = category_figure(plain.models)
    macs = [t for t in fig.data if t.xaxis == "x"]
    assert [t.name for t in macs][:3] == ["standard conv (KxK)", "depthwise conv", "pointwise conv (1x1)"]
    for i in range(3):
        assert sum(t.y[i] for t in macs) == pytest.approx(100)
    v1 = plain.models[0]
    pw = next(t for t in macs if t.name.startswith("pointwise"))
    assert pw.y[0] == pytest.approx(100 * v1.categories["pwconv"].macs / v1.macs)
    assert pw.y[0] > 90  # the V1 paper's Table 2: ~95% of Mult-Adds in 1x1 convolutions
    assert "share of the model's MACs (%)" == fig.layout.yaxis.title.text


def test_conv_ratio_figure_formula_meets_exact_counts_and_measured_points(plain, measured):
    fig = conv_ratio_figure(plain.conv_grid)
    lines = [t for t in fig.data if t.mode == "lines"]
    marks = [t for t in fig.data if t.mode == "markers"]
    assert len(lines) == len(marks) == len(rdata.CONV_KERNELS)
    for line, mark in zip(lines, marks, strict=True):
        assert list(line.y) == pytest.approx(list(mark.y))  # M = N, no bias: the closed form is exact
    assert lines[0].y[-1] == pytest.approx(1 / 1024 + 1 / 9)
    assert "not measured" in fig.layout.title.text
    fig = conv_ratio_figure(plain.conv_grid, measured.records)
    timed = [t for t in fig.data if t.mode == "markers+lines"]
    assert len(timed) == 2  # one per run (K = 3)
    assert "separable / standard" in fig.layout.yaxis.title.text and fig.layout.xaxis.type == "log"


def test_measured_figures_say_not_measured_when_empty():
    for fig, text in ((latency_figure([]), NOT_MEASURED), (roofline_figure([]), NOT_PROFILED),
                      (time_share_figure([]), NOT_PROFILED)):
        assert [a.text for a in fig.layout.annotations] == [text]
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def test_latency_figure_one_series_per_run(measured):
    fig = latency_figure(measured.records, (224, 224))
    assert [t.name for t in fig.data] == [r.label for r in measured.runs]
    assert sorted(fig.data[0].x) == sorted(m.macs for m in measured.models)
    assert fig.layout.yaxis.title.text.startswith("latency (ms per forward pass")
    assert fig.layout.xaxis.title.text == "MACs per forward pass (multiply-accumulates, log scale)"


def test_roofline_places_every_layer_under_its_runs_roof(measured):
    fig = roofline_figure(measured.records)
    roofs = [t for t in fig.data if t.mode == "lines"]
    assert len(roofs) == 2
    layer_points = sum(len(t.x) for t in fig.data if t.mode == "markers")
    usable = [r for r in measured.records if isinstance(r, LayerRecord) and r.achieved_gflops > 0]
    assert layer_points == len(usable)
    assert max(roofs[0].y) == CPU["peak_gflops"]


# ----------------------------------------------------------------------------------------- the page


def test_page_is_self_contained_small_and_has_every_figure(plain, tmp_path):
    out = write_report(plain, tmp_path / "sub" / "r.html")
    html = out.read_text(encoding="utf-8")
    assert out.stat().st_size < 10_000_000
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)\s*=", html, re.I)
    figures = len(report_figures(plain))
    assert html.count("<script") == 1 + figures  # plotly.js once, one small script per figure
    assert html.count("Plotly.newPlot(") == figures
    assert f'data-figures="{figures}"' in html
    assert NOT_MEASURED.split(":")[0] in html
    assert "70.6%" in html and "quoted from the paper, not measured" in html
    assert "Howard et al. 2017" in html and "Sandler et al. 2018" in html
    assert "FLOPs = 2 x MACs" in html


def test_user_text_is_escaped_everywhere(measured, tmp_path):
    hostile = [dict(r, label=HOSTILE_RUN, model=HOSTILE_MODEL if r.get("model") == "v2" else r.get("model"))
               for r in records_for(CPU, ("v1", "v2"))]
    kept, runs, skipped = rdata.label_runs(hostile)
    data = rdata.ReportData(input=measured.input, batch=1, models=measured.models,
                            references=measured.references, scaling=(), conv_grid=measured.conv_grid,
                            records=tuple(kept), runs=tuple(runs), sources=("<b>x</b>.jsonl",))
    html = render_html(data)
    figures = len(report_figures(data))
    assert html.count("<script") == 1 + figures and html.count("</script>") == 1 + figures
    assert "window.__pwned=1</script>" not in html
    assert "<img src=x" not in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;.jsonl" in html
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned=1&lt;/script&gt; &quot;quoted&quot;" in html
    # figure text is escaped by mbcost (plotly renders some HTML in text); plotly's JSON writes < > / as \uXXXX
    assert '"&lt;img src=x onerror=alert(1)&gt;, input 224x224' in html
    assert "&lt;\\u002fscript&gt;&lt;script&gt;window.__pwned=1" in html


def test_report_module_imports_no_heavy_library():
    code = ("import sys, mbcost.report, mbcost.cli; "
            "print(sorted(m for m in ('torch', 'plotly', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -------------------------------------------------------------------------------------------- CLI


def test_cli_report_default_location_and_merge(cli, tmp_path, monkeypatch, measured_files):
    monkeypatch.chdir(tmp_path)
    r = cli("report", "--input", "224", "--models", "v1,v2,vgg16", "--no-bench",
             "--from", str(measured_files[0]), "--from", str(measured_files[1]))
    assert r.exit_code == 0, r.output
    out = tmp_path / "reports" / "mbcost-report.html"
    assert out.is_file() and f"wrote {Path('reports') / 'mbcost-report.html'}" in r.stdout
    assert "from 2 run(s)" in r.stdout
    html = out.read_text(encoding="utf-8")
    assert "latency, Intel Xeon Gold 6354 float32" in html and "latency, NVIDIA H200 float16" in html
    assert not list((tmp_path / "reports").glob(".*.tmp"))


def test_cli_report_shows_what_bench_and_sweep_saved(tmp_path, monkeypatch):
    """The round trip: mbcost bench/sweep --save F (a fake timer) -> mbcost report --from F -> the page."""
    from html import escape

    from bench_fakes import FakeMeasure, run

    import mbcost.report
    from mbcost import units as fmt
    from mbcost.report.figures import latency_figure

    timer = FakeMeasure(times_for=lambda call: (0.002 * call, 0.002 * call + 0.0002, 0.002 * call + 0.0004),
                        run_fn=False)  # every measurement its own times, so every median differs
    save = tmp_path / "runs.jsonl"
    bench = run("bench", "--models", "v2@0.35,v1@0.25", "--input", "64", "--threads", "1", "--save", str(save),
                measure=timer)
    assert bench.exit_code == 0, bench.output
    sweep = run("sweep", "--channels", "8,16", "--kernels", "3", "--sizes", "8", "--threads", "1",
                "--save", str(save), measure=timer)
    assert sweep.exit_code == 0, sweep.output
    written = [parse_record(d) for d in load_records(save)]
    assert [r.kind for r in written] == ["model", "model", "conv", "conv"]

    shown = []
    build = mbcost.report.build_report
    monkeypatch.setattr(mbcost.report, "build_report", lambda *a, **k: shown.append(build(*a, **k)) or shown[-1])
    out = tmp_path / "r.html"
    r = run("report", "--models", "v2@0.35,v1@0.25", "--input", "64", "--no-bench", "--from", str(save),
            "--out", str(out))
    assert r.exit_code == 0, r.output
    (report,) = shown
    assert report.data.records == tuple(written)  # exactly what was written: every field, typed, in order
    assert report.data.skipped == () and [run_.counts for run_ in report.data.runs] == [{"model": 2, "conv": 2}]
    assert report.data.runs[0].sources == (str(save),)
    models = [w for w in written if isinstance(w, ModelRecord)]
    assert len({m.median_ms for m in models}) == 2
    (series,) = latency_figure(report.data.records, report.data.input).data
    assert sorted(series.y) == sorted(m.median_ms for m in models)
    page = out.read_text(encoding="utf-8")
    for m in models:  # the summary's latency cell of each model: its median, as the page formats it
        row = re.search(rf"<th>{re.escape(m.model)}</th>(.*?)</tr>", page).group(1)
        assert f"{fmt.ms(m.median_ms)}<br><span class='small'>IQR {fmt.ms(m.iqr_ms)}</span>" in row, m.model
    assert f"latency, {escape(models[0].label)}" in page


def test_cli_report_leaves_out_a_line_that_breaks_the_contract_and_says_why(cli, tmp_path):
    good = records_for(CPU, ("v2",))
    model = next(r for r in good if r["kind"] == "model")
    broken = [{k: v for k, v in model.items() if k != "median_ms"}, dict(model, median_ms="fast"),
              dict(model, env={"torch": "2.13.0"})]
    f = write_jsonl(tmp_path / "bad.jsonl", [*good, *broken])
    out = tmp_path / "r.html"
    r = cli("report", "--models", "v2", "--no-bench", "--from", str(f), "--out", str(out))
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    assert "1 record left out: model record without median_ms" in page
    assert "1 record left out: model record with non-numeric median_ms" in page
    assert "1 record left out: model record: env without mbcost, device_name" in page
    assert f"{len(rdata.label_runs(good)[0])} measurement records from 1 run(s)" in r.stdout
    assert "latency, Intel Xeon Gold 6354 float32" in page  # the good records are shown


@pytest.mark.parametrize("args, message", [
    (["--models", "v1,nope"], "unknown model 'nope'"),
    (["--from", "missing.jsonl"], "no such file"),
    (["--input", "2"], "too small"),
])
def test_cli_report_bad_input_is_one_line_exit_2(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = cli("report", "--out", "r.html", "--no-bench", *args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mbcost: error:") and message in lines[0], r.stderr
    assert not (tmp_path / "r.html").exists()


def test_cli_report_unwritable_out_is_one_line_exit_2(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file")
    for out in (blocker / "r.html", tmp_path):  # parent is a file; out is a directory
        r = cli("report", "--models", "v1", "--out", str(out))  # refused before measuring
        assert r.exit_code == 2, r.output
        assert r.stderr.startswith("mbcost: error: --out") and len(r.stderr.strip().splitlines()) == 1
    assert blocker.read_text() == "I am a file"


def test_cli_report_bench_measures_through_mbcost_bench_and_merges(cli, tmp_path, monkeypatch, measured_files):
    calls = []

    def fake_measure_now(specs, size, batch, **kwargs):
        calls.append(([s.label for s in specs], size, batch))
        return typed_records_for(GPU, ("v2",)), ["cpu not measured: a reason"]

    monkeypatch.setattr("mbcost.report.measure.measure_now", fake_measure_now)
    out = tmp_path / "b.html"
    r = cli("report", "--models", "v2", "--bench", "--from", str(measured_files[0]), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert calls == [(["v2"], None, 1)]  # no --input: each model is measured on its own default input (224 for v2)
    r = cli("report", "--models", "v2", "--input", "160", "--bench", "--out", str(tmp_path / "c.html"))
    assert r.exit_code == 0, r.output
    assert calls[-1] == (["v2"], (160, 160), 1)
    html = out.read_text(encoding="utf-8")
    assert "latency, NVIDIA H200 float16" in html and "latency, Intel Xeon Gold 6354 float32" in html
    assert "cpu not measured: a reason" in html and "--bench (measured now)" in html


def test_a_users_factory_model_and_its_layer_names_are_escaped():
    data = rdata.gather("report_samples:hostile_net,v2@0.35", 32, widths=(0.35,), resolutions=(32,),
                        conv_channels=(8,), conv_kernels=(3,))
    assert [m.label for m in data.models] == ["report_samples:hostile_net", "v2@0.35"]
    html = render_html(data)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    figures = len(report_figures(data))
    assert html.count("<script") == 1 + figures and html.count("</script>") == 1 + figures
    assert "report_samples:hostile_net" in html


def test_conv_sweep_over_several_map_sizes_gets_one_series_per_size(plain):
    rs = [r for r in records_for(CPU, ()) if r["kind"] == "conv"]
    bigger = [dict(r, size=[56, 56], standard_ms=r["standard_ms"] * 16, separable_ms=r["separable_ms"] * 16)
              for r in rs]
    kept, _, _ = rdata.label_runs(rs + bigger)
    fig = conv_ratio_figure(plain.conv_grid, kept)
    timed = [t for t in fig.data if t.mode == "markers+lines"]
    assert len(timed) == 2 and {"14x14 map", "56x56 map"} == {t.name.split("(")[1].split(")")[0] for t in timed}
    assert all(list(t.x) == [32, 128, 512] for t in timed)


def test_summary_shows_estimated_and_measured_activation_peaks_and_the_training_step(tmp_path):
    import mbcost
    from mbcost import units as fmt
    from mbcost.report import build_report

    records = records_for(CPU, ("v2",))
    v2 = mbcost.analyze("v2", 224)
    for r in records:
        if r.get("kind") == "model" and r["model"] == "v2":
            r["peak_memory_bytes"] = v2.peak_activation_bytes + 1_000_000  # 1 MB of workspace the estimate lacks
    out = build_report("v2", 224, records=records, out=tmp_path / "m.html", mode="train", optimizer="adam",
                       bench=False).path
    page = out.read_text(encoding="utf-8")
    assert fmt.nbytes(v2.peak_activation_bytes) in page and f"at {v2.peak_op}" in page
    assert f"{fmt.nbytes(v2.peak_activation_bytes + 1_000_000)} <span class='small'>+1.00 MB</span>" in page
    train = mbcost.analyze("v2", 224, mode="train", optimizer="adam")
    assert fmt.count(train.backward_macs) in page and fmt.nbytes(train.train_peak_memory_bytes) in page


def test_summary_shows_the_params_of_modules_no_op_used(tmp_path):
    from gate_models import with_spare

    from mbcost.report import build_report

    spare = with_spare().spare
    page = build_report("gate_models:with_spare", 8, out=tmp_path / "s.html", bench=False).path.read_text()
    n = sum(p.numel() for p in spare.parameters())
    assert f"spare (Linear, {n:,})'>{n} unused</span>" in page


# ----------------------------------------------------------------------------------------- claims


def test_claims_section_opens_the_page_with_one_row_per_claim(plain, tmp_path):
    html = render_html(plain)
    assert html.index("Claims checked") < html.index("id=\"conventions\"") < html.index("id=\"summary-h\"")
    rows = re.findall(r"<tr data-claim='(\w+)'>", html)
    assert rows == [c.key for c in plain.claims.claims] and len(rows) == 8
    assert "1/32.7 of the parameters, 1/27.2 of the MACs" in html
    assert "Howard et al. 2017, MobileNets, section 3.1" in html and "Sandler et al. 2018, MobileNetV2, Table 2" in html
    assert "id='v2-table'" in html and "class='mismatch'" not in html  # built and published side by side, equal
    for fig in ("spirals", "bottleneck_error", "frontier"):
        assert f"data-figure='{fig}'" in html
    assert html.index("data-figure='frontier'") < html.index("id=\"conventions\"")  # inside the section


def test_frontier_cites_every_point_and_adds_a_latency_panel_when_measured(plain, measured):
    from mbcost.report.figures import frontier_figure

    points = plain.claims.frontier
    fig = frontier_figure(points)
    assert fig.layout.xaxis.type == "log" and "MACs" in fig.layout.xaxis.title.text
    assert "top-1" in fig.layout.yaxis.title.text
    assert sum(len(t.x) for t in fig.data) == len(points)
    assert all("source: " in h for t in fig.data for h in t.hovertext)
    assert {t.name for t in fig.data} == {"MobileNetV1", "MobileNetV2", "VGG16", "GoogLeNet"}
    fig = frontier_figure(points, measured.records)
    timed = [t for t in fig.data if t.xaxis == "x2"]
    assert len(timed) == 2  # one series per run: v1, v2 and vgg16 measured at 224
    assert all(sorted(t.text) == ["v1/224", "v2/224", "vgg16/224"] for t in timed)
    assert "latency" in fig.layout.xaxis2.title.text


def test_spiral_figures_show_each_dimension_and_three_curves(plain):
    from mbcost.report.figures import bottleneck_error_figure, spirals_figure

    b = plain.claims.get("bottleneck").evidence
    fig = spirals_figure(b)
    assert [a.text for a in fig.layout.annotations][:6] == ["input spiral", "n = 2", "n = 3", "n = 5", "n = 15",
                                                             "n = 30"]
    curve = bottleneck_error_figure(b)
    assert [t.name for t in curve.data] == ["ReLU, mapped back with pinv(T)",
                                            "ReLU, best linear read-out (least squares)", "identity (no ReLU), pinv(T)"]
    assert list(curve.data[0].x) == [p.n for p in b.points]


def test_cli_report_measures_by_default_and_no_bench_skips_it(cli, tmp_path, monkeypatch):
    calls = []

    def fake_measure_now(specs, size, batch, **kwargs):
        calls.append([s.label for s in specs])
        return typed_records_for(CPU, ("v1",)), []

    monkeypatch.setattr("mbcost.report.measure.measure_now", fake_measure_now)
    r = cli("report", "--models", "v1", "--out", str(tmp_path / "a.html"))
    assert r.exit_code == 0, r.output
    assert calls == [["v1"]]
    assert "Latency not measured" not in (tmp_path / "a.html").read_text(encoding="utf-8")
    assert r.stderr == ""  # no progress bar when stderr is not a terminal
    r = cli("report", "--models", "v1", "--no-bench", "--quiet", "--out", str(tmp_path / "b.html"))
    assert r.exit_code == 0, r.output
    assert calls == [["v1"]] and "--no-bench" in (tmp_path / "b.html").read_text(encoding="utf-8")


def test_progress_bar_is_silent_when_quiet_or_short(monkeypatch):
    import time

    from mbcost.cli import progress

    drawn = []
    monkeypatch.setattr("rich.console.Console.is_terminal", property(lambda self: True))
    monkeypatch.setattr("rich.progress.Progress.start", lambda self: drawn.append("start"))
    monkeypatch.setattr("rich.progress.Progress.stop", lambda self: drawn.append("stop"))
    monkeypatch.setattr("rich.progress.Progress.refresh", lambda self: drawn.append("draw"))
    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    progress.set_quiet(True)
    with progress.progress_bar("x") as update:
        time.sleep(0.05)
        update(0, 2, "a")
    assert drawn == []
    progress.set_quiet(False)
    with progress.progress_bar("x") as update:
        for _ in range(200):  # the timer thread draws the bar (not a timing assertion: we wait for it)
            if drawn:
                break
            time.sleep(0.01)
        shown = len(drawn)
        update(1, 2, "b")
        assert len(drawn) > shown  # each update redraws once the bar is shown
    assert drawn[0] == "start" and drawn[-1] == "stop" and drawn.count("start") == 1
    del drawn[:]
    monkeypatch.setattr(progress, "SHOW_AFTER", 3600.0)
    with progress.progress_bar("x") as update:  # a short command never draws
        update(0, 2, "a")
    assert drawn == []
