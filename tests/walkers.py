"""Shared check: the pure-shape interpreter and the meta-device tracer give identical records."""

import dataclasses

import torch

from mbcost.cost.shapes import interpret_model
from mbcost.cost.walker import trace_model


def walk_both(model: torch.nn.Module, x: torch.Tensor):
    """Both walks of ``model`` on meta input ``x``; asserts their records agree (``op`` aside)."""
    fast = interpret_model(model, tuple(x.shape), x.element_size())
    traced = trace_model(model, x)

    def strip(layer):
        d = dataclasses.asdict(layer)
        d.pop("op")  # the ATen name differs by torch version; everything else must match
        return d

    assert [strip(r) for r in fast.layers] == [strip(r) for r in traced.layers]
    return fast, traced
