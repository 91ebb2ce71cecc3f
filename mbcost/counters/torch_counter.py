"""PyTorch's ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-accumulate)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mbcost.counters.adapter import RawCount

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ABOUT", "MUTATES", "NAME", "UNIT", "check_available", "count"]

NAME = "torch"
ABOUT = "FlopCounterMode"
UNIT = "FLOPs (2 per MAC)"
MUTATES = False  # a dispatch mode plus module-tracker hooks it removes on exit


def check_available() -> None:
    """torch is a core dependency; FlopCounterMode exists from torch 2.1."""
    from mbcost.counters.adapter import require

    require("torch.utils.flop_counter", "torch's FlopCounterMode (torch >= 2.1)")


def count(model: nn.Module, args: tuple[torch.Tensor, ...]) -> RawCount:
    """FlopCounterMode's total and its per-ATen-op counts for the whole model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(*args)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return RawCount(total=counter.get_total_flops(), by_op=by_op, unsupported={}, version=torch.__version__,
                    notes=["FlopCounterMode counts only ops with a registered formula; it lists no others"])
