"""Depthwise + pointwise against standard convolution, layer by layer, in MobileNetV1 and V2.

For every separable pair of a model, the exact MACs of the pair (from the model's own analysed
layers) against the exact MACs of the standard KxK convolution that would stand in its place:
in V1 the same position of the "Conv MobileNet" twin (``v1-conv``), in V2 a standard 3x3
convolution from the block's expanded width to its output width (``compare_conv``). Both sides
come from the cost engine; the paper's closed form ``1/N + 1/K^2`` stands beside them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from mbcost.bench.records import ConvRecord, Record
from mbcost.cost.result import LayerCost, ModelCost

__all__ = [
    "MeasuredConv", "RuntimeSaving", "SeparableLayer", "measured_convs", "runtime_savings", "v1_separable_layers",
    "v2_separable_layers",
]


@dataclass(frozen=True)
class SeparableLayer:
    """One depthwise KxK + pointwise 1x1 pair and the standard KxK convolution it replaces."""

    model: str
    name: str
    in_channels: int
    out_channels: int
    kernel: int
    output_size: tuple[int, int]
    depthwise_macs: int
    pointwise_macs: int
    standard_macs: int

    @property
    def separable_macs(self) -> int:
        return self.depthwise_macs + self.pointwise_macs

    @property
    def ratio(self) -> Fraction:
        """Exact separable / standard MACs."""
        return Fraction(self.separable_macs, self.standard_macs)

    @property
    def formula(self) -> Fraction:
        """The paper's ``1/N + 1/K^2``."""
        return Fraction(1, self.out_channels) + Fraction(1, self.kernel ** 2)

    @property
    def deviation(self) -> Fraction:
        """``ratio - formula`` (exact)."""
        return self.ratio - self.formula

    @property
    def saving(self) -> float:
        """How many times fewer MACs the pair does: ``standard / separable``."""
        return self.standard_macs / self.separable_macs


@dataclass(frozen=True)
class MeasuredConv:
    """One measured point of a conv sweep (a ``ConvRecord``): MAC and time speed-ups."""

    run: str
    in_channels: int
    out_channels: int
    kernel: int
    size: tuple[int, ...]
    mac_speedup: float
    measured_speedup: float
    #: Either time's interquartile range was wide against its median (the record's flags).
    noisy: bool = False
    #: What ran both stacks (``mbcost.bench.runtimes``) and in what precision.
    runtime: str = "eager"
    precision: str = "float32"
    #: Either stack's output check failed (its time is not the time of the same computation).
    wrong: bool = False

    @property
    def realised(self) -> float:
        """The share of the MAC saving that survives as time (measured / MAC speed-up)."""
        return self.measured_speedup / self.mac_speedup


@dataclass(frozen=True)
class RuntimeSaving:
    """The measured conv sweep of one runtime at one precision, summed up: how much of the MAC saving of
    depthwise + pointwise survives as time there (``realised`` only over the points where the separable pair
    was faster; where it was slower, none does)."""

    runtime: str
    precision: str
    points: tuple[MeasuredConv, ...]

    @property
    def faster(self) -> tuple[MeasuredConv, ...]:
        return tuple(m for m in self.points if m.measured_speedup >= 1)

    @property
    def slower(self) -> tuple[MeasuredConv, ...]:
        return tuple(m for m in self.points if m.measured_speedup < 1)

    @property
    def lowest(self) -> float:
        return min(m.measured_speedup for m in self.points)

    @property
    def highest(self) -> float:
        return max(m.measured_speedup for m in self.points)

    @property
    def median_realised(self) -> float | None:
        """The median share of the MAC saving realised where the pair was faster; ``None`` when it never was."""
        realised = sorted(m.realised for m in self.faster)
        return realised[len(realised) // 2] if realised else None

    @property
    def noisy(self) -> int:
        return sum(m.noisy for m in self.points)

    @property
    def wrong(self) -> int:
        return sum(m.wrong for m in self.points)


def _by_module(cost: ModelCost) -> dict[str, LayerCost]:
    return {lc.module: lc for lc in cost.layers if lc.kind == "conv"}


def v1_separable_layers(v1: ModelCost, v1_conv: ModelCost) -> tuple[SeparableLayer, ...]:
    """Every ``features.i`` depthwise + pointwise pair of ``v1`` against ``features.i.0`` of ``v1-conv``.

    Args:
        v1, v1_conv: ``analyze("v1", ...)`` and ``analyze("v1-conv", ...)`` at the same input and width.
    """
    sep, std = _by_module(v1), _by_module(v1_conv)
    out = []
    for name, dw in sep.items():
        if not name.endswith(".dw.0"):
            continue
        block = name[: -len(".dw.0")]
        pw, standard = sep[f"{block}.pw.0"], std[f"{block}.0"]
        out.append(SeparableLayer(model=v1.label, name=block, in_channels=dw.input_shape[1],
                                  out_channels=pw.output_shape[1], kernel=int(dw.kernel[0]),
                                  output_size=tuple(pw.output_shape[2:4]), depthwise_macs=dw.macs,
                                  pointwise_macs=pw.macs, standard_macs=standard.macs))
    return tuple(out)


def v2_separable_layers(v2: ModelCost) -> tuple[SeparableLayer, ...]:
    """Every inverted-residual block's depthwise 3x3 + linear 1x1 projection against a standard 3x3
    convolution from the expanded width to the block's output width (same stride and input)."""
    from mbcost.cost.conv import compare_conv

    convs = [lc for lc in v2.layers if lc.kind == "conv"]
    out = []
    for i, dw in enumerate(convs):
        if dw.category != "dwconv" or i + 1 >= len(convs) or convs[i + 1].category != "pwconv":
            continue
        pw = convs[i + 1]
        k, stride = int(dw.kernel[0]), int(dw.stride[0])
        standard = compare_conv(dw.input_shape[1], pw.output_shape[1], k, tuple(dw.input_shape[2:4]), stride,
                                batch=dw.input_shape[0]).standard
        block = dw.module.split(".conv.")[0]  # features.i.conv.k.0 -> features.i
        out.append(SeparableLayer(model=v2.label, name=block, in_channels=dw.input_shape[1],
                                  out_channels=pw.output_shape[1], kernel=k, output_size=tuple(pw.output_shape[2:4]),
                                  depthwise_macs=dw.macs, pointwise_macs=pw.macs, standard_macs=standard.macs))
    return tuple(out)


def measured_convs(records: Iterable[Record]) -> tuple[MeasuredConv, ...]:
    """The conv-sweep records (``ConvRecord``) as MAC and measured speed-ups, each under its run's
    ``label``. The MAC speed-up is the record's exact ``standard_macs / separable_macs``; a record
    with no positive speed-up or MAC count (a zero time) is left out."""
    out = []
    for r in records:
        if not isinstance(r, ConvRecord) or r.measured_speedup <= 0 or r.separable_macs <= 0:
            continue
        wrong = any(c is not None and not c.passed for c in (r.output_check, r.standard_output_check))
        out.append(MeasuredConv(run=r.label, in_channels=r.cin, out_channels=r.cout, kernel=r.k, size=r.size,
                                mac_speedup=r.standard_macs / r.separable_macs, measured_speedup=r.measured_speedup,
                                noisy=r.wide_spread or r.standard_wide_spread, runtime=r.runtime or "eager",
                                precision=r.precision or r.dtype, wrong=wrong))
    return tuple(out)


def runtime_savings(measured: Iterable[MeasuredConv]) -> tuple[RuntimeSaving, ...]:
    """The measured points grouped by runtime and precision, in the order of ``mbcost.bench.runtimes.RUNTIMES``
    (float before int8)."""
    from mbcost.bench.runtimes import runtime_order

    groups: dict[tuple[str, str], list[MeasuredConv]] = {}
    for m in measured:
        groups.setdefault((m.runtime, m.precision), []).append(m)
    return tuple(RuntimeSaving(runtime, precision, tuple(groups[(runtime, precision)]))
                 for runtime, precision in sorted(groups, key=lambda k: runtime_order(*k)))
