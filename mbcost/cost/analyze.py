"""``analyze``: the analytic cost of a zoo model or any ``nn.Module``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mbcost.cost.result import ModelCost
from mbcost.cost.shapes import Unsupported, interpret_model
from mbcost.cost.walker import trace_model
from mbcost.errors import SpecError
from mbcost.zoo.spec import DTYPES, ModelSpec, check_input_fits, meta_model, meta_structure, parse_input, parse_spec

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

MAX_BATCH = 1 << 20


def analyze(
    model: str | ModelSpec | nn.Module,
    input_size: int | str | tuple[int, int] = 224,
    batch: int = 1,
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    dtype: str = "float32",
    name: str | None = None,
) -> ModelCost:
    """Analytic cost of ``model`` on a ``batch x in_channels x H x W`` input.

    Nothing is allocated: the forward pass runs on the meta device. A user's module is read,
    never changed.

    Args:
        model: a zoo spec (``"v2"``, ``"v1@0.75"``), ``"package.module:factory"``, or a module.
        input_size: ``224``, ``"224x160"`` or ``(H, W)``.
        batch: batch size (costs scale linearly; parameters do not).
        num_classes: classifier outputs for zoo models.
        in_channels: input channels.
        dtype: element type for byte counts (``float32``, ``float16``, ``bfloat16``, ``float64``).
        name: label for a module passed directly (default: its class name).

    Returns:
        A ``ModelCost`` with ``.params``, ``.macs``, ``.flops``, ``.layers`` and ``.to_frame()``.

    Example:
        >>> cost = analyze("v2", 224)
        >>> cost.params
        3504872
    """
    import torch

    size = parse_input(input_size)
    if not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise SpecError(f"batch must be an integer in 1..{MAX_BATCH} (got {batch!r})")
    if dtype not in DTYPES:
        raise SpecError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if in_channels < 1:
        raise SpecError(f"in_channels must be >= 1 (got {in_channels})")
    width: float | None = None
    structure = None
    if isinstance(model, (str, ModelSpec)):
        spec = parse_spec(model) if isinstance(model, str) else model
        check_input_fits(spec, size)
        if spec.factory:
            from mbcost.zoo.spec import build_model

            module = _build_user_model(spec, build_model)
        else:
            module = meta_model(spec, num_classes, dtype)
            structure = meta_structure(spec, num_classes, dtype)
        model_name, width = spec.name, spec.width
    else:
        module, model_name = model, name or type(model).__name__
    x = torch.empty(batch, in_channels, *size, device="meta", dtype=getattr(torch, dtype))
    try:
        trace = interpret_model(module, tuple(x.shape), x.element_size(), structure)
    except Unsupported as why:
        log.debug("shape interpreter cannot follow %s (%s); tracing on the meta device", model_name, why)
        trace = trace_model(module, x)
    return ModelCost(
        name=model_name,
        width=width,
        input=size,
        batch=batch,
        in_channels=in_channels,
        dtype=dtype,
        dtype_bytes=x.element_size(),
        params=trace.params,
        layers=tuple(trace.layers),
        unattributed_params=trace.unattributed_params,
        uncounted=tuple(trace.uncounted),
    )


def _build_user_model(spec: ModelSpec, build_model) -> nn.Module:  # noqa: ANN001
    """Build a user's factory on the meta device when it allows it, else normally."""
    from mbcost.errors import MbcostError

    try:
        return build_model(spec, device="meta")
    except MbcostError:
        return build_model(spec)
