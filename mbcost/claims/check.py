"""Every claim of the "Claims checked" section: quoted with its source, its evidence (typed results, raw
numbers: the report formats them), and a verdict decided by a rule written next to the claim.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from mbcost.bench.runtimes import runtime_label

if TYPE_CHECKING:
    from mbcost.bench.records import Record
    from mbcost.claims.frontier import FrontierPoint
    from mbcost.claims.residual_blocks import BlockCost
    from mbcost.claims.separable import MeasuredConv, RuntimeSaving, SeparableLayer
    from mbcost.claims.v2_table import TableRow
    from mbcost.cost.schedule import MemorySchedule
    from mbcost.experiments.linear_bottleneck import LinearBottleneck
    from mbcost.weights import KernelHealth

__all__ = [
    "FAILS", "HOLDS", "QUALIFIED", "UNCHECKED", "Claim", "ClaimsData", "DeadKernels", "MemoryClaim", "Savings",
    "TableCheck", "VersusVGG", "check_claims",
]

HOLDS = "holds"
QUALIFIED = "holds with a qualification"
FAILS = "does not hold"
UNCHECKED = "not checked"

V1_31 = "Howard et al. 2017, MobileNets, section 3.1"
V2_31 = "Sandler et al. 2018, MobileNetV2, section 3.1"


@dataclass(frozen=True)
class Claim:
    """One row of the section: what is claimed, by whom, what mbcost found, and the verdict."""

    key: str
    title: str
    quote: str
    source: str
    verdict: str
    reason: str
    evidence: Any


@dataclass(frozen=True)
class Savings:
    """Per-layer MAC savings of the separable pairs of V1 and V2, and measured conv speed-ups."""

    v1: tuple[SeparableLayer, ...]
    v2: tuple[SeparableLayer, ...]
    measured: tuple[MeasuredConv, ...]
    conv_top1: float
    separable_top1: float
    top1_source: str

    @property
    def per_runtime(self) -> tuple[RuntimeSaving, ...]:
        """The measured points summed up per runtime and precision (``claims.separable.runtime_savings``)."""
        from mbcost.claims.separable import runtime_savings

        return runtime_savings(self.measured)


@dataclass(frozen=True)
class VersusVGG:
    """Counted params and MACs of V1 and VGG16 at 224 and their quoted top-1."""

    v1_params: int
    v1_macs: int
    vgg_params: int
    vgg_macs: int
    v1_top1: float
    vgg_top1: float
    source: str

    @property
    def params_ratio(self) -> float:
        return self.v1_params / self.vgg_params

    @property
    def macs_ratio(self) -> float:
        return self.v1_macs / self.vgg_macs

    @property
    def top1_difference(self) -> float:
        return round(self.vgg_top1 - self.v1_top1, 2)


@dataclass(frozen=True)
class TableCheck:
    """V2's table as built and as published, and the indexes of the rows that differ."""

    built: tuple[TableRow, ...]
    published: tuple[TableRow, ...]
    mismatches: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class MemoryClaim:
    """The memory schedules of V1 and V2 at 224, 16-bit, against the paper's 1600K and 400K."""

    v1: MemorySchedule
    v2: MemorySchedule
    quoted_v1_kb: int
    quoted_v2_kb: int


@dataclass(frozen=True)
class DeadKernels:
    """Kernel health of each checkpoint given, by model spec (empty: nothing to check)."""

    checkpoints: Mapping[str, KernelHealth]


@dataclass(frozen=True)
class ClaimsData:
    """The claims and the accuracy-vs-cost frontier, as the report shows them."""

    claims: tuple[Claim, ...]
    frontier: tuple[FrontierPoint, ...]

    def get(self, key: str) -> Claim:
        return next(c for c in self.claims if c.key == key)


# ---------------------------------------------------------------------------------------------------------


def _formula_claim(v1_layers: tuple[SeparableLayer, ...]) -> Claim:
    worst = max(v1_layers, key=lambda la: abs(la.deviation))
    if worst.deviation == 0:
        verdict, reason = HOLDS, (f"exact on all {len(v1_layers)} separable layers of V1: the counted ratio equals "
                                  "1/N + 1/K^2 with no deviation")
    elif abs(worst.deviation) < 1e-3:
        verdict, reason = QUALIFIED, f"largest deviation {float(worst.deviation):.2e}, at {worst.name}"
    else:
        verdict, reason = FAILS, f"largest deviation {float(worst.deviation):.4f}, at {worst.name}"
    return Claim("formula", "Separable cost 1/N + 1/Dk^2",
                 "we get a reduction in computation of ... 1/N + 1/D_K^2", f"{V1_31} (equation 5)", verdict, reason,
                 v1_layers)


def _span(measured: Iterable[MeasuredConv]) -> str:
    """The measured speed-ups' range in words, a slowdown as a slowdown (``units.speed_range``)."""
    from mbcost.units import speed_range

    speedups = [m.measured_speedup for m in measured]
    return speed_range(min(speedups), max(speedups))


def _runtime_saving(s: RuntimeSaving) -> str:
    """One runtime's sweep in a clause: its range, the median share of the MAC saving that survives where the
    separable pair was faster, and where it was slower (none survives there)."""
    text = f"{runtime_label(s.runtime, s.precision)}: {_span(s.points)}"
    if s.median_realised is not None:
        text += f", {s.median_realised:.0%} of the MAC saving survives as time (median"
        text += " where faster)" if s.slower else ")"
    if s.slower:
        text += f", slower at {len(s.slower)} of {len(s.points)} points (none survives there)"
    if s.wrong:
        text += f", OUTPUT CHECK FAILED at {s.wrong} of {len(s.points)} points"
    if s.noisy:
        text += f" ({s.noisy} of {len(s.points)} noisy)"
    return text


def _measured_savings(measured: tuple[MeasuredConv, ...]) -> str:
    """The conv sweep in words: eager PyTorch's alone in detail, or per runtime when several runtimes (or int8)
    were measured (``_runtime_saving``). Where the separable pair was slower (speed-up below 1) it is said so,
    and no share of the MAC saving is claimed to survive there."""
    from mbcost.claims.separable import runtime_savings
    from mbcost.units import speed_change

    groups = runtime_savings(measured)
    if len(groups) > 1 or groups[0].runtime != "eager" or groups[0].precision == "int8":
        return "measured conv sweep, per runtime: " + "; ".join(_runtime_saving(g) for g in groups)
    eager = groups[0]
    slower, noisy = eager.slower, eager.noisy
    text = f"measured conv sweep: {_span(measured)}"
    if eager.median_realised is not None:
        realised = sorted(m.realised for m in eager.faster)
        where = " where the separable pair was faster" if slower else ""
        text += (f", so {realised[0]:.0%} to {realised[-1]:.0%} of the MAC saving survives as time{where} (median "
                 f"{eager.median_realised:.0%})")
    if slower:
        shown = ", ".join(f"M = N = {m.in_channels}, K = {m.kernel}, {'x'.join(map(str, m.size))}: "
                          f"{speed_change(m.measured_speedup)}" for m in slower[:3])
        more = f" and {len(slower) - 3} more" if len(slower) > 3 else ""
        text += (f"; the separable pair was slower than the standard conv at {len(slower)} of {len(measured)} "
                 f"points ({shown}{more}): none of the MAC saving survives there")
    if noisy:
        text += f" ({noisy} of {len(measured)} points noisy)"
    return text


def _savings_claim(s: Savings) -> Claim:
    lo1, hi1 = min(la.saving for la in s.v1), max(la.saving for la in s.v1)
    lo2, hi2 = min(la.saving for la in s.v2), max(la.saving for la in s.v2)
    parts = [f"V1's pairs save {lo1:.2f}x to {hi1:.2f}x", f"V2's save {lo2:.2f}x to {hi2:.2f}x"]
    if s.measured:
        parts.append(_measured_savings(s.measured))
    if lo1 >= 8 and hi1 <= 9 and lo2 >= 8 and hi2 <= 9:
        verdict = HOLDS
    elif lo1 >= 7.5 and hi1 <= 9.5:
        verdict = QUALIFIED
        parts.append("the narrow layers (N < 72) save less than 8x" + ("" if s.measured else "; time not measured"))
    else:
        verdict = FAILS
    return Claim("eight_to_nine", "8 to 9 times fewer MACs",
                 "MobileNet uses 3 x 3 depthwise separable convolutions which uses between 8 to 9 times less "
                 "computation than standard convolutions at only a small reduction in accuracy",
                 f"{V1_31}; also {V2_31}", verdict, "; ".join(parts), s)


def _vgg_claim(v: VersusVGG) -> Claim:
    holds = round(1 / v.params_ratio) in (32, 33) and round(1 / v.macs_ratio) == 27
    return Claim("versus_vgg", "MobileNetV1 against VGG16",
                 "MobileNet is nearly as accurate as VGG16 while being 32 times smaller and 27 times less compute "
                 "intensive", "Howard et al. 2017, MobileNets, section 4.3 and Table 8",
                 HOLDS if holds else FAILS,
                 f"counted: 1/{1 / v.params_ratio:.1f} of the parameters, 1/{1 / v.macs_ratio:.1f} of the MACs; "
                 f"quoted top-1 {v.v1_top1:.1f}% vs {v.vgg_top1:.1f}% ({v.top1_difference:.1f} points lower)", v)


def _table_claim(t: TableCheck) -> Claim:
    ok = not t.mismatches
    return Claim("v2_table", "MobileNetV2's architecture table",
                 "Table 2: MobileNetV2, each line a sequence of n identical layers (t expansion, c output channels, "
                 "s stride of the first)", t.source, HOLDS if ok else FAILS,
                 f"all {len(t.published)} rows read off the built model match the table" if ok else
                 f"{len(t.mismatches)} row(s) differ: {', '.join(str(i + 1) for i in t.mismatches)}", t)


def _blocks_claim(blocks: tuple[BlockCost, BlockCost]) -> Claim:
    inverted, classic = blocks
    factor = inverted.largest_tensor_bytes / classic.largest_tensor_bytes
    if factor <= 1:
        verdict, reason = HOLDS, "its largest tensor is no larger than the classic block's"
    else:
        verdict = QUALIFIED
        reason = (f"at C = {inverted.channels}, {inverted.size}x{inverted.size}, t = {inverted.expansion}: its largest "
                  f"tensor is {factor:.0f}x the classic block's and it costs {inverted.macs / classic.macs:.1f}x the "
                  "MACs when every tensor is materialized; its memory saving needs the streamed schedule (the "
                  "memory claim below), where only its narrow input and output exist whole")
    return Claim("residual", "Inverted against classic residual block",
                 "the inverted design is considerably more memory efficient", "Sandler et al. 2018, MobileNetV2, "
                 "section 3.3",
                 verdict, reason, blocks)


def _bottleneck_claim(b: LinearBottleneck) -> Claim:
    low = [b.at(n) for n in (2, 3)]
    high = [b.at(n) for n in (15, 30)]
    identity = max(p.identity for p in b.points)
    holds = all(p.relu_readout >= 0.3 for p in low) and all(p.relu_readout <= 0.05 for p in high) and identity < 1e-9
    reason = (f"after ReLU the best linear read-out recovers the spiral with relative error {low[0].relu_readout:.2f} "
              f"at n = 2 ({low[0].collapsed_fraction:.0%} of the points collapse to 0) and {high[1].relu_readout:.4f} "
              f"at n = 30; without ReLU the error is {identity:.0e} at every n; mapped back with pinv(T) the spiral "
              f"keeps about half its size at large n (error {high[1].relu_pinv:.2f})")
    return Claim("bottleneck", "Linear bottlenecks: ReLU loses information in low dimensions",
                 "n = 2, 3 result in information loss where certain points of the manifold collapse into each other",
                 "Sandler et al. 2018, MobileNetV2, Figure 1 and section 3.2", HOLDS if holds else FAILS, reason, b)


def _memory_claim(m: MemoryClaim) -> Claim:
    v1_kb = m.v1.streamed_largest_tensor_bytes / 1000
    v2_kb = m.v2.streamed_largest_tensor_bytes / 1000
    close = abs(v1_kb / m.quoted_v1_kb - 1) < 0.01 and abs(v2_kb / m.quoted_v2_kb - 1) < 0.01
    reason = (f"largest tensor held whole, 16-bit: V1 {v1_kb:,.0f} kB, V2 {v2_kb:,.0f} kB when its blocks are "
              f"streamed; materialized, V2 needs {m.v2.largest_tensor_bytes / 1000:,.0f} kB")
    return Claim("memory", "Memory: V1 1600K against V2 400K",
                 "the max number of channels/memory (in Kb) that needs to be materialized at each spatial resolution "
                 "... MobileNetV1 1600K, MobileNetV2 400K (16-bit floats)",
                 "Sandler et al. 2018, MobileNetV2, Table 3", QUALIFIED if close else FAILS, reason, m)


def _mobilenet_generation(label: str) -> str | None:
    """``"v1"`` or ``"v2"`` for a MobileNetV1/V2 spec label: the zoo's ``v1``/``v2`` (any width) or a
    factory named after one (``torchvision.models:mobilenet_v2``, ``timm:mobilenetv1_100``); else None."""
    import re

    name = label.split("@")[0]
    if name in ("v1", "v2"):
        return name
    if ":" not in name:
        return None
    attr = re.split(r"[:.]", name)[-1]
    found = re.match(r"mobilenet_?(v[12])(?![0-9])", attr, flags=re.IGNORECASE)
    return found.group(1).lower() if found else None


def _dead_claim(d: DeadKernels, threshold: float) -> Claim:
    quote = ("depthwise kernels tend to die in training (most of their weights go to 0); MobileNetV2's design "
             "suffers less")
    source = "a common reading of the MobileNetV2 design, in write-ups about it (neither paper measures it)"
    if not d.checkpoints:
        return Claim("dead_kernels", "Dying depthwise kernels", quote, source, UNCHECKED,
                     "needs trained weights: mbcost weights v1.pt --model v1 (and v2), or mbcost report "
                     "--weights v1=v1.pt --weights v2=v2.pt", d)
    fractions = {spec: h.categories["dwconv"].dead_fraction for spec, h in d.checkpoints.items()}
    pw = {spec: h.categories["pwconv"].dead_fraction for spec, h in d.checkpoints.items()}
    parts = [f"{spec}: {f:.1%} of depthwise kernels dead, {pw[spec] or 0:.1%} of pointwise" for spec, f in
             fractions.items() if f is not None]
    v1 = next((s for s, f in fractions.items() if f is not None and _mobilenet_generation(s) == "v1"), None)
    v2 = next((s for s, f in fractions.items() if f is not None and _mobilenet_generation(s) == "v2"), None)
    if v1 and v2:
        dies = fractions[v1] > (pw[v1] or 0) and fractions[v1] > fractions[v2]
        verdict = HOLDS if dies else FAILS
    else:  # the claim compares V1 with V2: one side alone decides nothing
        verdict = UNCHECKED
        missing = " and ".join(g for g, have in (("v1", v1), ("v2", v2)) if not have)
        parts.append(f"no {missing} checkpoint with depthwise layers: give both a v1 and a v2 checkpoint to "
                     "compare them")
    return Claim("dead_kernels", "Dying depthwise kernels", quote, source, verdict,
                 f"dead: L1 norm below {threshold:g} x the layer's median; " + "; ".join(parts), d)


@lru_cache(maxsize=1)
def _static_evidence() -> tuple[Any, ...]:
    """Evidence that depends on nothing the caller gives (cached for the process)."""
    from mbcost.claims.frontier import frontier_points
    from mbcost.claims.residual_blocks import compare_blocks
    from mbcost.claims.separable import v1_separable_layers, v2_separable_layers
    from mbcost.claims.v2_table import PUBLISHED_V2_TABLE, SOURCE, compare_tables, v2_table
    from mbcost.cost.analyze import analyze
    from mbcost.cost.schedule import memory_schedules
    from mbcost.experiments.linear_bottleneck import linear_bottleneck
    from mbcost.zoo.catalog import get_entry
    from mbcost.zoo.spec import build_model

    v1, v1_conv, v2, vgg = (analyze(s, 224) for s in ("v1", "v1-conv", "v2", "vgg16"))
    v1_layers, v2_layers = v1_separable_layers(v1, v1_conv), v2_separable_layers(v2)
    ref_v1, ref_conv, ref_vgg = (get_entry(s).reported for s in ("v1", "v1-conv", "vgg16"))
    built = v2_table(build_model("v2", device="meta"), v2)
    table = TableCheck(built, PUBLISHED_V2_TABLE, compare_tables(built, PUBLISHED_V2_TABLE), SOURCE)
    versus = VersusVGG(v1.params, v1.macs, vgg.params, vgg.macs, ref_v1.top1, ref_vgg.top1,
                       f"{ref_v1.source}; {ref_vgg.source}")
    schedules = memory_schedules("v1,v2", 224, dtype="float16")
    memory = MemoryClaim(schedules[0], schedules[1], 1600, 400)
    return (v1_layers, v2_layers, (ref_conv.top1, ref_v1.top1, ref_conv.source), versus, table,
            compare_blocks(), linear_bottleneck(), memory, frontier_points())


def check_claims(records: Iterable[Record] = (), weights: Mapping[str, KernelHealth] | None = None,
                 *, threshold: float | None = None) -> ClaimsData:
    """Check every claim now.

    Args:
        records: typed measurement records (``mbcost.bench.records``; the conv sweep's ``ConvRecord``
            feed the measured speed-ups of the "8 to 9 times" claim, under their ``label``).
        weights: kernel health of trained checkpoints by model spec (``mbcost.weights.checkpoint_health``).
        threshold: the dead-kernel threshold used (for the wording; default that of the first checkpoint).

    Returns:
        A ``ClaimsData``: the claims in the report's order and the accuracy-vs-cost frontier.
    """
    from mbcost.claims.separable import measured_convs
    from mbcost.weights import DEFAULT_THRESHOLD

    v1_layers, v2_layers, top1, versus, table, blocks, bottleneck, memory, frontier = _static_evidence()
    savings = Savings(v1_layers, v2_layers, measured_convs(records), top1[0], top1[1], top1[2])
    weights = dict(weights or {})
    if threshold is None:
        threshold = next(iter(weights.values())).threshold if weights else DEFAULT_THRESHOLD
    claims = (_formula_claim(v1_layers), _savings_claim(savings), _vgg_claim(versus), _table_claim(table),
              _blocks_claim(blocks), _bottleneck_claim(bottleneck), _memory_claim(memory),
              _dead_claim(DeadKernels(weights), threshold))
    return ClaimsData(claims=claims, frontier=frontier)
