"""``analyze``: the analytic cost of a zoo model or any ``nn.Module``, on any inputs."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from mbcost.cost.precision import INT8_FLOAT_BYTES, PRECISIONS, int8_weight_bytes
from mbcost.cost.result import ModelCost
from mbcost.cost.walker import trace_model
from mbcost.errors import SpecError
from mbcost.inputs import resolve_inputs
from mbcost.zoo.spec import DTYPES, ModelSpec, check_input_fits, meta_model, parse_spec

if TYPE_CHECKING:
    from torch import nn

    from mbcost.cost.records import Structure

log = logging.getLogger(__name__)


def analyze(
    model: str | ModelSpec | nn.Module,
    inputs: Any = None,
    batch: int = 1,
    *,
    input_size: Any = None,
    num_classes: int = 1000,
    in_channels: int = 3,
    dtype: str = "float32",
    input_dtype: str | None = None,
    execute: str = "auto",
    mode: str = "inference",
    optimizer: str = "sgd",
    name: str | None = None,
    precision: str = "float32",
) -> ModelCost:
    """Analytic cost of ``model`` on ``inputs``.

    Nothing is allocated: the forward pass runs on the meta device (``execute="meta"``). A
    data-dependent forward (detection models, ``if x.sum() > 0``) falls back under ``"auto"`` to a
    real CPU forward with random inputs, and the result says so (``cost.execution == "real"``).
    A user's module is read, never changed.

    Args:
        model: a zoo spec (``"v2"``, ``"v1@0.75"``), ``"package.module:factory"``, or a module.
        inputs: ``224`` or ``"224x160"`` (an image: ``batch x in_channels x H x W``); a full shape
            ``(1, 3, 16, 112, 112)`` or ``[1, 128]``; a tensor (shape and dtype only; with
            ``requires_grad=True``, ``mode="train"`` costs its gradient too); a tuple of
            these for several positional inputs; a dict for keyword inputs. Default 224.
        batch: batch size of the image shorthand (costs scale linearly; parameters do not).
        input_size: the former name of ``inputs`` (an image size), still accepted.
        num_classes: classifier outputs for zoo models.
        in_channels: channels of the image shorthand.
        dtype: element type of the model (and of image inputs) for byte counts: ``float32``,
            ``float16``, ``bfloat16``, ``float64``.
        input_dtype: element type of the inputs when it differs (``int64`` token ids).
        execute: ``auto`` (meta, real CPU forward when an op needs data), ``meta`` or ``real``.
        mode: ``inference`` (eval forward) or ``train``: a training step's forward in train mode, its
            backward (``backward_macs``...) and the optimizer's update (``mbcost.cost.training``).
        optimizer: for ``mode="train"``: ``sgd``, ``momentum``, ``adam`` or ``adamw``.
        name: label for a module passed directly (default: its class name).
        precision: ``float32`` or ``int8``: the bytes of a runtime's statically quantized int8 model
            (int8 weights with per-output-channel scales, int8 activations; the rule is
            ``mbcost.cost.precision``'s). MACs are unchanged. int8 analyses a float32 model, in inference.

    Returns:
        A ``ModelCost`` with ``.params``, ``.macs``, ``.flops``, ``.layers`` and ``.to_frame()``.

    Example:
        >>> cost = analyze("v2", 224)
        >>> cost.params
        3504872
        >>> analyze("v1", (2, 3, 160, 160)).macs == 2 * analyze("v1", 160).macs
        True
    """
    if inputs is not None and input_size is not None:
        raise SpecError("give inputs or input_size, not both")
    value = input_size if inputs is None else inputs
    if dtype not in DTYPES:
        raise SpecError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    from mbcost.cost.training import MODES, OPTIMIZERS

    if mode not in MODES:
        raise SpecError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if optimizer not in OPTIMIZERS:
        raise SpecError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    train = mode == "train"
    _check_precision(precision, dtype, mode)
    int8 = precision == "int8"
    resolved = resolve_inputs(224 if value is None else value, batch=batch, in_channels=in_channels,
                              dtype=input_dtype or dtype)
    width: float | None = None
    structure = None
    materialize = None
    if isinstance(model, (str, ModelSpec)):
        spec = parse_spec(model) if isinstance(model, str) else model
        if resolved.image_size is not None:
            check_input_fits(spec, resolved.image_size)
        if spec.factory:
            module = build_user_model(spec, dtype)
            materialize = _real_builder(spec, num_classes)
        else:
            module, structure = _zoo_model(spec, num_classes, dtype)
            materialize = _real_builder(spec, num_classes)
        model_name, width = spec.name, spec.width
    else:
        module, model_name = model, name or type(model).__name__
    trace = trace_model(module, resolved, execute=execute, structure=structure, materialize=materialize,
                        train=train, float_bytes=INT8_FLOAT_BYTES if int8 else None)
    return ModelCost(
        name=model_name,
        width=width,
        input=resolved.image_size or resolved.first.shape,
        batch=resolved.batch,
        in_channels=resolved.first.shape[1] if resolved.image_size else 0,
        dtype=dtype,
        dtype_bytes=_dtype_bytes(dtype),
        params=trace.params,
        layers=tuple(trace.layers),
        unattributed_params=trace.unattributed_params,
        uncounted=tuple(trace.uncounted),
        inputs=resolved.all,
        execution=trace.execution,
        execution_note=trace.fallback_reason,
        buffers=trace.buffers,
        nonfloat_buffers=trace.nonfloat_buffers,
        nonfloat_buffer_bytes=trace.nonfloat_buffer_bytes,
        peak_activation_bytes=trace.peak_activation_bytes,
        peak_op=trace.peak_op,
        mode=mode,
        optimizer=optimizer if train else None,
        trainable_params=trace.trainable_params,
        train_peak_activation_bytes=trace.train_peak_activation_bytes,
        train_peak_op=trace.train_peak_op,
        unpriced_params=tuple(trace.unpriced_params),
        precision=precision,
        quantized_weight_bytes=int8_weight_bytes(module) if int8 else None,
    )


def _check_precision(precision: str, dtype: str, mode: str) -> None:
    if precision not in PRECISIONS:
        raise SpecError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and dtype != "float32":
        raise SpecError(f"--precision int8 quantizes a float32 model: drop --dtype {dtype} (the float types go on "
                        "--dtype, int8 on --precision)")
    if precision == "int8" and mode != "inference":
        raise SpecError("--precision int8 is an inference analysis (static post-training quantization): "
                        "drop --mode train")


@lru_cache(maxsize=32)
def _zoo_model(spec: ModelSpec, num_classes: int, dtype: str) -> tuple[nn.Module, Structure]:
    """A zoo model on the meta device and its structure, read once (the engine never changes it)."""
    from mbcost.cost.records import model_structure

    module = meta_model(spec, num_classes, dtype)
    return module, model_structure(module)


def _dtype_bytes(dtype: str) -> int:
    from mbcost.inputs import INPUT_DTYPES

    return INPUT_DTYPES[dtype]


def _real_builder(spec: ModelSpec, num_classes: int):  # noqa: ANN202
    """A CPU model with real (random) weights for a real forward, float32, built only if needed."""

    def build() -> nn.Module:
        from mbcost.zoo.spec import build_model

        return build_model(spec, num_classes=num_classes).eval()

    return build


def build_user_model(spec: ModelSpec, dtype: str = "float32") -> nn.Module:
    """Build a user's factory on the meta device when it allows it, else normally; in ``dtype``
    (the module is mbcost's own, so converting it changes nothing of the user's)."""
    import torch

    from mbcost.errors import MbcostError
    from mbcost.zoo.spec import build_model

    try:
        module = build_model(spec, device="meta")
    except MbcostError:
        module = build_model(spec)
    return module.to(getattr(torch, dtype))


__all__ = ["analyze", "build_user_model"]
