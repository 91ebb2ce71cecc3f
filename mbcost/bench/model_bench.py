"""Latency of whole networks: the real module, measured, next to its analytic cost.

Every configuration is planned first (analytic cost, memory estimate: a refusal happens before
anything is built or timed), then each network is built fresh (``mbcost.zoo.build_model``, random
weights), put in eval mode, converted to the dtype (and channels-last, and ``torch.compile``
when asked), and its forward pass timed under ``torch.inference_mode`` on a random input.

``mode="train"`` times one training step instead (``TrainStep``): the model in train mode
(BatchNorm uses and updates batch statistics), grad enabled, a ``torch.optim`` optimizer and the
inputs built once outside timing; each timed call is ``zero_grad(set_to_none=True)``, the
forward, ``loss = sum of the outputs`` (in float32), ``loss.backward()``, ``opt.step()``. The
memory check uses the training estimate (``devices.estimate_memory`` of a train-mode cost).

After the timed runs, one extra forward measures the activation peak (``mbcost.bench.memory``:
the CPU profiler's allocation events, or CUDA's peak counter), recorded next to the engine's
lifetime estimate (``peak_memory_bytes``, ``estimated_peak_memory_bytes``). In train mode one
extra step is measured instead, next to the step's activation estimate.

``achieved_gflops`` is the analytic FLOPs (2 x MACs of conv and linear layers, the papers'
convention) divided by the median time: the rate at which the network's useful arithmetic gets
done, not a hardware counter. In train mode: 2 x (forward + backward MACs) / median.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
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
from mbcost.bench.timer import DEFAULT_BUDGET, Budget, MeasureFn, Measurement, measure

if TYPE_CHECKING:
    from mbcost.cost.result import ModelCost
    from mbcost.errors import MbcostError
    from mbcost.zoo.spec import ModelSource

__all__ = [
    "BenchSettings", "DeviceRun", "ForwardArgs", "ModelPlan", "OnRecord", "Progress", "Speedup", "TrainStep",
    "bench_model", "bench_models", "each_device", "make_inputs", "make_optimizer", "measure_each", "measure_memory",
    "model_record", "output_loss", "plan_models", "prepare_model", "speedups", "time_forward",
]

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

    spec: ModelSource
    cost: ModelCost
    config: RunConfig
    memory: MemoryEstimate
    num_classes: int = 1000


def plan_models(specs: Sequence[ModelSource], inputs: Any, batches: Sequence[int],
                settings: BenchSettings, *, num_classes: int = 1000, input_dtype: str | None = None,
                mode: str = "inference", optimizer: str = "sgd") -> list[ModelPlan]:
    """Cost every (model, batch) and check that it fits in memory, before measuring anything.

    ``inputs`` is any form ``mbcost.analyze`` takes; ``batches`` apply to the image shorthand
    (``224``, ``"HxW"``), a full shape carries its own batch. ``mode="train"`` plans a training
    step with ``optimizer`` (``sgd``, ``momentum``, ``adam``, ``adamw``), checked against the
    training estimate (weights, gradients, optimizer state, the step's activations).

    Raises:
        MemoryRefusal: a configuration whose estimated memory exceeds what is available.
        SpecError: several batch sizes for inputs given as full shapes; an unknown mode or optimizer.
    """
    from mbcost.cost.analyze import analyze
    from mbcost.errors import SpecError

    plans = []
    for spec in specs:
        for batch in batches:
            cost = analyze(spec, inputs, batch, num_classes=num_classes, dtype=settings.dtype,
                           input_dtype=input_dtype, mode=mode, optimizer=optimizer)
            if len(batches) > 1 and cost.batch != batch:
                raise SpecError("--batch with several sizes applies to image inputs (224, HxW); a full shape "
                                "carries its own batch")
            memory = check_memory(cost, settings.device)
            config = replace(settings.config(cost.batch), mode=cost.mode, optimizer=cost.optimizer)
            plans.append(ModelPlan(spec, cost, config, memory, num_classes))
    return plans


@dataclass(frozen=True)
class DeviceRun:
    """One device of a measurement on every available device: its validated settings and the plans made
    for it, or (``settings`` ``None``) the error that refused it."""

    device: str
    settings: BenchSettings | None = None
    plans: tuple[ModelPlan, ...] = ()
    error: MbcostError | None = None


def each_device(plan: Callable[[BenchSettings], Sequence[ModelPlan]], dtype: str = "float32", *,
                devices: Sequence[str] | None = None, budget: Budget | None = None) -> Iterator[DeviceRun]:
    """The one loop over CPU and CUDA (``devices.available_devices()``, or ``devices``) of the quick
    measurements (``mbcost compare``, ``mbcost report``): per device, settings at ``dtype`` with
    ``budget`` (default ``QUICK_BUDGET``), resolved and validated, and ``plan(settings)`` (which checks
    memory); or the ``MbcostError`` that refused the device. The caller decides what a refusal means
    (``compare`` notes it and goes on; ``report`` raises it for the first device).
    """
    from mbcost.bench.devices import available_devices, resolve_device
    from mbcost.bench.timer import QUICK_BUDGET
    from mbcost.errors import MbcostError

    for dev in available_devices() if devices is None else devices:
        try:
            settings = BenchSettings(resolve_device(dev), dtype, budget=budget or QUICK_BUDGET).validated()
            plans = tuple(plan(settings))
        except MbcostError as exc:
            yield DeviceRun(dev, error=exc)
            continue
        yield DeviceRun(dev, settings, plans)


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
            if (settings.channels_last or spec.channels_last) and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            return x
        x = torch.randint(0, 2, spec.shape, device=dev)
        return x.bool() if dt == torch.bool else x.to(dt)

    specs = cost.inputs
    return ForwardArgs(tuple(make(i) for i in specs if not i.name), {i.name: make(i) for i in specs if i.name})


def prepare_model(spec: ModelSource, settings: BenchSettings, cost: ModelCost, *,
                  num_classes: int = 1000) -> tuple[Any, ForwardArgs]:
    """Build ``spec`` on the device with the settings applied, in eval mode (train mode when
    ``cost.mode == "train"``); return it and its inputs."""
    import torch

    from mbcost.zoo.spec import build_model

    dev = settings.device.torch_device
    dtype = getattr(torch, settings.dtype)
    model = build_model(spec, num_classes=num_classes, device=dev).train(cost.mode == "train").to(dtype=dtype)
    x = make_inputs(cost, settings)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if settings.compile:
        model = torch.compile(model)
    return model, x


def time_forward(model: Any, x: ForwardArgs, settings: BenchSettings, what: str,
                 measure_fn: MeasureFn | None = None, *, step: Callable[[], Any] | None = None) -> Measurement:
    """Time ``model(*x.args, **x.kwargs)`` under ``inference_mode``, or ``step()`` (a ``TrainStep``)
    with grad enabled when given; a failing call becomes ``BenchError``."""
    import contextlib

    import torch

    measure_fn = measure_fn or measure
    args, kwargs = x.args, x.kwargs

    def forward() -> None:
        model(*args, **kwargs)

    fn = step or forward
    try:
        with torch.inference_mode() if step is None else contextlib.nullcontext():
            return measure_fn(fn, settings.budget, threads=settings.threads, device_type=settings.device.type)
    except (RuntimeError, NotImplementedError, ValueError, TypeError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        failed = "torch.compile" if settings.compile else ("the training step" if step else "the forward pass")
        raise BenchError(f"{what}: {failed} failed on {settings.device.torch_device} ({settings.dtype}): "
                         f"{first[:300]}") from exc


def make_optimizer(model: Any, name: str) -> Any:
    """The ``torch.optim`` optimizer of ``mbcost.cost.training.OPTIMIZERS[name]`` over the model's
    trainable parameters: ``sgd`` SGD, ``momentum`` SGD with momentum 0.9, ``adam`` Adam, ``adamw``
    AdamW (weight decay 0.01); learning rate 1e-3 (small: random weights, a sum loss, many steps).
    The default implementation (foreach on CUDA, per-tensor loops on CPU), as a training script gets."""
    import torch

    from mbcost.errors import SpecError

    params = [p for p in model.parameters() if p.requires_grad]
    makers = {
        "sgd": lambda: torch.optim.SGD(params, lr=1e-3),
        "momentum": lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
        "adam": lambda: torch.optim.Adam(params, lr=1e-3),
        "adamw": lambda: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01),
    }
    if name not in makers:
        raise SpecError(f"unknown optimizer {name!r}; choose one of {', '.join(makers)}")
    return makers[name]()


def output_loss(out: Any) -> Any:
    """``out.float().sum()`` for a tensor; the sum of that over every floating tensor in a tuple,
    list or dict output (integer outputs such as indices carry no gradient).

    Raises:
        BenchError: the output holds no tensor that requires a gradient.
    """
    import torch

    leaves = []

    def collect(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            if x.requires_grad:
                leaves.append(x.float().sum())
        elif isinstance(x, (tuple, list)):
            for v in x:
                collect(v)
        elif isinstance(x, dict):
            for v in x.values():
                collect(v)

    collect(out)
    if not leaves:
        raise BenchError(f"the model's output ({type(out).__name__}) holds no tensor that requires a gradient; "
                         "nothing to train")
    return leaves[0] if len(leaves) == 1 else torch.stack(leaves).sum()


class TrainStep:
    """One training step of ``model`` on fixed inputs, built once outside timing: each call is
    ``zero_grad(set_to_none=True)``, forward, ``loss = output_loss(out)``, ``loss.backward()``,
    ``optimizer.step()``. Call it with grad enabled (not under ``inference_mode``)."""

    def __init__(self, model: Any, x: ForwardArgs, optimizer: str) -> None:
        self.model = model
        self.args, self.kwargs = x.args, x.kwargs
        self.optimizer = make_optimizer(model, optimizer)

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(*self.args, **self.kwargs)
        loss = output_loss(out)
        loss.backward()
        self.optimizer.step()


def model_record(plan: ModelPlan, m: Measurement, env: Env, peak_memory_bytes: int | None = None) -> ModelRecord:
    """The record of one measured network (pure: no timing here). In train mode the work is the
    step's: ``achieved_gflops`` = 2 x (forward + backward MACs) / median."""
    cost = plan.cost
    seconds = m.median
    train = cost.mode == "train"
    backward_macs = cost.backward_macs if train else 0
    flops = 2 * (cost.macs + backward_macs)
    return ModelRecord(
        **Record.common(plan.config, env, m),
        model=cost.label, input=cost.input, inputs=[i.to_dict() for i in cost.inputs],
        params=cost.params, macs=cost.macs, flops=cost.flops,
        throughput_ips=plan.config.batch / seconds if seconds > 0 else math.inf,
        achieved_gflops=flops / seconds / 1e9 if seconds > 0 else math.inf,
        peak_memory_bytes=peak_memory_bytes,
        estimated_peak_memory_bytes=_estimated_peak(cost),
        mode=cost.mode, optimizer=cost.optimizer, backward_macs=backward_macs,
    )


def _estimated_peak(cost: ModelCost) -> int | None:
    """The estimate a measured peak is compared with: the forward's live activations; for a training
    step, its gradients too (freed before the measured step) with the step's activations."""
    if cost.mode != "train":
        return cost.peak_activation_bytes
    if cost.train_peak_activation_bytes is None:
        return None
    return cost.train_peak_activation_bytes + cost.trainable_params * cost.dtype_bytes


def measure_memory(model: Any, x: ForwardArgs, settings: BenchSettings, what: str,
                   step: TrainStep | None = None) -> int | None:
    """The measured activation peak of one extra forward, or of one extra training ``step``
    (``mbcost.bench.memory``), or ``None`` (logged) when the pass cannot be measured, e.g. under a
    profiler the caller already runs."""
    from mbcost.bench.memory import measure_peak_memory, measure_step_memory

    try:
        if step is not None:
            return measure_step_memory(step, settings.device)
        return measure_peak_memory(model, x, settings.device)
    except (BenchError, RuntimeError, NotImplementedError, ValueError, TypeError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("%s: memory not measured on %s: %s", what, settings.device.torch_device, first[:300])
        return None


def bench_model(plan: ModelPlan, settings: BenchSettings, *, measure_fn: MeasureFn | None = None,
                env: Env | None = None, busy_cpus: float | None = None) -> ModelRecord:
    """Build and time one planned network, then measure its activation peak in one extra forward
    (after the timed runs, so it never disturbs them); call inside ``settings.runtime()``.

    A train-mode plan times a ``TrainStep`` (optimizer ``plan.config.optimizer``) and measures the
    peak of one more step (gradients freed beforehand, so the step allocates them)."""
    model, x = prepare_model(plan.spec, settings, plan.cost, num_classes=plan.num_classes)
    what = f"{plan.cost.label} at batch {plan.config.batch}"
    step: TrainStep | None = None
    try:
        if plan.cost.mode == "train":
            step = TrainStep(model, x, plan.cost.optimizer or "sgd")
            m = time_forward(model, x, settings, what, measure_fn, step=step)
            peak = measure_memory(model, x, settings, what, step)
        else:
            m = time_forward(model, x, settings, what, measure_fn)
            peak = measure_memory(model, x, settings, what)
    finally:
        del model, x, step
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
        >>> from mbcost.zoo.spec import resolve_sources
        >>> s = BenchSettings(resolve_device("cpu")).validated()
        >>> recs = bench_models(plan_models(resolve_sources("v2"), (224, 224), [1], s), s)
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
    """Every ordered pair of records measured under the same configuration (mode and optimizer
    included: an inference forward is never compared with a training step).

    ``measured = other.median / model.median``; ``macs_ratio = other.step_macs / model.step_macs``
    (forward MACs, plus backward MACs in train mode).
    """
    out = []
    for a in records:
        for b in records:
            if a is b or a.model == b.model or a.config.key != b.config.key or a.input != b.input:
                continue
            out.append(Speedup(model=a.model, other=b.model, config=a.config,
                               measured=b.median_ms / a.median_ms if a.median_ms > 0 else math.nan,
                               macs_ratio=b.step_macs / a.step_macs if a.step_macs else math.nan))
    return out
