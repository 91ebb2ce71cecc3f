"""Typed errors. The CLI turns every ``MbcostError`` into one line on stderr and exit status 2."""

from __future__ import annotations

__all__ = [
    "AnalysisError", "BaselineError", "MbcostError", "SpecError", "UnknownModelError", "UsageError", "first_line",
]


class MbcostError(Exception):
    """Base class of every error mbcost raises on purpose (bad input, unsupported model)."""

    exit_code: int = 2


class UsageError(MbcostError):
    """The caller asked for something that cannot be done as asked (a usage problem)."""


class UnknownModelError(UsageError):
    """A model spec names nothing in the zoo and is not an importable ``module:factory``."""


class SpecError(UsageError):
    """A model spec, width, input size or other option is malformed or out of range."""


class AnalysisError(MbcostError):
    """The model could not be traced with the requested input (too small, wrong channels...)."""


class BaselineError(UsageError):
    """A gate baseline is missing, unreadable, malformed or from another schema version."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type's name when it has none), cut at ``limit`` characters:
    what a one-line error quotes."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()[:limit]
