"""What every counter adapter module shares: the raw result it returns and how it imports its library.

An adapter module (``fvcore_counter``, ...) declares ``NAME`` (what the CLI and the API call it), ``ABOUT`` (a few
words for the help), ``UNIT``, ``MUTATES`` (whether the library changes the module it counts: it gets a copy),
``check_available()`` and ``count(model, args) -> RawCount``; ``mbcost.counters.base.ADAPTERS`` lists them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from mbcost.errors import MbcostError

__all__ = ["CounterUnavailable", "RawCount", "require"]


class CounterUnavailable(MbcostError):
    """An optional counter library is not installed."""


@dataclass
class RawCount:
    """What an adapter's ``count`` returns; ``measure`` wraps it into a ``CounterResult``."""

    total: int | float
    by_op: dict[str, int | float]
    unsupported: dict[str, int]
    version: str
    notes: list[str] = field(default_factory=list)


def require(module: str, counter: str) -> Any:
    """Import an optional library, or fail with how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CounterUnavailable(f"{counter} is not installed; pip install 'mbcost[counters]'") from None
