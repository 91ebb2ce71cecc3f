"""The "Claims checked" evidence against hand-derived counts, the papers' printed figures and torchvision."""

from __future__ import annotations

from fractions import Fraction

import pytest
from report_samples import CPU, typed_records_for

import mbcost
from mbcost.claims.check import FAILS, HOLDS, QUALIFIED, UNCHECKED, check_claims
from mbcost.claims.frontier import QUOTED_ACCURACY, frontier_points
from mbcost.claims.residual_blocks import compare_blocks
from mbcost.claims.separable import measured_convs, v1_separable_layers, v2_separable_layers
from mbcost.claims.v2_table import PUBLISHED_V2_TABLE, TableRow, compare_tables, v2_table
from mbcost.experiments.linear_bottleneck import FIGURE_DIMS, linear_bottleneck
from mbcost.zoo.spec import build_model


@pytest.fixture(scope="module")
def claims():
    return check_claims()


def test_every_claim_has_a_quote_a_source_and_a_known_verdict(claims):
    assert [c.key for c in claims.claims] == ["formula", "eight_to_nine", "versus_vgg", "v2_table", "residual",
                                             "bottleneck", "memory", "dead_kernels"]
    for c in claims.claims:
        assert c.quote and c.source and c.reason, c.key
        assert c.verdict in (HOLDS, QUALIFIED, FAILS, UNCHECKED), c.key
    assert claims.get("dead_kernels").verdict == UNCHECKED
    assert "mbcost weights" in claims.get("dead_kernels").reason


def test_v1_separable_layers_match_the_hand_formula_and_1_over_n_plus_1_over_k2():
    layers = v1_separable_layers(mbcost.analyze("v1", 224), mbcost.analyze("v1-conv", 224))
    assert len(layers) == 13  # Table 1: 13 depthwise/pointwise pairs
    for la in layers:
        m, n, (h, w) = la.in_channels, la.out_channels, la.output_size
        assert la.depthwise_macs == 3 * 3 * m * h * w
        assert la.pointwise_macs == m * n * h * w
        assert la.standard_macs == 3 * 3 * m * n * h * w
        assert la.ratio == Fraction(1, n) + Fraction(1, 9) and la.deviation == 0
    assert [la.out_channels for la in layers][:2] == [64, 128]
    savings = sorted(la.saving for la in layers)
    assert savings[0] == pytest.approx(576 / 73)  # N = 64: 1 / (1/64 + 1/9) = 7.89x, below the paper's 8
    assert savings[-1] == pytest.approx(9216 / 1033)  # N = 1024: 8.92x


def test_v2_separable_layers_use_the_expanded_width_and_the_narrow_projection():
    layers = v2_separable_layers(mbcost.analyze("v2", 224))
    assert len(layers) == 17  # 1 + 2 + 3 + 4 + 3 + 3 + 1 bottlenecks (Table 2)
    first, second = layers[0], layers[1]
    assert (first.name, first.in_channels, first.out_channels, first.output_size) == ("features.1", 32, 16, (112, 112))
    assert (second.in_channels, second.out_channels, second.output_size) == (96, 24, (56, 56))  # 16 x 6, stride 2
    assert second.standard_macs == 3 * 3 * 96 * 24 * 56 * 56
    assert second.separable_macs == 3 * 3 * 96 * 56 * 56 + 96 * 24 * 56 * 56
    assert min(la.saving for la in layers) == pytest.approx(144 / 25)  # N = 16: 5.76x
    assert all(la.deviation == 0 for la in layers)


def test_eight_to_nine_holds_only_with_a_qualification_and_reports_measured_speedups(claims):
    c = claims.get("eight_to_nine")
    assert c.verdict == QUALIFIED and "7.89x to 8.92x" in c.reason and "5.76x" in c.reason
    records = typed_records_for(CPU, ())  # a peak record and a conv sweep at M = N = 32, 128, 512
    convs = measured_convs(records)
    assert [(m.in_channels, m.kernel, m.size, m.run) for m in convs] == [(n, 3, (14, 14), records[0].label)
                                                                         for n in (32, 128, 512)]
    m, sweep = convs[-1], records[-1]
    assert m.mac_speedup == pytest.approx(4608 / 521)  # 1 / (1/512 + 1/9): M = N = 512, K = 3
    assert m.measured_speedup == sweep.measured_speedup == pytest.approx(sweep.standard_ms / sweep.separable_ms)
    assert m.realised == pytest.approx(sweep.measured_speedup / (4608 / 521))
    measured = check_claims(records).get("eight_to_nine")
    assert "of the MAC saving survives as time" in measured.reason and measured.evidence.measured == convs


def test_v1_against_vgg16_quotes_1_over_32_7_and_1_over_27_2(claims):
    c = claims.get("versus_vgg")
    v = c.evidence
    assert (v.v1_params, v.vgg_params) == (4_231_976, 138_357_544)  # torchvision's vgg16: 138,357,544
    assert round(1 / v.params_ratio, 1) == 32.7 and round(1 / v.macs_ratio, 1) == 27.2
    assert (v.v1_top1, v.vgg_top1, v.top1_difference) == (70.6, 71.5, 0.9)  # Table 8
    assert c.verdict == HOLDS and "1/32.7" in c.reason and "1/27.2" in c.reason


def test_vgg16_count_agrees_with_torchvision():
    torchvision = pytest.importorskip("torchvision")
    entry = torchvision.models.VGG16_Weights.IMAGENET1K_V1
    assert mbcost.analyze("vgg16", 224).params == entry.meta["num_params"]


def test_v2_table_read_off_the_built_model_matches_the_published_table():
    table = v2_table(build_model("v2", device="meta"), mbcost.analyze("v2", 224))
    assert compare_tables(table) == ()  # a mismatch is a failure, not a warning
    assert table == PUBLISHED_V2_TABLE
    assert [(r.t, r.c, r.n, r.s) for r in table if r.operator == "bottleneck"] == [
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def test_a_model_that_differs_from_the_table_is_caught():
    half = v2_table(build_model("v2@0.5", device="meta"), mbcost.analyze("v2@0.5", 224))
    assert compare_tables(half) != ()
    assert half[2] == TableRow(112, 8, "bottleneck", 6, 16, 2, 2)  # c scaled to a multiple of 8
    assert compare_tables(PUBLISHED_V2_TABLE[:-1]) == (len(PUBLISHED_V2_TABLE) - 1,)


def test_inverted_and_classic_blocks_against_hand_counts():
    inverted, classic = compare_blocks(96, 14, 6)
    hw = 14 * 14
    assert inverted.macs == hw * (96 * 576 + 9 * 576 + 576 * 96)  # expand, depthwise, project
    assert classic.macs == hw * (96 * 16 + 9 * 16 * 16 + 16 * 96)  # reduce, 3x3, expand
    assert inverted.params == 96 * 576 + 9 * 576 + 576 * 96 + 2 * (576 + 576 + 96)  # convs + BN affine
    assert classic.params == 96 * 16 + 9 * 16 * 16 + 16 * 96 + 2 * (16 + 16 + 96)
    assert inverted.largest_tensor_shape == (1, 576, 14, 14) and inverted.largest_tensor_bytes == 576 * hw * 4
    assert classic.largest_tensor_shape == (1, 96, 14, 14)


def test_linear_bottleneck_is_seeded_and_shows_the_papers_effect():
    a, b = linear_bottleneck(), linear_bottleneck()
    assert a == b  # deterministic
    assert set(a.recovered) == set(FIGURE_DIMS)
    assert all(len(a.recovered[n][0]) == len(a.spiral[0]) for n in FIGURE_DIMS)
    assert max(p.identity for p in a.points) < 1e-12  # pinv(T) T = I for n >= 2
    assert a.at(2).relu_readout > 0.3 and a.at(3).relu_readout > 0.3  # information lost
    assert a.at(15).relu_readout < 0.05 and a.at(30).relu_readout < 0.01  # kept in high dimensions
    assert a.at(2).collapsed_fraction > 0.1 and a.at(30).collapsed_fraction == 0
    assert linear_bottleneck(seed=1) != a
    with pytest.raises(ValueError):
        linear_bottleneck((1,))


def test_memory_claim_reads_mbcost_memory(claims):
    c = claims.get("memory")
    assert c.evidence.v1.streamed_largest_tensor_bytes == 112 * 112 * 64 * 2  # 1600K
    assert c.evidence.v2.streamed_largest_tensor_bytes == 112 * 112 * 16 * 2  # 400K
    assert c.evidence.v2.largest_tensor_bytes == 112 * 112 * 96 * 2  # materialized
    assert c.verdict == QUALIFIED


def test_frontier_points_are_cited_and_counted():
    points = frontier_points()
    assert len(points) == len(QUOTED_ACCURACY) == 7 + 22 + 2
    assert all(p.source and 0 < p.top1 < 100 for p in points)
    by = {p.label: p for p in points}
    assert by["v1/224"].macs == 568_740_352 and by["v1/224"].top1 == 70.6
    assert by["v1@0.5/224"].source.endswith("Table 6") and by["v1/160"].source.endswith("Table 7")
    assert by["vgg16/224"].top1 == 71.5 and by["GoogLeNet/224"].top1 == 69.8
    for p in points:  # counted MACs near the quoted Mult-Adds, printed as whole millions (18.9 M is printed 18)
        quoted = p.quoted_macs_millions * 1e6  # GoogLeNet: torchvision's 1.50 G against the paper's 1.55 G
        assert abs(p.macs - quoted) <= max(0.035 * quoted, 1e6), p.label


def _health(label: str, dw_dead: int, pw_dead: int):
    """A checkpoint's kernel health with known dead counts: 100 depthwise and 100 pointwise kernels."""
    from mbcost.weights import KernelHealth, LayerHealth

    return KernelHealth(label, f"{label}.pt", 1e-3, (LayerHealth("dw", "dwconv", 100, dw_dead, 900, 0),
                                                     LayerHealth("pw", "pwconv", 100, pw_dead, 3200, 0)))


@pytest.mark.parametrize("label", ["torchvision.models:mobilenet_v2", "v2", "v1@0.25", "timm.models:mobilenetv1_100"])
def test_dead_kernels_claim_is_not_checked_from_one_checkpoint(label):
    """The claim compares V1 with V2: one checkpoint, however dead its depthwise kernels, decides nothing."""
    claim = check_claims(weights={label: _health(label, 30, 1)}).get("dead_kernels")
    assert claim.verdict == UNCHECKED
    assert "give both a v1 and a v2 checkpoint" in claim.reason
    assert f"{label}: 30.0% of depthwise kernels dead, 1.0% of pointwise" in claim.reason  # still shown


def test_dead_kernels_claim_is_not_checked_without_a_mobilenet_pair():
    weights = {"v1": _health("v1", 30, 1), "torchvision.models:mobilenet_v3_small": _health("x", 1, 1)}
    assert check_claims(weights=weights).get("dead_kernels").verdict == UNCHECKED


@pytest.mark.parametrize("v1_dead, verdict", [(30, HOLDS), (2, FAILS)])
def test_dead_kernels_claim_compares_a_v1_with_a_torchvision_v2(v1_dead, verdict):
    """torchvision's mobilenet_v2 is a V2: with a V1 beside it the claim is decided (V1's depthwise kernels
    dead more than its pointwise ones and more than V2's depthwise ones: 30% > 1% and > 5%; 2% < 5%: fails)."""
    weights = {"v1": _health("v1", v1_dead, 1), "torchvision.models:mobilenet_v2": _health("tv", 5, 1)}
    assert check_claims(weights=weights).get("dead_kernels").verdict == verdict


def _sweep_point(records, n: int, standard_ms: float, separable_ms: float):
    """The sample sweep's record at M = N = ``n``, re-timed (the speed-up is standard / separable time)."""
    import dataclasses

    r = next(r for r in records if getattr(r, "cin", None) == n)
    return dataclasses.replace(r, standard_ms=standard_ms, separable_ms=separable_ms, median_ms=separable_ms,
                               measured_speedup=standard_ms / separable_ms)


def test_eight_to_nine_shows_a_slower_separable_pair_as_a_slowdown():
    """The issue's sweep point: M = N = 32, 14x14, separable 0.72x the standard's speed (1 / 0.72 = 1.39x slower)."""
    records = [r for r in typed_records_for(CPU, ()) if getattr(r, "cin", None) != 512]
    records = [_sweep_point(records, 32, 0.072, 0.100) if getattr(r, "cin", None) == 32 else r for r in records]
    fast = next(r for r in records if getattr(r, "cin", None) == 128)
    reason = check_claims(records).get("eight_to_nine").reason
    assert f"from 1.39x slower to {fast.measured_speedup:.2f}x faster" in reason
    assert "slower than the standard conv at 1 of 2 points (M = N = 32, K = 3, 14x14: 1.39x slower)" in reason
    assert "0.72x" not in reason and " 0%" not in reason and "faster, so" not in reason.split("from 1.39x")[0]
    realised = fast.measured_speedup / (fast.standard_macs / fast.separable_macs)  # only the faster point
    assert f"{realised:.0%} to {realised:.0%} of the MAC saving survives as time where the separable pair" in reason


def test_eight_to_nine_when_every_point_was_slower():
    records = [r for r in typed_records_for(CPU, ()) if getattr(r, "cin", None) in (32, 128)]
    records = [_sweep_point(records, r.cin, 1.0, 1.0 / s) for r, s in zip(records, (0.5, 0.8), strict=True)]
    reason = check_claims(records).get("eight_to_nine").reason
    assert "measured conv sweep: 1.25x to 2.00x slower" in reason  # 1 / 0.8, 1 / 0.5
    assert "survives as time" not in reason and "none of the MAC saving survives there" in reason


def test_report_page_shows_the_slowdown(cli, tmp_path):
    from report_samples import write_jsonl

    records = typed_records_for(CPU, ("v1",))
    records = [_sweep_point(records, 32, 0.072, 0.100) if getattr(r, "cin", None) == 32 else r for r in records]
    runs = write_jsonl(tmp_path / "runs.jsonl", [r.to_dict() for r in records])
    out = tmp_path / "r.html"
    r = cli("report", "--models", "v1", "--no-bench", "--from", str(runs), "--out", str(out))
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    table = page[page.index("data-claim='savings-measured'"):]
    table = table[: table.index("</table>")]
    assert "1.39x slower" in table and "none (slower)" in table and "0.72x" not in table
    row = page[page.index("<tr data-claim='eight_to_nine'>"):]
    assert "from 1.39x slower to" in row[: row.index("</tr>")]
