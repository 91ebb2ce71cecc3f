"""Lazy public names: a package's ``__getattr__`` that imports each name from its home module on first use, so
that importing the package (and ``mbcost --help``) stays instant. A leaf: no mbcost imports."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``homes`` maps each public name to the module that defines it (a name
    whose home is the subpackage of that name, ``package.name``, is the subpackage itself, as it is once imported)."""

    def __getattr__(name: str) -> Any:
        if name in homes:
            module = importlib.import_module(homes[name])
            return module if homes[name] == f"{package}.{name}" else getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
