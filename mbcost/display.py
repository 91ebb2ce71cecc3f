"""Rich display of results in notebooks (``_repr_html_``), without an upward import.

A result class (``ModelCost``, ``Comparison``, a bench record, ``Reconciliation``...) lives in a lower
layer than ``mbcost.render``, which makes its HTML; ``tests/test_layers.py`` forbids the result's module
to import render, even inside a function. So the results ask this leaf module, and render registers
its HTML makers here: ``mbcost.render.html`` calls ``register_html(ModelCost, ...)`` when it is
imported, and the package's ``__init__`` (the top layer, which may import render) installs the loader
that imports it the first time a result is displayed. Nothing heavy is imported before then.

A result's ``_repr_html_`` is one line: ``return display.html(self)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["html", "register_html", "set_loader"]

_MAKERS: dict[type, Callable[[Any], str]] = {}
_loader: Callable[[], None] | None = None


def register_html(cls: type, maker: Callable[[Any], str]) -> None:
    """Make ``maker(obj)`` the HTML of every ``cls`` instance (and of its subclasses without their own)."""
    _MAKERS[cls] = maker


def set_loader(loader: Callable[[], None]) -> None:
    """``loader()`` registers the makers (by importing the module that does); it runs once, when a result
    is first displayed."""
    global _loader
    _loader = loader


def _maker(cls: type) -> Callable[[Any], str] | None:
    return next((_MAKERS[c] for c in cls.__mro__ if c in _MAKERS), None)


def html(obj: Any) -> str | None:
    """The HTML table of ``obj``, or ``None`` (Jupyter then shows its text repr) when no maker knows it."""
    global _loader
    maker = _maker(type(obj))
    if maker is None and _loader is not None:
        load, _loader = _loader, None
        load()
        maker = _maker(type(obj))
    return None if maker is None else maker(obj)
