"""Accuracy against cost: the published ImageNet top-1 of each model next to its counted MACs.

Quoted accuracies (never measured by mbcost), each with its source:

* MobileNetV1 at the width x resolution points of Howard et al. 2017, Table 6 (widths 1.0, 0.75,
  0.5, 0.25 at 224) and Table 7 (width 1.0 at 224, 192, 160, 128).
* MobileNetV2 at width 1.0 and 1.4, 224: Sandler et al. 2018, Table 4; at the other published
  widths and resolutions: the checkpoint table the authors released with the paper (TF-slim
  ``research/slim/nets/mobilenet/README.md``), whose 1.0/224 entry (71.8%) differs from Table 4's
  72.0%, which is used here.
* VGG16 and GoogLeNet: Howard et al. 2017, Table 8.

MACs are counted by the cost engine: the zoo's models, and GoogLeNet as torchvision builds it
(when torchvision is installed; otherwise the paper's quoted 1550M stands in, marked as quoted).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FrontierPoint", "QuotedAccuracy", "QUOTED_ACCURACY", "frontier_points"]

V1_TABLE6 = "Howard et al. 2017, MobileNets, Table 6"
V1_TABLE7 = "Howard et al. 2017, MobileNets, Table 7"
V1_TABLE8 = "Howard et al. 2017, MobileNets, Table 8"
V2_TABLE4 = "Sandler et al. 2018, MobileNetV2, Table 4"
V2_CHECKPOINTS = ("Sandler et al. 2018, released checkpoints (TF-slim mobilenet README, "
                  "mobilenet_v2_{width}_{resolution})")


@dataclass(frozen=True)
class QuotedAccuracy:
    """A published ImageNet top-1 for one model at one width and resolution."""

    family: str
    spec: str
    resolution: int
    top1: float
    source: str
    quoted_macs_millions: float | None = None


def _v2(width: float, resolution: int, top1: float, macs: float) -> QuotedAccuracy:
    spec = "v2" if width == 1.0 else f"v2@{width:g}"
    return QuotedAccuracy("MobileNetV2", spec, resolution, top1,
                          V2_CHECKPOINTS.format(width=f"{width:g}" if width != 1.0 else "1.0", resolution=resolution),
                          macs)


QUOTED_ACCURACY: tuple[QuotedAccuracy, ...] = (
    # MobileNetV1: Table 6 (width at 224) and Table 7 (resolution at width 1.0); 1.0/224 is in both.
    QuotedAccuracy("MobileNetV1", "v1", 224, 70.6, f"{V1_TABLE6} and Table 7", 569),
    QuotedAccuracy("MobileNetV1", "v1@0.75", 224, 68.4, V1_TABLE6, 325),
    QuotedAccuracy("MobileNetV1", "v1@0.5", 224, 63.7, V1_TABLE6, 149),
    QuotedAccuracy("MobileNetV1", "v1@0.25", 224, 50.6, V1_TABLE6, 41),
    QuotedAccuracy("MobileNetV1", "v1", 192, 69.1, V1_TABLE7, 418),
    QuotedAccuracy("MobileNetV1", "v1", 160, 67.2, V1_TABLE7, 290),
    QuotedAccuracy("MobileNetV1", "v1", 128, 64.4, V1_TABLE7, 186),
    # MobileNetV2: Table 4 at 224 for 1.0 and 1.4, the released checkpoints elsewhere.
    QuotedAccuracy("MobileNetV2", "v2@1.4", 224, 74.7, V2_TABLE4, 585),
    _v2(1.3, 224, 74.4, 509),
    QuotedAccuracy("MobileNetV2", "v2", 224, 72.0, V2_TABLE4, 300),
    _v2(1.0, 192, 70.7, 221), _v2(1.0, 160, 68.8, 154), _v2(1.0, 128, 65.3, 99), _v2(1.0, 96, 60.3, 56),
    _v2(0.75, 224, 69.8, 209), _v2(0.75, 192, 68.7, 153), _v2(0.75, 160, 66.4, 107), _v2(0.75, 128, 63.2, 69),
    _v2(0.75, 96, 58.8, 39),
    _v2(0.5, 224, 65.4, 97), _v2(0.5, 192, 63.9, 71), _v2(0.5, 160, 61.0, 50), _v2(0.5, 128, 57.7, 32),
    _v2(0.5, 96, 51.2, 18),
    _v2(0.35, 224, 60.3, 59), _v2(0.35, 192, 58.2, 43), _v2(0.35, 160, 55.7, 30), _v2(0.35, 128, 50.8, 20),
    _v2(0.35, 96, 45.5, 11),
    QuotedAccuracy("VGG16", "vgg16", 224, 71.5, V1_TABLE8, 15300),
    QuotedAccuracy("GoogLeNet", "googlenet", 224, 69.8, V1_TABLE8, 1550),
)


@dataclass(frozen=True)
class FrontierPoint:
    """One model at one resolution: quoted top-1 and its MACs (counted, or quoted when ``counted`` is False)."""

    family: str
    label: str
    spec: str
    resolution: int
    top1: float
    source: str
    macs: int | float
    params: int | float
    counted: bool
    quoted_macs_millions: float | None


def _googlenet_cost(resolution: int):  # noqa: ANN202  (a ModelCost, or None without torchvision)
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return None
    import torch
    import torchvision

    from mbcost.cost.analyze import analyze

    with torch.device("meta"):
        model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    return analyze(model.eval(), resolution, name="googlenet")


def frontier_points(quoted: tuple[QuotedAccuracy, ...] = QUOTED_ACCURACY) -> tuple[FrontierPoint, ...]:
    """Count every quoted model at its resolution (batch 1) and pair it with its quoted top-1."""
    from mbcost.cost.analyze import analyze

    out = []
    for q in quoted:
        cost = _googlenet_cost(q.resolution) if q.spec == "googlenet" else analyze(q.spec, q.resolution)
        label = f"{q.spec}/{q.resolution}" if q.spec != "googlenet" else f"GoogLeNet/{q.resolution}"
        # without torchvision, GoogLeNet's quoted MACs and parameters (6.8 M, Howard et al. 2017, Table 8)
        macs, params = (cost.macs, cost.params) if cost else ((q.quoted_macs_millions or 0) * 1e6, 6.8e6)
        out.append(FrontierPoint(q.family, label, q.spec, q.resolution, q.top1, q.source, macs, params,
                                 cost is not None, q.quoted_macs_millions))
    return tuple(out)
