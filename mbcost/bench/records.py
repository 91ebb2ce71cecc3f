"""Measurement records: typed, flat, one JSON object per line (the contract with ``mbcost report``).

Every record has the keys of ``Record`` and a ``kind``: ``model`` (``ModelRecord``), ``layer``
(``LayerRecord``), ``conv`` (``ConvRecord``) or ``peak`` (``PeakRecord``). Times are raw milliseconds
(``times_ms`` holds every timed run; rounding happens in render). Records written before runtimes existed
have no ``runtime`` and ``precision``: they read back as eager at their dtype.
"""

from __future__ import annotations

import math
import platform
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mbcost.bench.devices import Device
    from mbcost.bench.timer import Measurement

__all__ = [
    "ConvRecord", "Env", "LayerRecord", "ModelRecord", "OutputCheck", "PeakRecord", "Record", "RecordError",
    "RunConfig", "busy_cpus_now", "capture_env", "parse_record",
]

@dataclass(frozen=True)
class Env:
    """Where and how a record was measured."""

    mbcost: str
    torch: str
    device_name: str
    cpu: str
    threads: int
    cuda: str | None
    cudnn: str | None
    cudnn_benchmark: bool | None
    platform: str
    python: str
    timestamp: str
    flush_denormal: bool = False
    kept_heap: bool = False
    cuda_tf32: bool | None = None
    load_average: float | None = None
    busy_cpus: float | None = None
    cpu_count: int | None = None
    cpu_native_bf16: bool | None = None
    cpu_native_fp16: bool | None = None
    #: CPUs this process may run on (its affinity mask); ``threads`` above it oversubscribes them.
    usable_cpus: int | None = None

    @property
    def oversubscribed(self) -> bool:
        """True when more intra-op threads were asked for than the process has CPUs: the threads take turns
        on the cores and the time measures the scheduler as much as the network."""
        return bool(self.usable_cpus) and self.threads > (self.usable_cpus or 0)

    @property
    def busy(self) -> bool:
        """True when other work kept more than a quarter of the CPUs (at least half a CPU) busy as the
        run started."""
        if self.busy_cpus is None or not self.cpu_count:
            return False
        return self.busy_cpus > max(0.5, 0.25 * self.cpu_count)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "oversubscribed": self.oversubscribed}  # derived, said outright for readers

    @classmethod
    def from_dict(cls, d: Any) -> Env:
        """The environment of a record read back (``RecordError`` when a key is missing or mistyped)."""
        return _build(cls, d, "env")  # errors read "env without ..."


class RecordError(ValueError):
    """A record read back that does not follow the contract: one line saying what is wrong."""


def _check(value: Any, annotation: str, where: str) -> Any:
    """``value`` as the field annotated ``annotation`` holds it (lists become tuples), or ``RecordError``."""
    if annotation.endswith(" | None"):
        return None if value is None else _check(value, annotation[: -len(" | None")], where)
    if value is None:
        raise RecordError(f"with no {where}")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation == "str" and isinstance(value, str) or annotation == "bool" and isinstance(value, bool) \
            or annotation == "int" and number and float(value).is_integer() \
            or annotation == "float" and number and math.isfinite(value):
        return int(value) if annotation == "int" else value
    if annotation.startswith("tuple[") and isinstance(value, list):
        item = annotation[len("tuple["):-1].split(",")[0].strip()
        return tuple(_check(v, item, where) for v in value)
    if annotation.startswith("list[") and isinstance(value, list):
        return list(value)
    if annotation.startswith("dict[") and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        item = annotation[len("dict["):-1].split(",", 1)[1].strip()
        return value.copy() if item == "Any" else {k: _check(v, item, f"{where}.{k}") for k, v in value.items()}
    if annotation in NESTED and isinstance(value, dict):
        return NESTED[annotation].from_dict(value)
    kind = "non-numeric" if annotation in ("int", "float") else f"mistyped ({annotation})"
    raise RecordError(f"with {kind} {where}")


def _build(cls: type, d: Any, noun: str) -> Any:
    """An instance of the record dataclass ``cls`` from its JSON object; unknown keys are ignored (a
    newer writer's extra fields), missing ones with a default take it. ``noun`` names it in errors."""
    if not isinstance(d, dict):
        raise RecordError(f"{noun} that is not a JSON object")
    values: dict[str, Any] = {}
    missing = [f.name for f in fields(cls) if f.init and f.name not in d and f.default is MISSING
               and f.default_factory is MISSING]
    if missing:
        raise RecordError(f"{noun} without {', '.join(missing)}")
    for f in fields(cls):
        if f.init and f.name in d:
            try:
                values[f.name] = _check(d[f.name], str(f.type), f.name)
            except RecordError as exc:
                raise RecordError(f"{noun} {exc}" if str(exc).startswith("with") else f"{noun}: {exc}") from None
    return cls(**values)


@dataclass(frozen=True)
class OutputCheck:
    """A runtime's output against eager PyTorch in float32 on the same inputs (``samples`` of them).

    ``max_abs_error`` = max |out - ref| over every output element; ``rel_error`` = that / max |ref|
    (relative to the reference's largest magnitude, so an output near zero does not divide by zero);
    ``top1_agreement`` = the fraction of samples whose largest output (the top-1 class) is the same,
    for a (batch, classes) output; ``passed`` = ``rel_error <= tolerance`` (and finite outputs).
    """

    reference: str
    samples: int
    max_abs_error: float | None
    rel_error: float | None
    tolerance: float
    passed: bool
    top1_agreement: float | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> OutputCheck:
        return _build(cls, d, "output_check")


#: Record fields holding an object of their own, by annotation.
NESTED: dict[str, Any] = {"Env": Env, "OutputCheck": OutputCheck}


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from ``/proc/stat`` (Linux), or ``None``."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user time
    return total - idle, total


def busy_cpus_now(window: float = 0.2) -> float | None:
    """How many CPUs other work keeps busy, sampled over ``window`` seconds while this process
    waits (call it before measuring). Falls back to the 1-minute load average; ``None`` if neither
    is available."""
    import os
    import time

    first = _cpu_jiffies()
    if first is not None:
        time.sleep(window)
        second = _cpu_jiffies()
        if second is not None and second[1] > first[1]:
            return (second[0] - first[0]) / (second[1] - first[1]) * (os.cpu_count() or 1)
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def capture_env(device: Device, threads: int, *, flush_denormal: bool = False, kept_heap: bool = False,
                busy_cpus: float | None = None) -> Env:
    """The environment of a measurement on ``device`` (versions, hardware, settings, UTC time).

    ``busy_cpus``: ``busy_cpus_now()`` read before the run started (not sampled here: by then the
    run's own threads would count).
    """
    import os

    import torch

    from mbcost._version import __version__
    from mbcost.bench.devices import cpu_has_native, cpu_info
    from mbcost.host import usable_cpus

    try:
        load: float | None = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = None
    on_cuda = device.type == "cuda"
    cudnn = torch.backends.cudnn.version() if on_cuda and torch.backends.cudnn.is_available() else None
    return Env(
        mbcost=__version__,
        torch=torch.__version__,
        device_name=device.name,
        cpu=cpu_info()[0],
        threads=threads,
        cuda=torch.version.cuda if on_cuda else None,
        cudnn=str(cudnn) if cudnn is not None else None,
        cudnn_benchmark=bool(torch.backends.cudnn.benchmark) if on_cuda else None,
        platform=platform.platform(),
        python=sys.version.split()[0],
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        flush_denormal=flush_denormal and device.type == "cpu",
        kept_heap=kept_heap,
        cuda_tf32=bool(torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32)
        if on_cuda else None,
        load_average=load,
        busy_cpus=busy_cpus,
        cpu_count=os.cpu_count(),
        cpu_native_bf16=cpu_has_native("bfloat16"),
        cpu_native_fp16=cpu_has_native("float16"),
        usable_cpus=usable_cpus(),
    )


def _default_runtime(obj: Any) -> None:
    """Fill a record's or configuration's absent ``runtime`` and ``precision`` (records written before
    runtimes existed): torch.compile when ``compile`` is set, else eager; precision = the dtype."""
    if obj.runtime is None:
        object.__setattr__(obj, "runtime", "compile" if obj.compile else "eager")
    if obj.precision is None:
        object.__setattr__(obj, "precision", obj.dtype)


@dataclass(frozen=True)
class RunConfig:
    """What every record of one run shares: device, dtype, batch and the settings.

    ``mode`` is ``inference`` (an eval forward) or ``train`` (a training step with ``optimizer``):
    records of different modes measured different work and are never compared.
    """

    device: str
    device_name: str
    dtype: str
    batch: int
    threads: int
    channels_last: bool = False
    compile: bool = False
    label: str | None = None
    mode: str = "inference"
    optimizer: str | None = None
    #: What ran the network (``mbcost.bench.runtimes``; default: ``compile`` when ``compile`` is set, else
    #: ``eager``) and in what precision (default: the dtype; or ``int8``).
    runtime: str | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        _default_runtime(self)

    @property
    def run_label(self) -> str:
        return self.label or f"{self.device_name} {self.dtype}"

    @property
    def key(self) -> tuple[Any, ...]:
        """Records with equal keys were measured under the same conditions (comparable)."""
        return (self.device, self.device_name, self.dtype, self.batch, self.threads, self.channels_last,
                self.compile, self.mode, self.optimizer, self.runtime, self.precision)


@dataclass(frozen=True, kw_only=True)
class Record:
    """Keys common to every record."""

    kind: str = field(init=False, default="")
    device: str
    device_name: str
    dtype: str
    batch: int
    threads: int
    channels_last: bool
    compile: bool
    median_ms: float
    iqr_ms: float
    runs: int
    wide_spread: bool
    times_ms: tuple[float, ...]
    env: Env
    label: str
    #: What ran it (``mbcost.bench.runtimes``); a record without the key was eager PyTorch (``compile`` when
    #: its ``compile`` is set: ``--compile`` was the compile runtime before runtimes had a name).
    runtime: str | None = None
    #: ``int8``, or the float dtype the record was measured in (a record without the key: its ``dtype``).
    precision: str | None = None

    def __post_init__(self) -> None:
        _default_runtime(self)

    @staticmethod
    def common(config: RunConfig, env: Env, m: Measurement | None = None) -> dict[str, Any]:
        """Constructor keywords shared by every kind, from a configuration and a measurement (without one, the
        caller gives the times: a peak record's are the matmul's)."""
        keys = {f.name for f in fields(Record)} & {f.name for f in fields(RunConfig)}
        timing = {} if m is None else dict(median_ms=m.median_ms, iqr_ms=m.iqr_ms, runs=m.runs,
                                           wide_spread=m.wide_spread, times_ms=tuple(m.times_ms))
        return {**{k: getattr(config, k) for k in keys}, "label": config.run_label, "env": env, **timing}

    @property
    def config(self) -> RunConfig:
        """The configuration it was measured under (a model record's mode and optimizer included)."""
        return RunConfig(**{f.name: getattr(self, f.name) for f in fields(RunConfig) if hasattr(self, f.name)})

    @classmethod
    def from_dict(cls, d: Any) -> Record:
        """The record of this kind a JSON object holds (``to_dict``'s inverse); ``RecordError`` says what
        is missing or mistyped."""
        return _build(cls, d, f"{cls.__dataclass_fields__['kind'].default} record")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record (one line of a ``--save`` file)."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {**d, "env": self.env.to_dict()}

    def _repr_html_(self) -> str | None:
        """In Jupyter: the record as its command's table (``mbcost.render.html``)."""
        from mbcost import display

        return display.html(self)


@dataclass(frozen=True, kw_only=True)
class ModelRecord(Record):
    """One network, one configuration. ``achieved_gflops`` = analytic FLOPs (2 x MACs) / median.

    ``mode="train"``: the median is one training step (forward in train mode, backward, the
    ``optimizer``'s update) and ``achieved_gflops`` = 2 x (``macs`` + ``backward_macs``) / median:
    the forward's and the gradients' conv and linear MACs (``mbcost.cost.training``), the optimizer's
    elementwise update not counted. ``throughput_ips`` is then training images per second.

    ``peak_memory_bytes`` (measured) and ``estimated_peak_memory_bytes`` (the engine's) are both
    activation peaks: weights and buffers excluded, inputs included.
    """

    kind: str = field(init=False, default="model")
    model: str
    input: tuple[int, ...]
    params: int
    macs: int
    flops: int
    throughput_ips: float
    achieved_gflops: float
    #: Every input's shape and dtype (``{"shape": [...], "dtype": ...}``, keyword inputs named).
    inputs: list[dict[str, Any]] = field(default_factory=list)
    #: Measured activation peak of one extra forward (``mbcost.bench.memory``): bytes the allocator
    #: held beyond the weights, inputs' copies and workspace included; ``None`` when not measured.
    peak_memory_bytes: int | None = None
    #: The engine's estimate of the same (``ModelCost.peak_activation_bytes``: live activations,
    #: inputs included, from tensor lifetimes); ``None`` after a real-CPU fallback count. In train
    #: mode the step's (``train_peak_activation_bytes``: saved tensors and gradients included), and
    #: ``peak_memory_bytes`` is ``None`` (the measuring pass is a forward under inference_mode).
    estimated_peak_memory_bytes: int | None = None
    #: ``inference`` (an eval forward under inference_mode) or ``train`` (one training step); older
    #: records, which have neither key, were inference.
    mode: str = "inference"
    #: The training step's optimizer (``sgd``, ``momentum``, ``adam``, ``adamw``); ``None`` in inference.
    optimizer: str | None = None
    #: Training: gradient MACs of the backward (``ModelCost.backward_macs``); 0 in inference.
    backward_macs: int = 0
    #: The runtime's version (torch's for eager and compile).
    runtime_version: str | None = None
    #: What was set on the runtime: intra-op and inter-op threads, optimisation levels, denormals...;
    #: ``not_set`` lists what this runtime offers no setting for.
    runtime_settings: dict[str, Any] = field(default_factory=dict)
    #: One-time costs in seconds, by phase (``export``, ``quantize``, ``compile``, ``load``...), never
    #: part of the timed runs.
    one_time_s: dict[str, float] = field(default_factory=dict)
    #: int8: what the quantizer was calibrated on (``random``: random normal inputs; or the file's name).
    calibration: str | None = None
    #: int8: BatchNorm running statistics re-estimated on the calibration inputs before quantizing (a
    #: randomly initialised network's activations otherwise shrink towards zero, and int8 rounds them away).
    batchnorm_reestimated: bool = False
    #: The output against eager PyTorch float32 on the same inputs; ``None`` for a training step and old records.
    output_check: OutputCheck | None = None

    @property
    def step_macs(self) -> int:
        """MACs of what one timed call does: the forward's, plus the backward's in train mode."""
        return self.macs + self.backward_macs

    @property
    def peak_memory_difference_bytes(self) -> int | None:
        """Measured - estimated activation peak (workspace, allocator, tensors held longer than their
        last use); ``None`` when either is missing."""
        if self.peak_memory_bytes is None or self.estimated_peak_memory_bytes is None:
            return None
        return self.peak_memory_bytes - self.estimated_peak_memory_bytes


@dataclass(frozen=True, kw_only=True)
class LayerRecord(Record):
    """One module of a network (its own time, children excluded) joined to its analytic records.

    ``achieved_gflops`` and ``arithmetic_intensity`` count all work, ``flops + elementwise_ops``
    (so BatchNorm and activations, which have no MACs, still sit on the roofline).
    """

    kind: str = field(init=False, default="layer")
    model: str
    input: tuple[int, ...]
    layer: str
    module_type: str
    category: str
    ops: tuple[str, ...]
    macs: int
    flops: int
    elementwise_ops: int
    bytes_moved: int
    arithmetic_intensity: float
    time_share: float
    mac_share: float
    achieved_gflops: float
    roofline_bound_gflops: float | None
    bound_fraction: float | None


@dataclass(frozen=True, kw_only=True)
class ConvRecord(Record):
    """A standard KxK convolution (M -> N) against depthwise KxK + pointwise 1x1; ``median_ms`` is
    the separable pair's. ``measured_speedup`` = standard / separable time; ``macs_ratio`` is the
    exact separable / standard MAC ratio, ``formula_ratio`` the paper's 1/N + 1/K^2."""

    kind: str = field(init=False, default="conv")
    cin: int
    cout: int
    k: int
    size: tuple[int, int]
    stride: int
    standard_ms: float
    separable_ms: float
    standard_iqr_ms: float
    standard_runs: int
    standard_wide_spread: bool
    standard_times_ms: tuple[float, ...]
    standard_macs: int
    separable_macs: int
    measured_speedup: float
    macs_ratio: float
    formula_ratio: float
    #: The runtime's version and settings (``ModelRecord``'s fields of the same names); records written before
    #: runtimes existed have none.
    runtime_version: str | None = None
    runtime_settings: dict[str, Any] = field(default_factory=dict)
    #: One-time costs (export, quantize, load...) in seconds by phase: the separable pair's, and the standard
    #: conv's (``standard_``, as ``standard_ms``).
    one_time_s: dict[str, float] = field(default_factory=dict)
    standard_one_time_s: dict[str, float] = field(default_factory=dict)
    #: Each stack's output against eager float32 on the same inputs: the separable pair's, and the standard
    #: conv's; ``None`` in records written before runtimes existed.
    output_check: OutputCheck | None = None
    standard_output_check: OutputCheck | None = None


@dataclass(frozen=True, kw_only=True)
class PeakRecord(Record):
    """Measured attainable compute (an n x n matmul in the dtype) and memory bandwidth (a large
    copy: bytes read + bytes written per second). ``median_ms`` is the matmul's."""

    kind: str = field(init=False, default="peak")
    peak_gflops: float
    peak_gbps: float
    matmul_n: int
    copy_bytes: int
    copy_median_ms: float
    copy_iqr_ms: float
    cached: bool = False


#: The record type of each ``kind``.
RECORD_TYPES: dict[str, type[Record]] = {"model": ModelRecord, "layer": LayerRecord, "conv": ConvRecord,
                                         "peak": PeakRecord}


def parse_record(d: Any) -> Record:
    """The typed record one JSON object of a results file holds, by its ``kind``.

    Raises:
        RecordError: an unknown kind, or a key missing or mistyped (one line, naming them).
    """
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in RECORD_TYPES:
        raise RecordError(f"unknown kind {kind!r}" if isinstance(d, dict) else "a line that is not a JSON object")
    return RECORD_TYPES[kind].from_dict(d)
