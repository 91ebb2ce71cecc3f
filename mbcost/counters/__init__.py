"""External counters (fvcore, thop, torch's FlopCounterMode, ptflops with either backend), run on the real
module, and their reconciliation with the analytic engine.

    from mbcost.counters import measure, reconcile
    result = measure("fvcore", "v2", 224)           # fvcore's own total, on a real CPU forward
    rec = reconcile(mbcost.analyze("v2"), result)   # why it differs from the paper's MACs

fvcore, thop and ptflops are optional: ``pip install 'mbcost[counters]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mbcost.lazy import lazy_getattr

if TYPE_CHECKING:
    from mbcost.counters.base import COUNTERS, CounterResult, CounterUnavailable, measure, measure_many
    from mbcost.counters.reconciliation import Reconciliation, reconcile, reconcile_model

_LAZY = {
    "COUNTERS": "mbcost.counters.base",
    "CounterResult": "mbcost.counters.base",
    "CounterUnavailable": "mbcost.counters.base",
    "measure": "mbcost.counters.base",
    "measure_many": "mbcost.counters.base",
    "parse_counters": "mbcost.counters.base",
    "Reconciliation": "mbcost.counters.reconciliation",
    "reconcile": "mbcost.counters.reconciliation",
    "reconcile_model": "mbcost.counters.reconciliation",
}

__all__ = ["COUNTERS", "CounterResult", "CounterUnavailable", "Reconciliation", "measure", "measure_many",
           "parse_counters", "reconcile", "reconcile_model"]

__getattr__ = lazy_getattr(__name__, _LAZY)
