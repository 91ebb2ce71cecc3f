"""Latency of whole networks: the real module, measured, next to its analytic cost.

Every configuration is planned first (analytic cost and memory estimate: a refusal comes before anything is
built or timed). Each network is then built fresh (random weights, eval mode, the dtype and layout asked
for) and its forward pass timed under ``torch.inference_mode``, or one training step (``TrainStep``) with
``mode="train"``; one extra pass measures the activation peak (``mbcost.bench.memory``). The method is
described in docs/latency.md. ``achieved_gflops`` = analytic FLOPs (2 x MACs; in train mode forward +
backward) / median time: the rate of the network's useful arithmetic, not a hardware counter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
from mbcost.bench.records import Env, ModelRecord, OutputCheck, Record, RunConfig, busy_cpus_now, capture_env
from mbcost.bench.runtimes.base import ForwardArgs, Prepared, Runtime, RuntimeJob
from mbcost.bench.runtimes.eager import EAGER
from mbcost.bench.timer import DEFAULT_BUDGET, Budget, MeasureFn, Measurement, measure
from mbcost.errors import first_line

if TYPE_CHECKING:
    from mbcost.cost.result import ModelCost
    from mbcost.errors import MbcostError
    from mbcost.zoo.spec import ModelSource

__all__ = [
    "BenchSettings", "DeviceRun", "ForwardArgs", "ModelPlan", "OnRecord", "Progress", "RuntimeBench", "RuntimeFailure",
    "Speedup", "TrainStep", "bench_model", "bench_models", "bench_runtimes", "each_device", "each_runtime", "failing",
    "make_inputs", "make_optimizer", "measure_memory", "model_record", "open_runtime", "output_loss",
    "plan_models", "prepare_model", "reference_outputs", "runtime_check", "speedups", "time_call", "time_forward",
]

log = logging.getLogger(__name__)

#: ``progress(done, total, description)``: called before each item and once at the end.
Progress = Callable[[int, int, str], None]
OnRecord = Callable[[Record], None]
#: What a failing forward, step or runtime call raises (torch and the toolchains use all of these).
CALL_ERRORS = (RuntimeError, NotImplementedError, ValueError, TypeError, AssertionError)


@contextmanager
def failing(what: str) -> Iterator[None]:
    """A failing call becomes ``BenchError("{what}: {its first line}")``."""
    try:
        yield
    except CALL_ERRORS as exc:
        raise BenchError(f"{what}: {first_line(exc, 300)}") from exc


def _timed(fn: Callable[[], Any], settings: BenchSettings, measure_fn: MeasureFn | None, grad_free: bool,
           failed: str) -> Measurement:
    """``fn`` timed by the one timer (under ``inference_mode`` when ``grad_free``); a failure -> ``BenchError``."""
    import contextlib

    import torch

    with failing(failed), torch.inference_mode() if grad_free else contextlib.nullcontext():
        return (measure_fn or measure)(fn, settings.budget, threads=settings.threads, device_type=settings.device.type)


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
    #: ``float32`` (the network in ``dtype``) or ``int8`` (static post-training quantization, each
    #: runtime's own toolchain; ``mbcost.bench.runtimes``).
    precision: str = "float32"
    #: int8: a file of calibration batches (``runtimes.calibration.load_calibration``); ``None``: random inputs.
    calibration: str | None = None
    #: Allow more threads than the process has CPUs (refused otherwise; the records say so).
    oversubscribe: bool = False

    def validated(self) -> BenchSettings:
        """Check the dtype against the device and fix the thread count (raises ``DeviceError``)."""
        from mbcost.bench.runtimes import PRECISIONS
        from mbcost.errors import SpecError

        check_dtype(self.device, self.dtype)
        if self.precision not in PRECISIONS:
            raise SpecError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")
        if self.calibration is not None and self.precision != "int8":
            raise SpecError("--calibration feeds the int8 quantizer; add --precision int8")
        return replace(self, threads=check_threads(self.threads, oversubscribe=self.oversubscribe))

    def default_runtimes(self) -> tuple[str, ...]:
        """``compile`` when ``compile`` is set (``--compile`` is its alias), else ``eager``."""
        return ("compile",) if self.compile else ("eager",)

    def check_runtimes(self, runtimes: Sequence[str], mode: str = "inference") -> None:
        """Refuse (one line, ``RuntimeUnavailable``) a runtime that is not installed or cannot run these settings."""
        from mbcost.bench.runtimes import RuntimeUnavailable

        if self.compile and any(r != "compile" for r in runtimes):
            raise RuntimeUnavailable("--compile is an alias of --runtime compile; list compile in --runtime instead")
        refused = self.refusals(runtimes, mode)
        for name in runtimes:
            if name in refused:
                raise RuntimeUnavailable(refused[name])
            if self.channels_last and name not in ("eager", "compile"):
                raise RuntimeUnavailable(f"--channels-last is PyTorch's memory format; --runtime {name} chooses its "
                                         "own layouts")

    def refusals(self, runtimes: Sequence[str], mode: str = "inference") -> dict[str, str]:
        """Why each of ``runtimes`` that cannot measure these settings cannot (one line), by name."""
        from mbcost.bench.runtimes import get_runtime

        reasons = {name: get_runtime(name).refusal(self.precision, self.dtype, self.device, mode) for name in runtimes}
        return {name: reason for name, reason in reasons.items() if reason}

    @property
    def computes_in(self) -> str:
        """What the runtimes compute in: ``int8``, or the float dtype."""
        return "int8" if self.precision == "int8" else self.dtype

    def is_reference(self, runtime: str) -> bool:
        """Eager float32 in its own layout is the output checks' reference itself: nothing to compare."""
        return runtime == "eager" and self.computes_in == "float32" and not self.channels_last

    def job(self, calibration: tuple[ForwardArgs, ...] = ()) -> RuntimeJob:
        """What a runtime is asked to prepare under these settings (``calibration``: int8's input batches)."""
        return RuntimeJob(precision=self.precision, threads=self.threads or 1, device=self.device, dtype=self.dtype,
                          channels_last=self.channels_last, flush_denormal=self.flush_denormal, calibration=calibration)

    def on_runtime(self, config: RunConfig, runtime: str) -> RunConfig:
        """``config`` as measured on ``runtime`` (its name and precision recorded)."""
        return replace(config, runtime=runtime, precision=self.computes_in, compile=runtime == "compile")

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
    args, kwargs = x.args, x.kwargs

    def forward() -> None:
        model(*args, **kwargs)

    failed = "torch.compile" if settings.compile else ("the training step" if step else "the forward pass")
    return _timed(step or forward, settings, measure_fn, step is None,
                  f"{what}: {failed} failed on {settings.device.torch_device} ({settings.dtype})")


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
    from torch.utils._pytree import tree_leaves

    leaves = [x.float().sum() for x in tree_leaves(out) if isinstance(x, torch.Tensor) and x.requires_grad]
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


def model_record(plan: ModelPlan, m: Measurement, env: Env, peak_memory_bytes: int | None = None, *,
                 config: RunConfig | None = None, **runtime: Any) -> ModelRecord:
    """The record of one measured network (pure: no timing here). In train mode the work is the
    step's: ``achieved_gflops`` = 2 x (forward + backward MACs) / median. ``config`` replaces the plan's
    (another runtime or precision); ``runtime`` holds the runtime's fields (``runtime_version``,
    ``runtime_settings``, ``one_time_s``, ``calibration``, ``batchnorm_reestimated``, ``output_check``; an
    ``estimated_peak_memory_bytes`` there replaces the analytic estimate: ``None`` for int8, whose activations
    the float estimate does not count)."""
    cost = plan.cost
    estimated = runtime.pop("estimated_peak_memory_bytes", _estimated_peak(cost))
    seconds = m.median
    train = cost.mode == "train"
    backward_macs = cost.backward_macs if train else 0
    flops = 2 * (cost.macs + backward_macs)
    return ModelRecord(
        **Record.common(config or plan.config, env, m), **runtime,
        model=cost.label, input=cost.input, inputs=[i.to_dict() for i in cost.inputs],
        params=cost.params, macs=cost.macs, flops=cost.flops,
        throughput_ips=plan.config.batch / seconds if seconds > 0 else math.inf,
        achieved_gflops=flops / seconds / 1e9 if seconds > 0 else math.inf,
        peak_memory_bytes=peak_memory_bytes,
        estimated_peak_memory_bytes=estimated,
        mode=cost.mode, optimizer=cost.optimizer, backward_macs=backward_macs,
        **({} if runtime.get("runtime_version") else {"runtime_version": EAGER.version()}),  # torch's
    )


def _estimated_peak(cost: ModelCost) -> int | None:
    """The estimate a measured peak is compared with: the forward's live activations; for a training
    step, its gradients too (freed before the measured step) with the step's activations."""
    if cost.mode != "train":
        return cost.peak_activation_bytes
    if cost.train_peak_activation_bytes is None:
        return None
    return cost.train_peak_activation_bytes + cost.train_grad_bytes


def measure_memory(model: Any, x: ForwardArgs, settings: BenchSettings, what: str,
                   step: TrainStep | None = None) -> int | None:
    """The measured activation peak of one extra forward, or of one extra training ``step``
    (``mbcost.bench.memory``), or ``None`` (logged) when the pass cannot be measured, e.g. under a
    profiler the caller already runs. The profiler's own C++ warnings (a block allocated before it
    started, freed during the pass) are kept off the output (``runtimes.base.quiet``)."""
    from mbcost.bench.memory import measure_peak_memory, measure_step_memory
    from mbcost.bench.runtimes.base import quiet

    try:
        with quiet():
            if step is not None:
                return measure_step_memory(step, settings.device)
            return measure_peak_memory(model, x, settings.device)
    except (BenchError, *CALL_ERRORS) as exc:
        log.warning("%s: memory not measured on %s: %s", what, settings.device.torch_device, first_line(exc, 300))
        return None


def time_call(prepared: Any, settings: BenchSettings, what: str, runtime: str,
              measure_fn: MeasureFn | None = None) -> Measurement:
    """Time a prepared runtime's ``call`` (``runtimes.base.Prepared``) with the one timer, under
    ``inference_mode`` when it is a torch module's call; a failing call becomes ``BenchError``."""
    return _timed(prepared.call, settings, measure_fn, prepared.grad_free,
                  f"{what}: the {runtime} call failed on {settings.device.torch_device}")


def _release(settings: BenchSettings) -> None:
    """On CUDA, hand the cached blocks back before the next network."""
    if settings.device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def _bench_train_step(plan: ModelPlan, settings: BenchSettings, measure_fn: MeasureFn | None,
                      env: Env) -> ModelRecord:
    """The training step of a train-mode plan (eager; ``TrainStep``) and the peak of one more step."""
    model, x = prepare_model(plan.spec, settings, plan.cost, num_classes=plan.num_classes)
    what = f"{plan.cost.label} at batch {plan.config.batch}"
    step: TrainStep | None = None
    try:
        step = TrainStep(model, x, plan.cost.optimizer or "sgd")
        m = time_forward(model, x, settings, what, measure_fn, step=step)
        peak = measure_memory(model, x, settings, what, step)
    finally:
        del model, x, step
        _release(settings)
    return model_record(plan, m, env, peak)


def bench_model(plan: ModelPlan, settings: BenchSettings, *, runtime: str | None = None,
                measure_fn: MeasureFn | None = None, env: Env | None = None,
                busy_cpus: float | None = None) -> ModelRecord:
    """Build, prepare and time one planned network on one runtime; call inside ``settings.runtime()``.

    The network is built fresh on the CPU in float32 (random weights) and, for int8, its BatchNorm
    statistics are re-estimated on the calibration inputs (``runtimes.calibration``). Its eager float32
    outputs on ``CHECK_SAMPLES`` seeded input sets are the reference; the runtime (``runtime``, default
    ``settings.default_runtimes()[0]``) then prepares it (one-time phases timed apart), its outputs on the
    same inputs are checked against the reference, and its call on the first input set is timed by the
    one timer. The eager and compile runtimes also get the activation peak of one extra forward (after
    the timed runs, so it never disturbs them).

    A train-mode plan times a ``TrainStep`` (optimizer ``plan.config.optimizer``) and measures the
    peak of one more step (gradients freed beforehand, so the step allocates them); eager only.

    Raises:
        ExportError: the runtime's toolchain could not export, quantize or load the network (its reason).
        BenchError: the runtime's call failed.
    """
    from mbcost.bench.runtimes import get_runtime
    from mbcost.bench.runtimes.calibration import (
        CHECK_SAMPLES,
        load_calibration,
        random_calibration,
        random_inputs,
        reestimate_batchnorm,
    )
    from mbcost.zoo.spec import build_model

    env = env or settings.env(busy_cpus)
    if plan.cost.mode == "train":
        return _bench_train_step(plan, settings, measure_fn, env)
    name = runtime or settings.default_runtimes()[0]
    adapter = get_runtime(name)
    int8 = settings.precision == "int8"
    cost = plan.cost
    what = f"{cost.label} at batch {plan.config.batch} on {name}" + (" int8" if int8 else "")
    calibration = None
    if int8:
        calibration = load_calibration(settings.calibration, cost) if settings.calibration else \
            random_calibration(cost)
    model = build_model(plan.spec, num_classes=plan.num_classes, device="cpu").eval()
    reestimated = bool(calibration) and reestimate_batchnorm(model, calibration.batches)
    is_reference = settings.is_reference(name)  # nothing to compare, nothing extra to run
    samples = [random_inputs(cost, seed) for seed in range(1 if is_reference else CHECK_SAMPLES)]
    reference = None if is_reference else reference_outputs(model, samples, settings)
    job = settings.job(calibration.batches if calibration else ())
    with open_runtime(adapter, model, samples[0], job, settings) as prepared:
        del model  # the runtime holds what it needs; the float module can go while timing
        check = runtime_check(prepared, samples, reference, settings.computes_in, what)
        m = time_call(prepared, settings, what, name, measure_fn)
        applied, phases = dict(prepared.settings), dict(prepared.phases)
        peak = None
        if prepared.model is not None and prepared.inputs is not None:
            peak = measure_memory(prepared.model, prepared.inputs, settings, what)
    config = settings.on_runtime(plan.config, name)
    extra = {"estimated_peak_memory_bytes": None} if int8 else {}  # the estimate counts float32 activations
    return model_record(plan, m, env, peak, config=config, **extra, runtime_version=adapter.version(),
                        runtime_settings=applied, one_time_s=phases,
                        calibration=calibration.describe() if calibration else None,
                        batchnorm_reestimated=reestimated, output_check=check)


@contextmanager
def open_runtime(adapter: Runtime, model: Any, sample: ForwardArgs, job: RuntimeJob,
                 settings: BenchSettings) -> Iterator[Prepared]:
    """``adapter.prepare(model, sample, job)`` in a temporary working directory (the toolchain's files), yielding
    the prepared runtime; on exit it is closed (what ``prepare`` changed in the process restored) and, on CUDA,
    the cached blocks handed back. Every measurement on a runtime goes through here: networks (``bench_model``)
    and the conv sweep's layer stacks (``mbcost.bench.sweep``).

    Raises:
        ExportError: the runtime's toolchain could not export, quantize or load ``model`` (its reason).
    """
    import tempfile

    prepared = None
    with tempfile.TemporaryDirectory(prefix="mbcost-runtime-") as workdir:
        try:
            prepared = adapter.prepare(model, sample, replace(job, workdir=workdir))
            del model  # this frame stays alive while the caller measures: it must not keep the module
            yield prepared
        finally:
            if prepared is not None and prepared.close is not None:
                prepared.close()
            del prepared
            _release(settings)


def runtime_check(prepared: Prepared, samples: Sequence[ForwardArgs], reference: Sequence[Sequence[Any]] | None,
                  precision: str, what: str) -> OutputCheck:
    """The prepared runtime's outputs on ``samples`` against ``reference`` (eager float32's, ``reference_outputs``);
    ``reference=None``: the runtime is eager float32 itself, nothing to compare. A failed check is logged loudly."""
    import torch

    from mbcost.bench.runtimes.check import REFERENCE, check_outputs, tolerance_for

    if reference is None:
        return OutputCheck(reference=REFERENCE, samples=0, max_abs_error=0.0, rel_error=0.0,
                           tolerance=tolerance_for(precision), passed=True, note="the reference itself")
    with torch.inference_mode():
        outputs = [prepared.run(x) for x in samples]
    check = check_outputs(reference, outputs, precision)
    if not check.passed:
        log.warning("%s: OUTPUT CHECK FAILED: %s", what, _check_text(check))
    return check


def _check_text(check: Any) -> str:
    if check.rel_error is None:
        return check.note or "no comparable output"
    return f"max relative error {check.rel_error:.3g} above {check.tolerance:g}" + \
        (f" ({check.note})" if check.note else "")


def reference_outputs(model: Any, samples: Sequence[ForwardArgs], settings: BenchSettings) -> list[list[Any]]:
    """Eager float32 outputs of ``model`` on each input set, on the run's device, as CPU tensors."""
    import torch

    from mbcost.bench.runtimes.base import to_tensors

    dev = settings.device.torch_device
    on_device = model.to(dev)
    try:
        with failing(f"{model.__class__.__name__}: the eager float32 reference forward failed on {dev}"), \
                torch.inference_mode():
            return [to_tensors(on_device(*[a.to(dev) if isinstance(a, torch.Tensor) else a for a in x.args],
                                         **{k: v.to(dev) if isinstance(v, torch.Tensor) else v
                                            for k, v in x.kwargs.items()})) for x in samples]
    finally:
        model.to("cpu")


@dataclass(frozen=True)
class RuntimeFailure:
    """A runtime that could not measure a network: which, and the toolchain's reason (one line)."""

    model: str
    batch: int
    runtime: str
    precision: str
    reason: str

    @property
    def message(self) -> str:
        return f"{self.model} (batch {self.batch}) on {self.runtime} {self.precision}: {self.reason}"


@dataclass(frozen=True)
class RuntimeBench:
    """What ``bench_runtimes`` (``ModelRecord``) or ``sweep.sweep_runtimes`` (``ConvRecord``) measured, and what
    it could not (the other runtimes still ran)."""

    records: list[Any]
    failures: list[RuntimeFailure]

    def raise_failures(self) -> None:
        """``BenchError`` (one line, every failure) when any runtime failed; nothing otherwise."""
        if self.failures:
            raise BenchError("; ".join(f.message for f in self.failures)
                             + (f" ({len(self.records)} measurement(s) finished)" if self.records else ""))


def bench_runtimes(plans: Sequence[ModelPlan], settings: BenchSettings, runtimes: Sequence[str] | None = None, *,
                   measure_fn: MeasureFn | None = None, on_record: OnRecord | None = None,
                   progress: Progress | None = None) -> RuntimeBench:
    """Measure every plan on every runtime (``mbcost.bench.runtimes``), plan by plan, runtime by runtime.

    Every runtime is checked first (installed, able to run the precision, dtype, device and mode: a
    ``RuntimeUnavailable`` refusal before anything is built). A runtime whose toolchain cannot export or
    load a network (``BenchError``) becomes a ``RuntimeFailure``, and the other runtimes and networks are
    still measured; each record goes to ``on_record`` as soon as it exists.

    Example:
        >>> from mbcost.bench.devices import resolve_device      # doctest: +SKIP
        >>> from mbcost.zoo.spec import resolve_sources
        >>> s = BenchSettings(resolve_device("cpu"), threads=1, precision="int8").validated()
        >>> run = bench_runtimes(plan_models(resolve_sources("v2"), 224, [1], s), s, ["eager", "onnxruntime"])
        >>> [(r.runtime, r.precision, r.output_check.top1_agreement) for r in run.records]
    """
    names = tuple(runtimes) if runtimes else settings.default_runtimes()
    for mode in dict.fromkeys(p.cost.mode for p in plans):
        settings.check_runtimes(names, mode)
    if settings.calibration:
        from mbcost.bench.runtimes.calibration import load_calibration

        for plan in plans:  # a bad file is refused before anything is measured
            load_calibration(settings.calibration, plan.cost)
    return each_runtime(
        [(plan, name) for plan in plans for name in names], settings,
        lambda plan, name, busy: bench_model(plan, settings, runtime=name, measure_fn=measure_fn, busy_cpus=busy),
        lambda plan: (plan.cost.label, plan.config.batch),
        lambda item: f"{item[0].cost.label} batch {item[0].config.batch} on {item[1]}",
        on_record=on_record, progress=progress)


def each_runtime(items: Sequence[tuple[Any, str]], settings: BenchSettings,
                 bench_one: Callable[[Any, str, float | None], Any], identify: Callable[[Any], tuple[str, int]],
                 describe: Callable[[Any], str], *, on_record: OnRecord | None = None,
                 progress: Progress | None = None) -> RuntimeBench:
    """Measure each ``(target, runtime)`` item in order under ``settings.runtime()`` with ``bench_one(target,
    runtime, busy_cpus)`` (the CPUs' busyness sampled once, before): a runtime whose toolchain fails on a target
    (``BenchError``) becomes a ``RuntimeFailure`` named by ``identify(target)`` (label, batch), and the other items
    are still measured; each record goes to ``on_record`` as soon as it exists (so an interrupted
    run keeps what it finished). One loop for networks (``bench_runtimes``) and convolution pairs
    (``sweep.sweep_runtimes``)."""
    records: list[Any] = []
    failures: list[RuntimeFailure] = []
    busy = busy_cpus_now()
    with settings.runtime():
        for i, (target, name) in enumerate(items):
            if progress:
                progress(i, len(items), describe((target, name)))
            try:
                record = bench_one(target, name, busy)
            except BenchError as exc:
                failures.append(RuntimeFailure(*identify(target), name, settings.computes_in, str(exc)))
                continue
            records.append(record)
            if on_record:
                on_record(record)
        if progress:
            progress(len(items), len(items), "done")
    return RuntimeBench(records, failures)


def bench_models(plans: Sequence[ModelPlan], settings: BenchSettings, *,
                 measure_fn: MeasureFn | None = None, on_record: OnRecord | None = None,
                 progress: Progress | None = None, runtimes: Sequence[str] | None = None) -> list[ModelRecord]:
    """``bench_runtimes``' records; its failures raised (``BenchError``, one line) after everything else
    was measured."""
    run = bench_runtimes(plans, settings, runtimes, measure_fn=measure_fn, on_record=on_record, progress=progress)
    run.raise_failures()
    return run.records


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

    @classmethod
    def between(cls, a: ModelRecord, b: ModelRecord) -> Speedup:
        """``a`` against ``b``: ``measured = b.median / a.median``, ``macs_ratio = b.step_macs / a.step_macs``."""
        return cls(model=a.model, other=b.model, config=a.config,
                   measured=b.median_ms / a.median_ms if a.median_ms > 0 else math.nan,
                   macs_ratio=b.step_macs / a.step_macs if a.step_macs else math.nan)


def speedups(records: Sequence[ModelRecord]) -> list[Speedup]:
    """``Speedup.between`` every ordered pair of records measured under the same configuration (mode and
    optimizer included: an inference forward is never compared with a training step)."""
    return [Speedup.between(a, b) for a in records for b in records
            if a.model != b.model and a.config.key == b.config.key and a.input == b.input]
