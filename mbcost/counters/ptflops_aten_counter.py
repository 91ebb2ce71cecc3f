"""ptflops' ``get_model_complexity_info`` with ``backend="aten"``: a dispatch mode counting convolution,
``addmm``, ``mm`` and ``bmm`` MACs (bias adds included). It registers forward hooks on the module's
children and leaves them there, so ``measure`` runs it on a deep copy of a caller's module."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mbcost.counters.ptflops_counter import check_available, count_with

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mbcost.counters.adapter import RawCount

__all__ = ["ABOUT", "BACKEND", "MUTATES", "NAME", "UNIT", "check_available", "count"]

NAME = "ptflops-aten"
ABOUT = "ptflops' aten backend"
UNIT = "MACs + conv/addmm bias adds (ptflops' MACs, aten backend)"
MUTATES = True
BACKEND = "aten"


def count(model: nn.Module, args: tuple[torch.Tensor, ...]) -> RawCount:
    """ptflops' total with its aten backend."""
    return count_with(BACKEND, model, args)
