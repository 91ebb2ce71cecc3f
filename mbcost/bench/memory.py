"""Measured activation memory of one forward pass: the figure next to the engine's estimate.

One extra forward, outside the timed runs, under ``torch.inference_mode``; the input tensors are
copied inside the measured region so the peak includes them, as the estimate
(``ModelCost.peak_activation_bytes``: live activations, inputs included) does. Weights and buffers
already exist before the pass and are not counted.

* CPU: ``torch.profiler`` with ``profile_memory=True`` records every allocation and free of the
  CPU allocator (each with a time stamp and a signed size); the peak is the largest running sum in
  time order. The profiler's ``function_events`` fold each allocation into the op that made it and
  keep as ``[memory]`` events only the ones made outside any op (in a plain forward: just the final
  frees), so the raw events are read instead (``kineto_results.events()``).
* CUDA: the caching allocator's peak counter (``max_memory_allocated``, reset first) above what
  was allocated before the pass; sizes are the allocator's (rounded up to 512-byte blocks), cuDNN
  workspaces included.

The difference from the estimate is what the allocator hands out beyond the tensors the model
names: convolution workspace (im2col columns of the slow convolution, oneDNN reorders and
scratchpads, cuDNN workspace) and rounding.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Allocation", "allocations_during", "forward_once", "measure_peak_memory", "measure_step_memory", "peak_of"]

MEMORY_EVENT = "[memory]"


@dataclass(frozen=True)
class Allocation:
    """One allocator event of a profiled pass: ``nbytes`` > 0 an allocation, < 0 a free."""

    start_ns: int
    nbytes: int


def peak_of(allocations: Iterable[Allocation]) -> int:
    """The largest running sum of ``nbytes`` in time order (0 when nothing stays allocated)."""
    live = peak = 0
    for a in sorted(allocations, key=lambda a: a.start_ns):  # stable: ties keep the recorded order
        live += a.nbytes
        peak = max(peak, live)
    return peak


def copied(x: Any) -> Any:
    """A fresh copy of every tensor (in tuples, lists, dicts); other values as they are."""
    import torch
    from torch.utils._pytree import tree_map

    # clone's preserve_format: channels-last inputs stay channels-last
    return tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, x)


def forward_once(model: Any, forward_args: Any) -> None:
    """Copy the inputs, run the forward, drop everything it made (all inside the caller's region)."""
    args = copied(tuple(forward_args.args))
    kwargs = copied(dict(forward_args.kwargs))
    out = model(*args, **kwargs)
    del out, args, kwargs


def allocations_during(fn: Any, *, inference: bool = False) -> list[Allocation]:
    """Every CPU allocation and free while ``fn()`` runs (under ``inference_mode`` when asked).

    Raises:
        BenchError: this PyTorch's profiler does not expose its raw events.
    """
    import contextlib

    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from mbcost.bench.errors import BenchError

    # libkineto writes its start and stop (and, on a CUDA build without a GPU, a device-count error)
    # to stderr for every profiled region unless its level says otherwise; it reads the level once,
    # when it first starts. Quiet by default; a level the user set is kept.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    cpu_kinds = {DeviceType.CPU, DeviceType.MKLDNN, DeviceType.IDEEP}
    mode = torch.inference_mode() if inference else contextlib.nullcontext()
    with mode, profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None:
        raise BenchError(f"torch {torch.__version__}: the profiler exposes no raw memory events; "
                         "cannot measure the CPU memory peak")
    return [Allocation(e.start_ns(), e.nbytes()) for e in results.events()
            if e.name() == MEMORY_EVENT and e.device_type() in cpu_kinds]


def _peak_while(fn: Any, device: Any, *, inference: bool) -> int:
    """Peak bytes the allocator holds while ``fn()`` runs beyond what existed before it: CUDA's
    peak counter after a reset, or the CPU profiler's allocation events."""
    import contextlib

    import torch

    dev = torch.device(getattr(device, "torch_device", device))
    if dev.type == "cuda":
        with torch.cuda.device(dev):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            with torch.inference_mode() if inference else contextlib.nullcontext():
                fn()
            torch.cuda.synchronize()
            return max(0, torch.cuda.max_memory_allocated() - base)
    if dev.type != "cpu":
        from mbcost.bench.errors import BenchError

        raise BenchError(f"measuring memory on {dev.type} is not supported (cpu or cuda)")
    return peak_of(allocations_during(fn, inference=inference))


def measure_step_memory(step: Any, device: Any) -> int:
    """Peak bytes the allocator holds during one training ``step()`` (a ``TrainStep``: it frees the
    gradients first, so they are allocated inside) beyond what existed before it: activations,
    what autograd saves, gradients, workspace (the optimizer's state was made on an earlier step)."""
    return _peak_while(step, device, inference=False)


def measure_peak_memory(model: Any, forward_args: Any, device: Any) -> int:
    """Peak bytes the allocator holds during one forward of ``model`` (built on ``device``, a ``Device``,
    ``torch.device`` or string) beyond what existed before it: the copies of ``forward_args`` made inside the
    measured region, every activation and any workspace (weights and buffers excluded), exact as the allocator
    counts them.

    Raises:
        BenchError: a device other than CPU or CUDA, or a profiler without raw memory events.

    Example:
        >>> conv, x = torch.nn.Conv2d(3, 16, 3), torch.randn(1, 3, 8, 8)              # doctest: +SKIP
        >>> measure_peak_memory(conv, ForwardArgs((x,), {}), "cpu")  # doctest: +SKIP
        6960
        >>> # input 768 + im2col columns 3888 (1 thread: the native convolution) + output 2304
    """
    return _peak_while(lambda: forward_once(model, forward_args), device, inference=True)
