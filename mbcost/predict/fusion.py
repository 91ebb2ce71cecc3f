"""Kernels: the layers of an analysis grouped the way a runtime executes them: one op one kernel on eager PyTorch;
on ONNX Runtime's CPU provider conv + BatchNorm + activation is one kernel (``ConvBNFusion``,
``ConvActivationFusion``), priced by the convolution's kind model, which calibration measured as that triple.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mbcost.predict.kinds import features, model_kind

__all__ = ["FUSED_ACTIVATIONS", "FUSING_RUNTIMES", "Kernel", "kernels_of"]

#: Runtimes that fuse conv + BatchNorm + activation.
FUSING_RUNTIMES: frozenset[str] = frozenset({"onnxruntime"})
#: Activations ONNX Runtime fuses into a convolution (as PyTorch names their ops).
FUSED_ACTIVATIONS: frozenset[str] = frozenset({"relu", "hardtanh", "clamp", "clamp_min", "sigmoid", "tanh",
                                               "leaky_relu", "hardsigmoid"})


@dataclass(frozen=True)
class Kernel:
    """One kernel the runtime runs: its head layer's name and kind model, its features, and every layer
    (``layers``) it stands for."""

    name: str
    kind: str
    features: tuple[float, ...]
    layers: tuple[str, ...]
    macs: int
    bytes_moved: int


def _kernel(head: Any, members: Sequence[Any]) -> Kernel:
    return Kernel(head.name, model_kind(head), features(head), tuple(m.name for m in members), int(head.macs),
                  int(head.bytes_moved))


def kernels_of(layers: Sequence[Any], runtime: str) -> list[Kernel]:
    """The kernels of ``layers`` (``LayerCost`` records, in execution order) on ``runtime``."""
    if runtime not in FUSING_RUNTIMES:
        return [_kernel(layer, (layer,)) for layer in layers]
    out: list[Kernel] = []
    i = 0
    while i < len(layers):
        head = layers[i]
        members = [head]
        if head.kind == "conv":
            shape = head.output_shape
            j = i + 1
            if j < len(layers) and layers[j].kind == "batchnorm" and layers[j].input_shape == shape:
                members.append(layers[j])
                j += 1
            if j < len(layers) and layers[j].kind == "activation" and layers[j].op in FUSED_ACTIVATIONS \
                    and layers[j].input_shape == shape:
                members.append(layers[j])
                j += 1
            i = j
        else:
            i += 1
        out.append(_kernel(head, members))
    return out
