"""``analyze``: the analytic cost of a zoo model or any ``nn.Module``, on any inputs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mbcost.cost.custom import OpFormula, custom_ops_in
from mbcost.cost.precision import INT8_FLOAT_BYTES, PRECISIONS, int8_weight_bytes
from mbcost.cost.result import ModelCost
from mbcost.cost.walker import trace_model
from mbcost.errors import SpecError
from mbcost.inputs import renamed_inputs, resolve_inputs
from mbcost.zoo.spec import DTYPES, ModelSource, resolve_source

if TYPE_CHECKING:
    from torch import nn


log = logging.getLogger(__name__)


def analyze(
    model: str | ModelSource | nn.Module,
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
    custom_ops: Mapping[Any, OpFormula] | None = None,
) -> ModelCost:
    """Analytic cost of ``model`` on ``inputs``.

    Nothing is allocated: the forward pass runs on the meta device (``execute="meta"``). A
    data-dependent forward (detection models, ``if x.sum() > 0``) falls back under ``"auto"`` to a
    real CPU forward with random inputs, and the result says so (``cost.execution == "real"``).
    A user's module is read, never changed.

    Args:
        model: a spec (``"v2"``, ``"v1@0.75"``, ``"torchvision:resnet50"``, ``"timm:resnet18"``,
            ``"hf:ID_OR_PATH"``, ``"package.module:factory"``: ``mbcost.zoo.resolve_source``), a ``ModelSource``
            or a module.
        inputs: ``224`` or ``"224x160"`` (an image: ``batch x in_channels x H x W``); a full shape
            ``(1, 3, 16, 112, 112)`` or ``[1, 128]``; a tensor (shape and dtype only; with
            ``requires_grad=True``, ``mode="train"`` costs its gradient too); a tuple of
            these for several positional inputs; a dict for keyword inputs. Default: the source's own
            (token ids and their mask, or pixel values, for a Hugging Face model; a timm model's image size),
            else 224.
        batch: batch size of the image shorthand (costs scale linearly; parameters do not).
        input_size: the former name of ``inputs``, still accepted (deprecated).
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
        custom_ops: formulas for your own ``torch.library`` ops, by qualified name (``"mylib::fused_attn"``) or
            op, for this analysis (ahead of ``mbcost.register_op``'s): called with the op's arguments, tensors
            replaced by their shapes, and ``out_shape=``; each returns the op's MACs or an ``mbcost.OpCost``
            (``mbcost.cost.custom``). Without one, a custom op is listed in ``uncounted``.

    Returns:
        A ``ModelCost`` with ``.params``, ``.macs``, ``.flops``, ``.layers`` and ``.to_frame()``.

    Example:
        >>> cost = analyze("v2", 224)
        >>> cost.params
        3504872
        >>> analyze("v1", (2, 3, 160, 160)).macs == 2 * analyze("v1", 160).macs
        True
    """
    value = renamed_inputs(inputs, input_size)
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
    width: float | None = None
    materialize = None
    in_dtype = input_dtype or dtype
    if isinstance(model, (str, ModelSource)):
        source = resolve_source(model)
        module = source.meta_model(num_classes, dtype)
        resolved = source.inputs(module, value, batch=batch, in_channels=in_channels, dtype=in_dtype)
        materialize = _real_builder(source, num_classes, dtype)
        model_name, width = source.name, source.width
    else:
        resolved = resolve_inputs(224 if value is None else value, batch=batch, in_channels=in_channels,
                                  dtype=in_dtype)
        module, model_name = model, name or type(model).__name__
    with custom_ops_in(custom_ops):
        trace = trace_model(module, resolved, execute=execute, materialize=materialize,
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
        unattributed=tuple(trace.unattributed),
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
        train_peak_grad_bytes=trace.train_peak_grad_bytes,
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


def _dtype_bytes(dtype: str) -> int:
    from mbcost.inputs import INPUT_DTYPES

    return INPUT_DTYPES[dtype]


def _real_builder(source: ModelSource, num_classes: int, dtype: str):  # noqa: ANN202
    """A CPU model with real (random) weights for a real forward, in ``dtype`` as the meta model, built only if
    needed."""
    import torch

    return lambda: source.build(num_classes=num_classes).to(getattr(torch, dtype)).eval()


__all__ = ["analyze"]
