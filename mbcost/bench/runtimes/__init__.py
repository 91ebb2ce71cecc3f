"""Runtimes: what runs a network for ``mbcost bench --runtime`` (one adapter each, one registry).

``RUNTIMES`` maps each name to its adapter (``base.Runtime``): ``eager`` (the default), ``compile``,
``onnxruntime``, ``openvino``, ``executorch``. The CLI's choices, the help text and the refusals all come
from it; a new runtime is one module here and one line in ``RUNTIMES``. Nothing here imports torch or a
runtime's package at import time.
"""

from __future__ import annotations

from mbcost.bench.runtimes.base import EXTRA, PRECISIONS, ExportError, Prepared, Runtime, RuntimeJob, RuntimeUnavailable
from mbcost.bench.runtimes.compiled import COMPILE
from mbcost.bench.runtimes.eager import EAGER
from mbcost.bench.runtimes.executorch_xnnpack import EXECUTORCH
from mbcost.bench.runtimes.onnxrt import ONNXRUNTIME
from mbcost.bench.runtimes.openvino_cpu import OPENVINO
from mbcost.errors import SpecError

__all__ = [
    "EXTRA", "PRECISIONS", "RUNTIMES", "ExportError", "Prepared", "Runtime", "RuntimeJob", "RuntimeUnavailable",
    "base", "calibration", "check", "compiled", "eager", "executorch_xnnpack", "get_runtime", "onnxrt",
    "openvino_cpu", "parse_runtimes", "runtime_label", "runtime_order",
]

#: Every runtime by name, in the order tables show them.
RUNTIMES: dict[str, Runtime] = {r.name: r for r in (EAGER, COMPILE, ONNXRUNTIME, OPENVINO, EXECUTORCH)}


def get_runtime(name: str) -> Runtime:
    """The adapter called ``name`` (``SpecError`` naming the choices otherwise)."""
    try:
        return RUNTIMES[name]
    except KeyError:
        raise SpecError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}") from None


def runtime_label(runtime: str, precision: str) -> str:
    """``onnxruntime``, ``openvino int8``, ``eager bfloat16``: a runtime at a precision, float32 left unsaid."""
    return runtime if precision == "float32" else f"{runtime} {precision}"


def runtime_order(runtime: str, precision: str) -> tuple[int, bool]:
    """Sort key of a runtime at a precision: the order of ``RUNTIMES`` (unknown names last), float before int8."""
    names = list(RUNTIMES)
    return (names.index(runtime) if runtime in names else len(names), precision == "int8")


def parse_runtimes(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"eager,onnxruntime"`` (or a list) -> known runtime names, in order, each once.

    Example:
        >>> parse_runtimes("eager, openvino,eager")
        ['eager', 'openvino']
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip().lower() for n in items if n.strip()]
    if not names:
        raise SpecError(f"--runtime needs at least one of {', '.join(RUNTIMES)}")
    for n in names:
        get_runtime(n)
    return list(dict.fromkeys(names))
