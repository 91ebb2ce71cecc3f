"""Which kernel model prices a layer, and the numbers it is priced on (no torch: predict's import path).

A ``LayerCost`` maps to one *model kind*: convolutions split by shape (``conv``, ``grouped_conv``, ``dwconv``,
``pwconv``), ``matmul``, ``attention``, the norms, one kind per activation function and elementwise op, pooling,
softmax; each kind's time is a non-negative linear function of ``FEATURES`` (docs/predict.md, "How it works").
"""

from __future__ import annotations

from typing import Any

__all__ = ["ACTIVATIONS", "COMPUTE_KINDS", "DEPTHWISE_KINDS", "FEATURES", "ELEMENTWISE", "features", "fallback_kind",
           "model_kind", "group_of"]

#: The features every kind model is a non-negative combination of, in this order.
FEATURES: tuple[str, ...] = ("calls", "macs", "macs_per_channel", "activation_bytes", "weight_bytes", "other_ops")

#: Activation functions with a kind of their own (an activation not listed falls back to ``activation``).
ACTIVATIONS: tuple[str, ...] = ("relu", "hardtanh", "hardswish", "silu", "gelu", "sigmoid")
#: Elementwise ops with a kind of their own.
ELEMENTWISE: tuple[str, ...] = ("add", "mul")

#: The kinds whose work is MACs on the compute units (the whole-model correction's ``compute`` group).
COMPUTE_KINDS: frozenset[str] = frozenset({"conv", "grouped_conv", "pwconv", "matmul", "attention"})
#: Depthwise convolutions: MACs, but memory-bound (the correction's ``dwconv`` group).
DEPTHWISE_KINDS: frozenset[str] = frozenset({"dwconv"})


def model_kind(layer: Any) -> str:
    """The kind whose model prices ``layer`` (a ``LayerCost``, or anything with its fields).

    Example:
        >>> from types import SimpleNamespace as L
        >>> model_kind(L(kind="conv", op="convolution", groups=32, input_shape=(1, 32, 56, 56), kernel=(3, 3)))
        'dwconv'
        >>> model_kind(L(kind="activation", op="hardtanh", groups=None, input_shape=(1, 8), kernel=None))
        'activation.hardtanh'
    """
    kind = layer.kind
    if kind == "conv":
        groups = layer.groups or 1
        cin = layer.input_shape[1] if len(layer.input_shape) > 1 else 0
        if groups > 1 and groups == cin:
            return "dwconv"
        if groups > 1:
            return "grouped_conv"
        if layer.kernel is not None and all(k == 1 for k in layer.kernel):
            return "pwconv"
        return "conv"
    if kind == "activation":
        return f"activation.{layer.op}" if layer.op in ACTIVATIONS else "activation"
    if kind == "elementwise":
        return f"elementwise.{layer.op}" if layer.op in ELEMENTWISE else "elementwise"
    return kind


def fallback_kind(kind: str) -> str | None:
    """The broader kind to price ``kind`` with when it has no fitted model of its own (``activation.gelu`` ->
    ``activation``), or ``None``."""
    head, dot, _ = kind.partition(".")
    return head if dot else None


def group_of(kind: str) -> str:
    """The whole-model correction's group of a kind: ``compute``, ``dwconv`` or ``memory``."""
    if kind in COMPUTE_KINDS:
        return "compute"
    if kind in DEPTHWISE_KINDS:
        return "dwconv"
    return "memory"


def features(layer: Any) -> tuple[float, ...]:
    """``FEATURES`` of one layer, as floats.

    Example:
        >>> from types import SimpleNamespace as L
        >>> features(L(kind="conv", op="convolution", groups=1, input_shape=(1, 16, 8, 8), kernel=(3, 3), macs=1000,
        ...            input_bytes=4096, output_bytes=2048, weight_bytes=512, other_ops=0, bias_adds=0))
        (1.0, 1000.0, 62.5, 6144.0, 512.0, 0.0)
    """
    groups = layer.groups or 1
    cin = layer.input_shape[1] if len(layer.input_shape) > 1 else 1
    per_channel = layer.macs / max(1, cin // groups) if layer.kind == "conv" else 0.0
    return (1.0, float(layer.macs), float(per_channel), float(layer.input_bytes + layer.output_bytes),
            float(layer.weight_bytes), float(layer.other_ops + layer.bias_adds))
