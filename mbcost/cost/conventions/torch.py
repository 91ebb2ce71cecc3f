"""``torch``: ``torch.utils.flop_counter.FlopCounterMode``: FLOPs, 2 per MAC, of convolutions and matrix
products (``mm``, ``addmm``, ``bmm``, ``baddbmm``), bias ignored; nothing else. ``nn.MultiheadAttention``'s
fused eval path (``_native_multi_head_attention``) has no formula there: 0."""

from __future__ import annotations

from mbcost.cost.conventions.base import Charge, Convention, Unit, macs
from mbcost.cost.conventions.fvcore import MHA_FAST_PATH, fast_path_lookup, multi_head_attention_fast_path
from mbcost.cost.conventions.groups import CONV_OPS, MATMUL_OPS
from mbcost.cost.result import LayerCost

__all__ = ["TORCH"]


def _no_formula(layer: LayerCost) -> Charge:
    return Charge(counted=False, reason="FlopCounterMode counts only convolutions and matrix products")


TORCH = Convention(
    name="torch", unit=Unit.FLOP, library_unit="FLOPs (2 per MAC)",
    summary="torch FlopCounterMode: FLOPs = 2 x MACs of convolutions and matrix products only",
    table={**dict.fromkeys((*CONV_OPS, *MATMUL_OPS), macs("2 FLOPs per MAC, bias ignored")),
           MHA_FAST_PATH: multi_head_attention_fast_path("FlopCounterMode")},
    default=_no_formula, lookup=fast_path_lookup,
)
