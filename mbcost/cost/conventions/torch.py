"""``torch``: ``torch.utils.flop_counter.FlopCounterMode`` on the CPU: FLOPs, 2 per MAC, of convolutions and
matrix products (``mm``, ``addmm``, ``bmm``, ``baddbmm``), bias ignored; nothing else.

The preset counts what FlopCounterMode counts on the device the model runs on for mbcost's counters, the
CPU, whichever path the engine traced (:mod:`.attention`). There ``F.scaled_dot_product_attention`` runs
as one fused kernel, ``aten::_scaled_dot_product_flash_attention_for_cpu``, which FlopCounterMode has no
formula for up to torch 2.14 (pytorch/pytorch#195460, fixed by #195801): its products count 0, under
the ``scaled_dot_product_attention`` component, on the meta path as on a real CPU run. With a torch whose
FlopCounterMode has that formula (checked in ``torch.utils.flop_counter.flop_registry``), they count
2 FLOPs per MAC, as on CUDA, where the flash, memory-efficient and cuDNN kernels have one. SDPA with
dropout (or another case of :mod:`.attention`) runs its math path on the CPU: its ``bmm`` products count.
``nn.MultiheadAttention``'s fused eval path (``_native_multi_head_attention``) has no formula either: 0; nor
has ``nn.LSTM`` run as oneDNN's ``mkldnn_rnn_layer``, as the CPU runs it (while oneDNN is enabled): 0 (GRU and
RNN run as their products)."""

from __future__ import annotations

from mbcost.cost.conventions.attention import (
    CPU_SDPA,
    CUDA_SDPA,
    SDPA,
    SDPA_ISSUE,
    flop_counter_counts_cpu_sdpa,
    sdpa_uncounted,
)
from mbcost.cost.conventions.base import Charge, Convention, Handler, Unit, macs
from mbcost.cost.conventions.fvcore import (
    MHA_FAST_PATH,
    RECURRENT,
    fast_path_lookup,
    multi_head_attention_fast_path,
    recurrent,
)
from mbcost.cost.result import LayerCost

__all__ = ["TORCH"]


def _no_formula(layer: LayerCost) -> Charge:
    if layer.kind == "custom":
        return Charge(counted=False, reason=f"FlopCounterMode has no formula for {layer.op} (unless given one in "
                                            "its custom_mapping)")
    return Charge(counted=False, reason="FlopCounterMode counts only convolutions and matrix products")


_cpu_sdpa_zero = sdpa_uncounted(
    f"on the CPU F.scaled_dot_product_attention runs as aten::{CPU_SDPA}, which this torch's FlopCounterMode "
    f"has no formula for ({SDPA_ISSUE}): 0")


def _sdpa_products(layer: LayerCost) -> Charge:
    return Charge(macs=layer.macs, component=SDPA, reason="FlopCounterMode's SDPA formula: both attention products, "
                                                          "2 FLOPs per MAC")


def _cpu_sdpa(layer: LayerCost) -> Charge:
    return _sdpa_products(layer) if flop_counter_counts_cpu_sdpa() else _cpu_sdpa_zero(layer)


_TABLE: dict[str, Handler | None] = {
    **dict.fromkeys(("conv", "products", "biased_products", "linear"), macs("2 FLOPs per MAC, bias ignored")),
    SDPA: _cpu_sdpa, CPU_SDPA: _cpu_sdpa, **dict.fromkeys(CUDA_SDPA, _sdpa_products),
    MHA_FAST_PATH: multi_head_attention_fast_path("FlopCounterMode")}
_TABLE[RECURRENT] = recurrent("FlopCounterMode", _TABLE, _no_formula)

TORCH = Convention(
    name="torch", unit=Unit.FLOP, library_unit="FLOPs (2 per MAC)",
    summary="torch FlopCounterMode on the CPU: FLOPs = 2 x MACs of convolutions and matrix products only; "
            "scaled_dot_product_attention as its CPU kernel counts there (0 up to torch 2.14)",
    table=_TABLE, default=_no_formula, lookup=fast_path_lookup,
)
