"""The model zoo: architectures as data (the papers' tables), one builder each, a registry; and model sources
(``mbcost.zoo.spec``): every way to name a model, the zoo's and other libraries', resolved once."""

from typing import Any

from mbcost.zoo.catalog import get_entry, list_models
from mbcost.zoo.registry import ModelEntry, Reported, register_model
from mbcost.zoo.spec import ModelSource, build_model, parse_input, resolve_source, resolve_sources

__all__ = [
    "ModelEntry", "ModelSource", "Reported", "build_model", "get_entry", "list_models", "parse_input",
    "register_model", "resolve_source", "resolve_sources",
]


def __getattr__(name: str) -> Any:  # the former names (ModelSpec, parse_spec, parse_models), with a warning
    from mbcost.zoo import spec

    return getattr(spec, name)
