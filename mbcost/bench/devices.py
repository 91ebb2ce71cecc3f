"""Devices, dtypes, threads and memory: what a measurement may ask of the machine.

Dtype support (decided here, refused with one line otherwise):

* ``cpu``: ``float32`` and ``bfloat16``. ``float16`` is refused unless the CPU advertises
  native half-precision arithmetic (``avx512_fp16`` or ``amx_fp16``): elsewhere PyTorch runs
  float16 convolutions through slow reference kernels (about 10x slower than float32 on an
  AVX-512 Xeon), which would measure the fallback, not the network. ``bfloat16`` always runs
  (oneDNN converts when the CPU lacks ``avx512_bf16``/``amx_bf16``; ``cpu_has_native`` says which).
* ``cuda``: ``float32`` and ``float16``; ``bfloat16`` when ``torch.cuda.is_bf16_supported()``.

Memory: before building anything, ``check_memory`` refuses a run whose estimate (``estimate_memory``)
would not fit in the memory available (``available_memory``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mbcost.bench.errors import DeviceError, MemoryRefusal
from mbcost.host import MEMORY_HEADROOM  # one home: a real CPU analysis refuses with it too

if TYPE_CHECKING:
    from mbcost.cost.result import ModelCost

__all__ = [
    "BENCH_DTYPES", "Device", "MemoryEstimate", "available_devices", "available_memory", "can_keep_heap", "check_dtype",
    "check_memory", "check_threads", "cpu_has_native", "cpu_info", "estimate_memory", "kept_heap", "resolve_device",
    "runtime",
]

BENCH_DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Device:
    """A resolved device: ``type`` is ``cpu`` or ``cuda``; ``name`` is the hardware's name."""

    type: str
    index: int | None
    name: str

    @property
    def torch_device(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """The CPU model name and its feature flags (from ``/proc/cpuinfo`` on Linux)."""
    import platform

    name, flags = "", frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if not name and key in ("model name", "hardware", "processor") and not value.strip().isdigit():
            name = value.strip()
        elif not flags and key in ("flags", "features"):
            flags = frozenset(value.split())
    if not name:
        name = platform.processor() or platform.machine() or "unknown CPU"
    return re.sub(r"\s+", " ", name), flags


def cpu_has_native(dtype: str) -> bool:
    """Whether this CPU has native arithmetic for ``dtype`` (always true for float32)."""
    flags = cpu_info()[1]
    if dtype == "bfloat16":
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    if dtype == "float16":
        return bool(flags & {"avx512_fp16", "amx_fp16"})
    return True


def resolve_device(text: str) -> Device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> a ``Device``; refuses what is not there.

    Raises:
        DeviceError: an unknown device, CUDA requested without CUDA, or a GPU index out of range.
    """
    import torch

    spec = (text or "").strip().lower()
    kind, _, index_text = spec.partition(":")
    if kind == "cpu" and not index_text:
        return Device("cpu", None, cpu_info()[0])
    if kind != "cuda":
        raise DeviceError(f"unknown device {text!r}; use cpu or cuda (cuda:N for a given GPU)")
    if not torch.cuda.is_available():
        built = f"torch {torch.__version__} was built without CUDA" if torch.version.cuda is None else \
            "no CUDA device is visible"
        raise DeviceError(f"--device cuda: CUDA is not available ({built}); use --device cpu")
    try:
        index = int(index_text) if index_text else torch.cuda.current_device()
    except ValueError:
        raise DeviceError(f"bad device {text!r}; expected cuda or cuda:N") from None
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise DeviceError(f"--device {text}: there are {count} CUDA devices (0..{count - 1})")
    return Device("cuda", index, torch.cuda.get_device_name(index))


def available_devices() -> list[str]:
    """Where a measurement on "every device" runs: ``["cpu"]``, plus ``"cuda"`` when torch sees a GPU."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def check_dtype(device: Device, dtype: str) -> None:
    """Refuse a dtype the device cannot run representatively (see the module docstring)."""
    if dtype not in BENCH_DTYPES:
        raise DeviceError(f"unsupported dtype {dtype!r} for measurement; choose one of {', '.join(BENCH_DTYPES)}")
    if device.type == "cpu" and dtype == "float16" and not cpu_has_native("float16"):
        raise DeviceError("float16 is not supported on this CPU (no avx512_fp16/amx_fp16: PyTorch would time its "
                          "slow reference kernels); use --dtype bfloat16 or float32, or --device cuda")
    if device.type == "cuda" and dtype == "bfloat16":
        import torch

        with torch.cuda.device(device.index):
            if not torch.cuda.is_bf16_supported():
                raise DeviceError(f"bfloat16 is not supported on {device.name}; use --dtype float16 or float32")


def check_threads(threads: int | None, *, oversubscribe: bool = False) -> int:
    """The intra-op thread count to use (default: PyTorch's current setting).

    More threads than the CPUs this process may run on (``host.usable_cpus``) take turns on the
    cores: the time then measures the scheduler as much as the network (999 threads on 2 CPUs timed
    MobileNetV1 at about 2 s instead of 16 ms). That is refused unless ``oversubscribe`` is set; an
    oversubscribed run says so in its records (``env.oversubscribed``) and tables.
    """
    import torch

    from mbcost.host import usable_cpus

    if threads is None:
        return torch.get_num_threads()
    if not isinstance(threads, int) or threads < 1:
        raise DeviceError(f"--threads must be an integer >= 1 (got {threads!r})")
    cpus = usable_cpus()
    if threads > cpus and not oversubscribe:
        raise DeviceError(f"--threads {threads} is more than the {cpus} CPU{'s' if cpus != 1 else ''} this process can "
                          f"run on: the threads would take turns on the cores and the time would measure that; "
                          f"use --threads {cpus} or fewer, or pass --oversubscribe to measure it anyway")
    return threads


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
GLIBC_DYNAMIC_MMAP_MAX = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit glibc


@lru_cache(maxsize=1)
def _glibc() -> Any:
    """glibc's ``libc`` through ctypes, or ``None`` on another C library or platform."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
        return libc
    except (OSError, AttributeError):
        return None


def can_keep_heap() -> bool:
    """Whether ``runtime(keep_heap=True)`` can act here (glibc's malloc)."""
    return _glibc() is not None


@contextmanager
def kept_heap(enabled: bool = True) -> Iterator[bool]:
    """Keep freed memory in glibc's heap for the duration (yields whether it was applied).

    With its defaults glibc returns large freed blocks to the kernel, so every eager forward pass
    maps its activations afresh and takes thousands of page faults (MobileNetV2 at 224: ~3,000
    per pass, 20-30 % of its time on a VM, and most of the run-to-run spread), charged to whichever
    layer allocates. Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` keeps the memory, as the
    jemalloc/tcmalloc setups PyTorch recommends for CPU inference do. glibc cannot switch its
    dynamic thresholds back on, so afterwards they are left where that dynamic policy ends up after
    large frees (mmap 32 MiB, trim 64 MiB), not at the 128 KiB start values, which, fixed, would
    make every later large allocation page-fault.
    """
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    applied = bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) or libc.mallopt(M_MMAP_THRESHOLD, GLIBC_DYNAMIC_MMAP_MAX))
    applied = bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)) and applied
    try:
        yield applied
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, GLIBC_DYNAMIC_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * GLIBC_DYNAMIC_MMAP_MAX)


@contextmanager
def runtime(device: Device, threads: int, *, flush_denormal: bool = True, keep_heap: bool = True,
            cudnn_benchmark: bool | None = None) -> Iterator[None]:
    """Process settings for the duration of a measurement, restored afterwards.

    * intra-op threads (``torch.set_num_threads``), restored to the previous value;
    * flush-to-zero of denormal floats on CPU. Freshly initialised networks (no trained weights)
      can decay into denormal activations (MobileNetV1 does: ~1.2 s instead of ~30 ms per image
      on a Xeon), which trained networks do not; flushing them measures the network, not the
      CPU's microcode assist for denormal arithmetic. Restored to PyTorch's default (off): PyTorch has no getter for it;
    * on CPU, freed memory kept in glibc's heap (``kept_heap``), so passes do not page-fault;
    * ``torch.backends.cudnn.benchmark`` on CUDA when given, restored to its previous value.
    """
    import torch

    prior_threads = torch.get_num_threads()
    prior_cudnn = torch.backends.cudnn.benchmark
    flushed = False
    try:
        torch.set_num_threads(threads)
        if device.type == "cpu" and flush_denormal:
            flushed = torch.set_flush_denormal(True)
        if device.type == "cuda" and cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = cudnn_benchmark
        with kept_heap(keep_heap and device.type == "cpu"):
            yield
    finally:
        torch.set_num_threads(prior_threads)
        if flushed:
            torch.set_flush_denormal(False)
        torch.backends.cudnn.benchmark = prior_cudnn


def available_memory(device: Device) -> int | None:
    """Bytes available for a new allocation on ``device``, or ``None`` when unknown."""
    if device.type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device.index)
        return int(free)
    from mbcost.host import available_cpu_memory

    return available_cpu_memory()


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a forward pass needs, from the analytic model (at the measured dtype and batch)."""

    weight_bytes: int
    input_bytes: int
    activation_bytes: int

    @property
    def total(self) -> int:
        return self.weight_bytes + self.input_bytes + self.activation_bytes


def estimate_memory(cost: ModelCost) -> MemoryEstimate:
    """What a run needs, from the analytic model: weights + inputs + 2 x the activations alive at
    the worst point (tensor lifetimes; after a real-CPU count, which traces none, the largest op's
    input + output for a forward, every activation the forward writes for a training step).

    A training step (``cost.mode == "train"``) also keeps, per trainable weight, a gradient and the
    optimizer's state, and its activation peak is the step's (``train_peak_activation_bytes``, inputs
    included). Doubling covers workspace and the allocator's rounding: an estimate, not a bound; it
    errs on the generous side.
    """
    if cost.mode == "train":
        kept = (cost.weight_bytes + cost.buffer_bytes + cost.trainable_params * cost.dtype_bytes
                + (cost.optimizer_state_bytes or 0))
        peak = cost.train_peak_activation_bytes
        if peak is None:
            peak = cost.input_bytes + cost.activation_bytes
        return MemoryEstimate(weight_bytes=kept, input_bytes=0, activation_bytes=2 * peak)
    peak = cost.peak_activation_bytes if cost.peak_activation_bytes is not None else cost.largest_op_bytes
    return MemoryEstimate(weight_bytes=cost.weight_bytes, input_bytes=cost.input_bytes, activation_bytes=2 * peak)


def check_memory(cost: ModelCost, device: Device, what: str | None = None) -> MemoryEstimate:
    """Refuse (``MemoryRefusal``) a run whose estimate exceeds the available memory."""
    from mbcost.units import nbytes

    estimate = estimate_memory(cost)
    available = available_memory(device)
    if available is not None and estimate.total > MEMORY_HEADROOM * available:
        label = what or f"{cost.label} at batch {cost.batch}"
        if cost.mode == "train":
            label += f" for a training step with {cost.optimizer}"
        kept = "weights + gradients + optimizer state" if cost.mode == "train" else "weights"
        raise MemoryRefusal(
            f"{label} needs about {nbytes(estimate.total)} ({kept} {nbytes(estimate.weight_bytes)} + activations "
            f"{nbytes(estimate.activation_bytes + estimate.input_bytes)}, {cost.dtype}, estimated from the analytic "
            f"model) but only {nbytes(available)} is available on {device.torch_device}; lower --batch or --input")
    return estimate
