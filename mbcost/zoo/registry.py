"""The model registry: names -> builders, plus what the papers report about each model.

The model files import this module to register themselves; it imports none of them (``mbcost.zoo.catalog``
loads them and answers lookups), so the zoo imports one way."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ModelEntry", "Reported", "register_model", "registered"]


@dataclass(frozen=True)
class Reported:
    """Figures a paper reports for a model (quoted, never measured by mbcost)."""

    top1: float | None
    macs_millions: float | None
    params_millions: float | None
    source: str


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    total_stride: int
    supports_width: bool
    reported: Reported | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add ``entry`` to the zoo; refuses a name or alias that is already taken."""
    taken = {key for e in _REGISTRY.values() for key in (e.name, *e.aliases)}
    for key in (entry.name, *entry.aliases):
        if key in taken:
            raise ValueError(f"model name {key!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def registered() -> Mapping[str, ModelEntry]:
    """Every entry registered so far, by name (read-only). ``mbcost.zoo.catalog`` loads the zoo's model files."""
    return MappingProxyType(_REGISTRY)
