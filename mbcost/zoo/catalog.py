"""The zoo's models by name: loads the model files (importing one registers it) and answers lookups."""

from __future__ import annotations

from mbcost.errors import UnknownModelError
from mbcost.zoo.registry import ModelEntry, registered

__all__ = ["get_entry", "list_models"]


def list_models() -> list[str]:
    """Names of every model in the zoo, sorted."""
    _ensure_loaded()
    return sorted(registered())  # registration order depends on which model file was imported first


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name`` (or an alias); names what exists when it is unknown."""
    _ensure_loaded()
    entries = registered()
    key = name.strip().lower()
    key = next((e.name for e in entries.values() if key in e.aliases), key)
    if key not in entries:
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {', '.join(sorted(entries))} "
            "(or a 'package.module:factory' path to your own)"
        )
    return entries[key]


def _ensure_loaded() -> None:
    # Importing the model files registers them; kept lazy so that importing the zoo is cheap (no torch).
    from mbcost.zoo import mobilenet_v1, mobilenet_v2, vgg  # noqa: F401
