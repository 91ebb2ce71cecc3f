"""Latency of whole networks: the real module, measured, next to its analytic cost.

Every configuration is planned first (analytic cost, memory estimate: a refusal happens before
anything is built or timed), then each network is built fresh (``mbcost.zoo.build_model``, random
weights), put in eval mode, converted to the dtype (and channels-last, and ``torch.compile``
when asked), and its forward pass timed under ``torch.inference_mode`` on a random input.

After the timed runs, one extra forward measures the activation peak (``mbcost.bench.memory``:
the CPU profiler's allocation events, or CUDA's peak counter), recorded next to the engine's
lifetime estimate (``peak_memory_bytes``, ``estimated_peak_memory_bytes``).

``achieved_gflops`` is the analytic FLOPs (2 x MACs of conv and linear layers, the papers'
convention) divided by the median time: the rate at which the network's useful arithmetic gets
done, not a hardware counter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mbcost.bench.devices import (
    Device,
    MemoryEstimate,
    can_keep_heap,
    check_dtype,
    check_memory,
    check_threads,
    runtime,
)
from mbcost.bench.errors import BenchError
from mbcost.bench.records import Env, ModelRecord, Record, RunConfig, busy_cpus_now, capture_env
from mbcost.bench.timer import DEFAULT_BUDGET, Budget, MeasureFn, Measurement, default_measure

if TYPE_CHECKING:
    from mbcost.cost.result import ModelCost
    from mbcost.zoo.spec import ModelSpec

log = logging.getLogger(__name__)

#: ``progress(done, total, description)``: called before each item and once at the end.
Progress = Callable[[int, int, str], None]
OnRecord = Callable[[Record], None]


@dataclass(frozen=True)
class BenchSettings:
    """What a measurement run asks of the device (shared by every model, layer or conv in it)."""

    device: Device
    dtype: str = "float32"
    threads: int | None = None
    channels_last: bool = False
    compile: bool = False
    budget: Budget = DEFAULT_BUDGET
    label: str | None = None
    flush_denormal: bool = True
    cudnn_benchmark: bool | None = None
    keep_heap: bool = True

    def validated(self) -> BenchSettings:
        """Check the dtype against the device and fix the thread count (raises ``DeviceError``)."""
        check_dtype(self.device, self.dtype)
        return replace(self, threads=check_threads(self.threads))

    def config(self, batch: int) -> RunConfig:
        return RunConfig(device=self.device.type, device_name=self.device.name, dtype=self.dtype, batch=batch,
                         threads=self.threads or 0, channels_last=self.channels_last, compile=self.compile,
                         label=self.label)

    def runtime(self) -> Any:
        return runtime(self.device, self.threads or 1, flush_denormal=self.flush_denormal,
                       keep_heap=self.keep_heap, cudnn_benchmark=self.cudnn_benchmark)

    def env(self, busy_cpus: float | None = None) -> Env:
        return capture_env(self.device, self.threads or 0, flush_denormal=self.flush_denormal,
                           kept_heap=self.keep_heap and self.device.type == "cpu" and can_keep_heap(),
                           busy_cpus=busy_cpus)


@dataclass(frozen=True)
class ModelPlan:
    """One network at one batch size, costed and checked against memory, not yet built."""

    spec: ModelSpec
    cost: ModelCost
    config: RunConfig
    memory: MemoryEstimate
    num_classes: int = 1000


def plan_models(specs: Sequence[ModelSpec], inputs: Any, batches: Sequence[int],
                settings: BenchSettings, *, num_classes: int = 1000, input_dtype: str | None = None) -> list[ModelPlan]:
    """Cost every (model, batch) and check that it fits in memory, before measuring anything.

    ``inputs`` is any form ``mbcost.analyze`` takes; ``batches`` apply to the image shorthand
    (``224``, ``"HxW"``), a full shape carries its own batch.

    Raises:
        MemoryRefusal: a configuration whose estimated memory exceeds what is available.
        SpecError: several batch sizes for inputs given as full shapes.
    """
    from mbcost.cost.analyze import analyze
    from mbcost.errors import SpecError

    plans = []
    for spec in specs:
        for batch in batches:
            cost = analyze(spec, inputs, batch, num_classes=num_classes, dtype=settings.dtype,
                           input_dtype=input_dtype)
            if len(batches) > 1 and cost.batch != batch:
                raise SpecError("--batch with several sizes applies to image inputs (224, HxW); a full shape "
                                "carries its own batch")
            memory = check_memory(cost, settings.device)
            plans.append(ModelPlan(spec, cost, settings.config(cost.batch), memory, num_classes))
    return plans


@dataclass(frozen=True)
class ForwardArgs:
    """Real input tensors for a forward call: positional and keyword."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def make_inputs(cost: ModelCost, settings: BenchSettings) -> ForwardArgs:
    """Random tensors of ``cost.inputs``' shapes on the device: floating inputs in the run's dtype
    (channels-last when asked, for 4-D ones), integer inputs (token ids) 0 or 1, bools random."""
    import torch

    dev = settings.device.torch_device
    dtype = getattr(torch, settings.dtype)

    def make(spec: Any) -> Any:
        dt = getattr(torch, spec.dtype)
        if dt.is_floating_point:
            x = torch.randn(spec.shape, device=dev, dtype=dtype)
            if settings.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            return x
        x = torch.randint(0, 2, spec.shape, device=dev)
        return x.bool() if dt == torch.bool else x.to(dt)

    specs = cost.inputs
    return ForwardArgs(tuple(make(i) for i in specs if not i.name), {i.name: make(i) for i in specs if i.name})


def prepare_model(spec: ModelSpec, settings: BenchSettings, cost: ModelCost, *,
                  num_classes: int = 1000) -> tuple[Any, ForwardArgs]:
    """Build ``spec`` on the device in eval mode with the settings applied; return it and its inputs."""
    import torch

    from mbcost.zoo.spec import build_model

    dev = settings.device.torch_device
    dtype = getattr(torch, settings.dtype)
    model = build_model(spec, num_classes=num_classes, device=dev).eval().to(dtype=dtype)
    x = make_inputs(cost, settings)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if settings.compile:
        model = torch.compile(model)
    return model, x


def time_forward(model: Any, x: ForwardArgs, settings: BenchSettings, what: str,
                 measure_fn: MeasureFn | None = None) -> Measurement:
    """Time ``model(*x.args, **x.kwargs)`` under ``inference_mode``; a failing forward pass becomes ``BenchError``."""
    import torch

    measure_fn = default_measure(measure_fn)
    args, kwargs = x.args, x.kwargs

    def forward() -> None:
        model(*args, **kwargs)

    try:
        with torch.inference_mode():
            return measure_fn(forward, settings.budget, threads=settings.threads,
                              device_type=settings.device.type)
    except (RuntimeError, NotImplementedError, ValueError, TypeError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        step = "torch.compile" if settings.compile else "the forward pass"
        raise BenchError(f"{what}: {step} failed on {settings.device.torch_device} ({settings.dtype}): "
                         f"{first[:300]}") from exc


def model_record(plan: ModelPlan, m: Measurement, env: Env, peak_memory_bytes: int | None = None) -> ModelRecord:
    """The record of one measured network (pure: no timing here)."""
    cost = plan.cost
    seconds = m.median
    return ModelRecord(
        **Record.common(plan.config, env, m),
        model=cost.label, input=cost.input, inputs=[i.to_dict() for i in cost.inputs],
        params=cost.params, macs=cost.macs, flops=cost.flops,
        throughput_ips=plan.config.batch / seconds if seconds > 0 else math.inf,
        achieved_gflops=cost.flops / seconds / 1e9 if seconds > 0 else math.inf,
        peak_memory_bytes=peak_memory_bytes, estimated_peak_memory_bytes=cost.peak_activation_bytes,
    )


def measure_memory(model: Any, x: ForwardArgs, settings: BenchSettings, what: str) -> int | None:
    """The measured activation peak of one extra forward (``mbcost.bench.memory``), or ``None``
    (logged) when the pass cannot be measured, e.g. under a profiler the caller already runs."""
    from mbcost.bench.memory import measure_peak_memory

    try:
        return measure_peak_memory(model, x, settings.device)
    except (BenchError, RuntimeError, NotImplementedError, ValueError, TypeError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("%s: memory not measured on %s: %s", what, settings.device.torch_device, first[:300])
        return None


def bench_model(plan: ModelPlan, settings: BenchSettings, *, measure_fn: MeasureFn | None = None,
                env: Env | None = None, busy_cpus: float | None = None) -> ModelRecord:
    """Build and time one planned network, then measure its activation peak in one extra forward
    (after the timed runs, so it never disturbs them); call inside ``settings.runtime()``."""
    model, x = prepare_model(plan.spec, settings, plan.cost, num_classes=plan.num_classes)
    what = f"{plan.cost.label} at batch {plan.config.batch}"
    try:
        m = time_forward(model, x, settings, what, measure_fn)
        peak = measure_memory(model, x, settings, what)
    finally:
        del model, x
        if settings.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()  # hand the cached blocks back before the next network
    return model_record(plan, m, env or settings.env(busy_cpus), peak)


def bench_models(plans: Sequence[ModelPlan], settings: BenchSettings, *,
                 measure_fn: MeasureFn | None = None, on_record: OnRecord | None = None,
                 progress: Progress | None = None) -> list[ModelRecord]:
    """Measure every plan in order; each record goes to ``on_record`` as soon as it is measured.

    Example:
        >>> from mbcost.bench.devices import resolve_device      # doctest: +SKIP
        >>> from mbcost.zoo.spec import parse_models
        >>> s = BenchSettings(resolve_device("cpu")).validated()
        >>> recs = bench_models(plan_models(parse_models("v2"), (224, 224), [1], s), s)
        >>> recs[0].median_ms
        21.7
    """
    return measure_each(
        plans, settings, lambda plan, busy: bench_model(plan, settings, measure_fn=measure_fn, busy_cpus=busy),
        lambda plan: f"{plan.cost.label} batch {plan.config.batch}", on_record=on_record, progress=progress)


def measure_each(items: Sequence[Any], settings: BenchSettings, measure: Callable[[Any, float | None], Any],
                 describe: Callable[[Any], str], *, on_record: OnRecord | None = None,
                 progress: Progress | None = None) -> list[Any]:
    """Measure ``items`` in order under ``settings.runtime()``, handing each record to ``on_record``
    as soon as it exists (so an interrupted run keeps what it finished) and reporting progress.

    ``measure(item, busy_cpus)`` returns the record; the CPUs' busyness is sampled once, before.
    """
    records: list[Any] = []
    busy = busy_cpus_now()
    with settings.runtime():
        for i, item in enumerate(items):
            if progress:
                progress(i, len(items), describe(item))
            record = measure(item, busy)
            records.append(record)
            if on_record:
                on_record(record)
        if progress:
            progress(len(items), len(items), "done")
    return records


@dataclass(frozen=True)
class Speedup:
    """How much faster ``model`` ran than ``other`` under the same configuration, measured and
    as the MAC ratio predicts. ``realised`` = measured / predicted."""

    model: str
    other: str
    config: RunConfig
    measured: float
    macs_ratio: float

    @property
    def realised(self) -> float:
        return self.measured / self.macs_ratio if self.macs_ratio else math.nan


def speedups(records: Sequence[ModelRecord]) -> list[Speedup]:
    """Every ordered pair of records measured under the same configuration.

    ``measured = other.median / model.median``; ``macs_ratio = other.macs / model.macs``.
    """
    out = []
    for a in records:
        for b in records:
            if a is b or a.model == b.model or a.config.key != b.config.key or a.input != b.input:
                continue
            out.append(Speedup(model=a.model, other=b.model, config=a.config,
                               measured=b.median_ms / a.median_ms if a.median_ms > 0 else math.nan,
                               macs_ratio=b.macs / a.macs if a.macs else math.nan))
    return out
