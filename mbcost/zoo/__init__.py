"""The model zoo: architectures as data (the papers' tables), one builder each, a registry."""

from mbcost.zoo.catalog import get_entry, list_models
from mbcost.zoo.registry import ModelEntry, Reported, register_model
from mbcost.zoo.spec import ModelSpec, build_model, parse_input, parse_models, parse_spec

__all__ = [
    "ModelEntry", "ModelSpec", "Reported", "build_model", "get_entry", "list_models", "parse_input",
    "parse_models", "parse_spec", "register_model",
]
