"""Results render as HTML tables in notebooks (``_repr_html_``): the numbers and units of the table the
command prints, the conventions as the caption, every string escaped."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from bench_fakes import FakeMeasure, run


class _Cells(HTMLParser):
    """The caption's text and the table's rows of cell texts (entities unescaped)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.caption = ""
        self.tables = 0
        self._cell: list[str] | None = None
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables += 1
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "caption":
            self._in_caption = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())  # as a terminal row's cells, stripped
            self._cell = None
        elif tag == "caption":
            self._in_caption = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._in_caption:
            self.caption += data + "\n"


def cells(html: str) -> _Cells:
    parser = _Cells()
    parser.feed(html)
    return parser


def terminal_rows(text: str) -> list[list[str]]:
    """The body rows of a rich table as the CLI prints it (``│`` between cells)."""
    return [[c.strip() for c in line.strip().strip("│").split("│")] for line in text.splitlines() if "│" in line]


def test_v2_renders_with_its_exact_parameter_count_and_the_terminal_tables_numbers(cli):
    import mbcost

    html = mbcost.analyze("v2")._repr_html_()
    # torchvision publishes MobileNetV2's parameter count with its weights (derived from the real module there).
    tv = pytest.importorskip("torchvision").models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["num_params"]
    assert f"{tv:,}" == "3,504,872" and "3,504,872" in html
    got = cells(html)
    assert got.tables == 1 and got.rows[0] == ["metric", "v2"]
    printed = cli("compare", "--models", "v2", "--input", "224", "--no-bench")
    assert printed.exit_code == 0
    assert terminal_rows(printed.stdout) == got.rows[1:]  # every row the terminal shows, the same cells
    assert ["params", "3.50 M (3,504,872)"] in got.rows and ["MACs", "300.77 M (300,774,272)"] in got.rows
    # the conventions travel with the numbers
    assert "MACs = multiply-accumulates of conv and linear layers" in got.caption
    assert "FLOPs = 2 x MACs" in got.caption and "1 MB = 10^6 bytes" in got.caption


def test_a_comparison_renders_as_mbcost_compare_prints_it(cli):
    from mbcost.comparison import compare_models

    c = compare_models("v1,vgg16", 224, convention="thop", bench=False)
    got = cells(c._repr_html_())
    printed = cli("compare", "--models", "v1,vgg16", "--convention", "thop", "--no-bench")
    assert terminal_rows(printed.stdout) == got.rows[1:]
    assert ["params vs vgg16", "1/32.7", "1x"] in got.rows  # V1 Table 8: "32 times smaller"
    assert "convention thop" in got.caption


def test_conv_comparison_renders_the_exact_ratio(cli):
    import mbcost

    got = cells(mbcost.compare_conv(512, 512, 3, 14)._repr_html_())
    # 1/N + 1/K^2 = 1/512 + 1/9 = (9 + 512) / 4608
    assert ["exact ratio separable / standard", "0.113064", "0.113064", "", "= 521/4608"] in got.rows
    printed = cli("conv", "--cin", "512", "--cout", "512", "--k", "3", "--size", "14")
    assert terminal_rows(printed.stdout) == got.rows[1:]


def test_a_bench_record_renders_as_mbcost_bench_prints_it():
    from mbcost.bench.records import ModelRecord

    fake = FakeMeasure(times=(0.010, 0.011, 0.012, 0.013, 0.010), run_fn=False)  # median 11 ms
    args = ("bench", "--models", "v1@0.25", "--input", "64")
    printed = run(*args, measure=fake)
    doc = json.loads(run(*args, "--format", "json", measure=FakeMeasure(run_fn=False)).stdout)
    record = ModelRecord.from_dict(doc["results"][0])
    got = cells(record._repr_html_())
    shown = terminal_rows(printed.stdout)
    assert got.rows[1][:5] == shown[0][:5] == ["v1@0.25", "64x64", "1", "float32", "11.00 ms"]
    assert got.rows[1][6:8] == shown[0][6:8]  # images/s and GFLOP/s, as printed
    assert "median of timed runs" in got.caption and "measured on" in got.caption


def test_every_record_kind_and_the_reconciliation_have_a_table():
    from report_samples import CPU, typed_records_for

    for record in typed_records_for(CPU, ("v1", "v2")):
        got = cells(record._repr_html_())
        assert got.tables == 1 and len(got.rows) >= 2, type(record).__name__
        assert "Intel Xeon Gold 6354" in got.caption + " ".join(got.rows[1]), type(record).__name__


@pytest.mark.counters
def test_a_reconciliation_renders_its_components():
    pytest.importorskip("fvcore")
    import mbcost
    from mbcost.counters import measure

    rec = mbcost.reconcile(mbcost.analyze("v2"), measure("fvcore", "v2"))
    got = cells(rec._repr_html_())
    rows = {tuple(r[1:3]) for r in got.rows}
    # fvcore's own total on MobileNetV2 (the live library's), and the analytic MACs it is checked against
    assert ("total as the library reports it", f"{rec.total:,}") in rows and rec.total == 314_193_216
    assert ("analytic (paper MACs)", "300,774,272") in rows
    assert ("difference", "+13,418,944") in rows  # 314,193,216 - 300,774,272
    assert "exact: every unit explained" in {r[3] for r in got.rows}
    assert "analytic = the papers' Mult-Adds" in got.caption


def test_cells_are_escaped():
    from mbcost.render.table import Table

    html = Table(title="<b>t</b>", columns=["a", "b"], rows=[["<script>", "1 & 2"]], notes=["x < y"]).to_html()
    assert "<script>" not in html and "&lt;script&gt;" in html and "1 &amp; 2" in html and "x &lt; y" in html
    got = cells(html)
    assert got.rows == [["a", "b"], ["<script>", "1 & 2"]]


def test_an_object_no_maker_knows_has_no_html():
    from mbcost import display

    assert display.html(object()) is None
