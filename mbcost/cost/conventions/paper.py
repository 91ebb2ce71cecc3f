"""``paper``: the MobileNet papers' Mult-Adds: multiply-accumulates of convolutions, matrix products and
attention products, bias excluded. Everything else is elementwise work, reported apart."""

from __future__ import annotations

from mbcost.cost.conventions.attention import SDPA
from mbcost.cost.conventions.base import Charge, Convention, Unit, macs
from mbcost.cost.conventions.groups import ATTENTION_OPS, CONV_OPS, MATMUL_OPS
from mbcost.cost.result import LayerCost

__all__ = ["PAPER"]

_MULT_ADDS = macs("multiply-accumulates (the papers' Mult-Adds)")


def _not_mult_add(layer: LayerCost) -> Charge:
    return Charge(counted=False, reason="not a Mult-Add: reported apart as elementwise ops")


PAPER = Convention(
    name="paper", unit=Unit.MAC, library_unit="MACs",
    summary="MACs of conv and linear layers, bias excluded (the papers' Mult-Adds)",
    table={op: _MULT_ADDS for op in (*CONV_OPS, *MATMUL_OPS, *ATTENTION_OPS, SDPA)},
    default=_not_mult_add,
)
