"""The model registry: names -> builders, plus what the papers report about each model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mbcost.errors import UnknownModelError

if TYPE_CHECKING:
    from torch import nn


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
_ALIASES: dict[str, str] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add ``entry`` to the zoo; refuses a name or alias that is already taken."""
    for key in (entry.name, *entry.aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model name {key!r} is already registered")
    _REGISTRY[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name
    return entry


def list_models() -> list[str]:
    """Names of every model in the zoo, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)  # registration order depends on which model file was imported first


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name`` (or an alias); names what exists when it is unknown."""
    _ensure_loaded()
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))} "
            "(or a 'package.module:factory' path to your own)"
        )
    return _REGISTRY[key]


def _ensure_loaded() -> None:
    # Importing the model files registers them; kept lazy so that importing the registry is cheap.
    from mbcost.zoo import mobilenet_v1, mobilenet_v2, vgg  # noqa: F401
