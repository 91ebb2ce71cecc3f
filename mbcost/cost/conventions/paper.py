"""``paper``: the MobileNet papers' Mult-Adds: multiply-accumulates of convolutions, matrix products and
attention products, bias excluded, and those a user's formula gives a custom op. Everything else is
elementwise work, reported apart. Looked up by the record's kind."""

from __future__ import annotations

from mbcost.cost.conventions.base import Charge, Convention, Unit, macs
from mbcost.cost.result import LayerCost

__all__ = ["PAPER"]

_MULT_ADDS = macs("multiply-accumulates (the papers' Mult-Adds)")


def _not_mult_add(layer: LayerCost) -> Charge:
    if layer.kind == "custom":
        return Charge(macs=layer.macs, counted=bool(layer.macs),
                      reason=f"{layer.op}: the MACs of its registered formula; its elementwise ops apart")
    return Charge(counted=False, reason="not a Mult-Add: reported apart as elementwise ops")


PAPER = Convention(
    name="paper", unit=Unit.MAC, library_unit="MACs",
    summary="MACs of conv and linear layers, bias excluded (the papers' Mult-Adds)",
    table=dict.fromkeys(("conv", "matmul", "attention"), _MULT_ADDS),
    default=_not_mult_add, lookup=lambda layer: layer.kind,
)
