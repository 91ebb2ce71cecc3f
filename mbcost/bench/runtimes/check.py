"""The output check: a runtime's outputs against eager PyTorch float32 on the same inputs.

Errors are measured against the reference's largest magnitude, not element by element: a randomly
initialised MobileNet's logits are of order 1e-9 to 1e-18 (its activations shrink layer after layer),
and an element-wise ratio would divide by values next to zero. So ``rel_error = max |out - ref| /
max |ref|`` over every output element of every sample.

Tolerances (``TOLERANCES``): float32 passes up to 1e-3 (a different kernel order or fusion rounds
differently, by about 1e-6 here; a larger gap is a wrong answer, flagged). The half types are held to
what their mantissas allow through a deep network. int8 is approximate by design: its check records the
error and the top-1 agreement and flags only an answer that no longer follows the float network (an error
above half the output's range: the activations rounded away, a collapsed output).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mbcost.bench.records import OutputCheck

__all__ = ["REFERENCE", "TOLERANCES", "check_outputs", "tolerance_for"]

#: What every output is compared with.
REFERENCE = "eager float32"
#: The largest ``rel_error`` that passes, by precision.
TOLERANCES: dict[str, float] = {"float32": 1e-3, "float16": 1e-2, "bfloat16": 5e-2, "int8": 0.5}


def tolerance_for(precision: str) -> float:
    return TOLERANCES.get(precision, TOLERANCES["float32"])


def check_outputs(reference: Sequence[Sequence[Any]], outputs: Sequence[Sequence[Any]], precision: str,
                  *, reference_label: str = REFERENCE) -> OutputCheck:
    """Compare a runtime's outputs with the reference's, sample by sample.

    Args:
        reference: per sample, the reference's output tensors (flattened, in order).
        outputs: per sample, the runtime's output tensors, in the same order.
        precision: ``float32``, ``float16``, ``bfloat16`` or ``int8`` (picks the tolerance).

    Returns:
        An ``OutputCheck``: ``passed`` is false for a different number or shape of outputs, a non-finite
        value, or ``rel_error`` above the tolerance.

    Example:
        >>> import torch
        >>> c = check_outputs([[torch.tensor([[1.0, 2.0]])]], [[torch.tensor([[1.0, 2.001]])]], "float32")
        >>> round(c.rel_error, 6), c.passed, c.top1_agreement
        (0.0005, True, 1.0)
    """
    import torch

    tol = tolerance_for(precision)

    def failed(note: str, **kw: Any) -> OutputCheck:
        return OutputCheck(reference=reference_label, samples=len(reference), max_abs_error=kw.get("abs"),
                           rel_error=kw.get("rel"), tolerance=tol, passed=False, note=note)

    if len(outputs) != len(reference):
        return failed(f"{len(outputs)} sample(s) answered, {len(reference)} expected")
    max_abs, ref_max = 0.0, 0.0
    agree, rows = 0, 0
    for ref, out in zip(reference, outputs, strict=True):
        if len(ref) != len(out):
            return failed(f"{len(out)} output(s), the reference has {len(ref)}")
        for i, (r, o) in enumerate(zip(ref, out, strict=True)):
            if tuple(r.shape) != tuple(o.shape):
                return failed(f"output {i} has shape {tuple(o.shape)}, the reference {tuple(r.shape)}")
            r64, o64 = r.double(), o.double()
            if not bool(torch.isfinite(o64).all()):
                return failed(f"output {i} holds NaN or infinite values")
            if r64.numel():
                max_abs = max(max_abs, float((o64 - r64).abs().max()))
                ref_max = max(ref_max, float(r64.abs().max()))
        first_r, first_o = ref[0] if ref else None, out[0] if out else None
        if first_r is not None and first_r.dim() == 2 and first_r.shape[1] > 1 and first_r.is_floating_point():
            agree += int((first_r.argmax(1) == first_o.argmax(1)).sum())
            rows += first_r.shape[0]
    if ref_max == 0 and max_abs > 0:
        return failed("the reference output is all zeros and this one is not", abs=max_abs)
    rel = max_abs / ref_max if ref_max > 0 else 0.0
    return OutputCheck(reference=reference_label, samples=len(reference), max_abs_error=max_abs, rel_error=rel,
                       tolerance=tol, passed=rel <= tol, top1_agreement=agree / rows if rows else None)
