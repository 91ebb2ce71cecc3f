"""Depthwise + pointwise against standard convolution, layer by layer, in MobileNetV1 and V2.

For every separable pair of a model, the exact MACs of the pair (from the model's own analysed
layers) against the exact MACs of the standard KxK convolution that would stand in its place:
in V1 the same position of the "Conv MobileNet" twin (``v1-conv``), in V2 a standard 3x3
convolution from the block's expanded width to its output width (``compare_conv``). Both sides
come from the cost engine; the paper's closed form ``1/N + 1/K^2`` stands beside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mbcost.cost.result import LayerCost, ModelCost

__all__ = ["MeasuredConv", "SeparableLayer", "measured_convs", "v1_separable_layers", "v2_separable_layers"]


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
    """One measured point of a conv sweep (``kind: conv`` records): MAC and time speed-ups."""

    run: str
    in_channels: int
    out_channels: int
    kernel: int
    size: tuple[int, ...]
    mac_speedup: float
    measured_speedup: float
    #: Either time's interquartile range was wide against its median (the record's flags).
    noisy: bool = False

    @property
    def realised(self) -> float:
        """The share of the MAC saving that survives as time (measured / MAC speed-up)."""
        return self.measured_speedup / self.mac_speedup


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


def measured_convs(records: Iterable[dict[str, Any]]) -> tuple[MeasuredConv, ...]:
    """The conv-sweep records (``kind: conv``) as MAC and measured speed-ups.

    The MAC speed-up is the record's own ``macs_ratio`` when present, else the engine's count.
    """
    from mbcost.cost.conv import compare_conv

    out = []
    for r in records:
        if r.get("kind") != "conv" or not r.get("measured_speedup"):
            continue
        size: Sequence[int] = r.get("size") or (14, 14)
        ratio = r.get("macs_ratio") or float(compare_conv(int(r["cin"]), int(r["cout"]), int(r["k"]),
                                                          tuple(size[-2:])).macs_ratio)
        out.append(MeasuredConv(run=str(r.get("run") or r.get("label") or ""), in_channels=int(r["cin"]),
                                out_channels=int(r["cout"]), kernel=int(r["k"]), size=tuple(size),
                                mac_speedup=1 / float(ratio), measured_speedup=float(r["measured_speedup"]),
                                noisy=bool(r.get("wide_spread") or r.get("standard_wide_spread"))))
    return tuple(out)
