"""ptflops' ``get_model_complexity_info``, default backend (``pytorch`` in ptflops 0.7.5).

ptflops adds methods and counters to the module it counts and, for the duration of a count,
replaces ``torch.nn.functional`` and ``torch`` functions with counting wrappers (its own global
patching, undone when it returns); ``measure`` runs it on a deep copy of a caller's module. Its
total counts MACs plus the elementwise ops of its rules, module hooks averaged over the batch
(see :mod:`mbcost.cost.conventions.ptflops`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mbcost.counters.adapter import RawCount, require

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ABOUT", "BACKEND", "MUTATES", "NAME", "UNIT", "check_available", "count", "count_with"]

NAME = "ptflops"
ABOUT = "its default pytorch backend"
UNIT = "MACs + counted elementwise ops (ptflops' MACs)"
MUTATES = True
BACKEND = "pytorch"


def check_available() -> None:
    require("ptflops", "ptflops")


def count_with(backend: str, model: nn.Module, args: tuple[torch.Tensor, ...]) -> RawCount:
    """ptflops' total with ``backend`` on ``model``, called with the one positional input ``args[0]``."""
    from importlib.metadata import version

    from mbcost.errors import AnalysisError, SpecError

    require("ptflops", "ptflops")
    from ptflops import get_model_complexity_info

    if len(args) != 1:
        raise SpecError("ptflops takes one positional input (its input_constructor passes one tensor); "
                        f"got {len(args)}")
    x = args[0]
    total, _params = get_model_complexity_info(model, tuple(x.shape[1:]), print_per_layer_stat=False,
                                               as_strings=False, input_constructor=lambda _shape: x,
                                               backend=backend, verbose=False)
    if total is None:  # ptflops catches the exception, prints it and returns (None, None)
        raise AnalysisError(f"ptflops ({backend} backend) failed on this model (it printed the exception)")
    return RawCount(total=total, by_op={}, unsupported={}, version=version("ptflops"),
                    notes=[f"backend={backend}; ptflops gives no per-op breakdown through its API"])


def count(model: nn.Module, args: tuple[torch.Tensor, ...]) -> RawCount:
    """ptflops' total with its default backend."""
    return count_with(BACKEND, model, args)
