"""fvcore's ``FlopCountAnalysis`` (torch.jit tracing; one "flop" per multiply-accumulate)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mbcost.counters.adapter import RawCount, require

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ABOUT", "MUTATES", "NAME", "UNIT", "check_available", "count"]

NAME = "fvcore"
ABOUT = "FlopCountAnalysis"
UNIT = "MACs (fvcore calls them flops)"
MUTATES = False  # it traces the module with temporary hooks that it removes


def check_available() -> None:
    require("fvcore", "fvcore")


def count(model: nn.Module, args: tuple[torch.Tensor, ...]) -> RawCount:
    """fvcore's total, per-operator counts and unsupported ops (op name -> calls)."""
    fvcore = require("fvcore", "fvcore")
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, args)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    total = analysis.total()
    return RawCount(total=total, by_op=dict(analysis.by_operator()), unsupported=dict(analysis.unsupported_ops()),
                    version=getattr(fvcore, "__version__", "unknown"))
