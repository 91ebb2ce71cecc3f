"""Models side by side as a library result: what ``mbcost compare`` shows, computed once.

``compare_models`` returns a ``Comparison`` of raw results (costs, convention and counter totals, measured
records, runtime rows); nothing here formats a number: ``mbcost.render.comparison`` does. ``measure_conv`` is
``mbcost conv --bench``.

Example::

    from mbcost.comparison import compare_models
    c = compare_models("v1,v2", 224, convention="fvcore", bench=False)
    [cost.macs for cost in c.costs], [cc.total for cc in c.convention_costs]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mbcost.bench.matrix import RuntimeRow
    from mbcost.bench.model_bench import BenchSettings, ModelPlan, RuntimeFailure, Speedup
    from mbcost.bench.records import ConvRecord, ModelRecord
    from mbcost.bench.timer import MeasureFn
    from mbcost.cost.conv import ConvComparison
    from mbcost.cost.conventions import ConventionCost
    from mbcost.cost.result import ModelCost
    from mbcost.counters.base import CounterResult
    from mbcost.zoo.spec import ModelSource

__all__ = ["Comparison", "Progress", "SkippedDevice", "Stage", "compare_models", "measure_conv"]

#: ``progress(done, total, what)``
Progress = Callable[[int, int, str], None]
#: ``stage("counters")`` / ``stage("measuring")``: a context manager yielding a ``Progress`` for that
#: stage of the work (the CLI passes its progress bar).
Stage = Callable[[str], AbstractContextManager[Progress]]


@dataclass(frozen=True)
class SkippedDevice:
    """A device the measurement could not use, and why (the error's message)."""

    device: str
    reason: str


@dataclass(frozen=True)
class Comparison:
    """Several models side by side: raw results, in the order the models were given.

    ``convention_costs[i]`` is ``costs[i]`` under ``convention`` (``"paper"`` by default).
    ``counter_results[i]`` holds one ``CounterResult`` per name in ``counters`` (the library's own
    total on the real module) and ``preset_totals[i]`` each counter's preset total (``apply_convention``),
    the figure the library's total is checked against. ``measured`` holds every ``ModelRecord`` of
    the measurement (``bench``), device by device, ``speedups`` their pairwise speed-ups and
    ``skipped`` the devices that could not run them.

    With runtimes (``runtimes``: the names asked for, ``compare_models(runtime=...)``; or ``precision="int8"``,
    which measures int8 on eager when no runtime is named), ``measured`` also holds each runtime's records at
    ``precision`` next to the eager baseline's (eager at ``dtype``, always measured), ``runtime_rows`` the
    runtime x model rows (``mbcost.bench.matrix``), and ``failures`` the runtimes whose toolchain could not
    export or load a model (the others were still measured).
    """

    costs: tuple[ModelCost, ...]
    convention: str
    convention_costs: tuple[ConventionCost, ...]
    counters: tuple[str, ...] = ()
    counter_results: tuple[tuple[CounterResult, ...], ...] = ()
    preset_totals: tuple[Mapping[str, int], ...] = ()
    bench: bool = False
    measured: tuple[ModelRecord, ...] = ()
    speedups: tuple[Speedup, ...] = ()
    skipped: tuple[SkippedDevice, ...] = ()
    runtimes: tuple[str, ...] = ()
    precision: str = "float32"
    runtime_rows: tuple[RuntimeRow, ...] = ()
    failures: tuple[RuntimeFailure, ...] = ()
    #: Each model's predicted latency (``mbcost.predict``) when this device has a profile for eager float32 at
    #: the current threads (``mbcost calibrate``); empty otherwise.
    predicted: tuple[Any, ...] = ()

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.costs]

    def measured_for(self, label: str) -> list[ModelRecord]:
        """The records of the model labelled ``label``, device by device (and runtime by runtime)."""
        return [r for r in self.measured if r.model == label]

    @property
    def baseline(self) -> list[ModelRecord]:
        """The records of eager PyTorch at the measured dtype (everything, without runtimes), device by device."""
        return [r for r in self.measured if r.runtime == "eager" and r.precision == r.dtype]

    def preset_gap(self, model: int, counter: str) -> int | float:
        """Library total - preset total of ``counter`` on model number ``model`` (0: the preset is exact)."""
        result = next(r for r in self.counter_results[model] if r.counter == counter)
        return result.total - self.preset_totals[model][counter]

    def _repr_html_(self) -> str | None:
        """In Jupyter: ``mbcost compare``'s table (``mbcost.render.html``)."""
        from mbcost import display

        return display.html(self)


def compare_models(
    models: str | Sequence[str | ModelSource],
    inputs: Any = None,
    batch: int = 1,
    *,
    num_classes: int = 1000,
    dtype: str = "float32",
    input_dtype: str | None = None,
    execute: str = "auto",
    mode: str = "inference",
    optimizer: str = "sgd",
    precision: str = "float32",
    counters: str | Sequence[str] | None = None,
    convention: str = "paper",
    bench: bool = True,
    runtime: str | Sequence[str] | None = None,
    measure_fn: MeasureFn | None = None,
    stage: Stage | None = None,
) -> Comparison:
    """Cost ``models`` on ``inputs`` and gather what ``mbcost compare`` shows next to the costs.

    Args:
        models: specs (``mbcost.zoo.resolve_source``), comma-separated or as a sequence (strings or
            ``ModelSource``).
        inputs, batch, num_classes, dtype, input_dtype, execute, mode, optimizer, precision: as
            ``mbcost.analyze`` (``precision="int8"``: the bytes of the int8 models, and with ``bench`` their
            latency, statically quantized by each runtime's own toolchain, on random calibration inputs).
        counters: ``"fvcore,thop"``, ``"all"`` or a sequence of names: each library's own total,
            measured on the real module (CPU, float32, eval mode).
        convention: ``paper`` (default), ``fvcore``, ``thop``, ``torch``, ``ptflops`` or ``ptflops-aten``.
        bench: measure latency with a short budget on the CPU, and on CUDA when torch sees one (at
            ``dtype``, inference); a device that cannot run the dtype or the batch is skipped with
            its reason. On by default, as ``mbcost compare`` (``--no-bench``); ``False`` only counts.
        runtime: runtimes to measure on with ``bench`` (``"eager,onnxruntime,openvino"`` or a sequence; names of
            ``mbcost.bench.runtimes.RUNTIMES``), at ``precision``, next to the eager baseline at ``dtype``: the
            measured rows gain a runtime x model table (median, speed-up against eager, speed-ups between the
            models next to their MAC ratios). ``None``: eager only (eager int8 too with ``precision="int8"``).
        measure_fn: the timer (default ``mbcost.bench.timer.measure``; tests pass a fake one).
        stage: progress reporting, per stage (``"counters"``, ``"measuring"``).

    Returns:
        A ``Comparison``.

    Raises:
        SpecError: a bad spec, an unknown counter, convention or runtime; the errors of ``analyze``;
        CounterUnavailable: a counter library that is not installed;
        RuntimeUnavailable: a runtime whose package is not installed, or that cannot run the request on the CPU
            (checked before anything is measured).
    """
    from mbcost.bench.runtimes import parse_runtimes
    from mbcost.cost.analyze import analyze
    from mbcost.cost.conventions import apply_convention, get_convention
    from mbcost.errors import SpecError
    from mbcost.zoo.spec import resolve_sources

    specs = resolve_sources(models)
    # the runtimes measured on: those named; eager for int8 when none is; else none (no runtime table)
    names = tuple(parse_runtimes(runtime if isinstance(runtime, str) else list(runtime))) if runtime is not None \
        else ("eager",) if bench and precision == "int8" else ()
    if runtime is not None and not bench:
        raise SpecError("--runtime measures latency on each runtime; drop --no-bench (or drop --runtime to only "
                        "count)")
    costs = tuple(analyze(s, inputs, batch, num_classes=num_classes, dtype=dtype, input_dtype=input_dtype,
                          execute=execute, mode=mode, optimizer=optimizer, precision=precision) for s in specs)
    get_convention(convention)  # an unknown name: SpecError
    ccs = tuple(apply_convention(c, convention) for c in costs)
    found: dict[str, Any] = {}
    if counters:
        counter_names, results = _count(specs, costs, counters, batch, num_classes, stage)
        found.update(counters=counter_names, counter_results=results, preset_totals=tuple(
            {n: apply_convention(cost, n).total for n in counter_names} for cost in costs))
    if bench:
        from mbcost.bench.matrix import runtime_rows
        from mbcost.bench.model_bench import RuntimeBench, speedups

        measured, skipped, failures = _measure(specs, costs, batch, dtype, precision, names,
                                               explicit=runtime is not None, num_classes=num_classes,
                                               measure_fn=measure_fn, stage=stage)
        found.update(measured=measured, skipped=skipped, failures=failures, speedups=tuple(speedups(measured)))
        if names:
            found["runtime_rows"] = tuple(runtime_rows(measured, [c.label for c in costs]))
        else:  # eager alone: a failure is the comparison's error (there is no runtime table to show it in)
            RuntimeBench(list(measured), list(failures)).raise_failures()
    return Comparison(costs=costs, convention=convention, convention_costs=ccs, bench=bench, runtimes=names,
                      precision=precision, predicted=_predict(costs, dtype, precision, mode), **found)


def _predict(costs: Sequence[ModelCost], dtype: str, precision: str, mode: str) -> tuple[Any, ...]:
    """Predicted latencies from this device's eager float32 profile at torch's threads, when there is one (a
    missing, mismatched or corrupt profile: none, and nothing is said: prediction is an extra here)."""
    if dtype != "float32" or precision != "float32" or mode != "inference":
        return ()
    from mbcost.predict.predictor import current_key, find_profile, predict_cost
    from mbcost.predict.profile import ProfileError

    key = current_key()
    try:
        profile, _ = find_profile(key)
    except ProfileError:
        return ()
    return tuple(predict_cost(c, profile, key=key) for c in costs)


def _progress(stage: Stage | None, name: str) -> AbstractContextManager[Progress]:
    return stage(name) if stage is not None else nullcontext(lambda done, total, what: None)


def _count(specs: Sequence[ModelSource], costs: Sequence[ModelCost], counters: str | Sequence[str], batch: int,
           num_classes: int, stage: Stage | None) -> tuple[tuple[str, ...], tuple[tuple[CounterResult, ...], ...]]:
    """Each counter's own total on each real module (the module built once per model)."""
    from mbcost.counters.base import measure_many, parse_counters

    names = parse_counters(counters if isinstance(counters, str) else ",".join(counters))
    results = []
    with _progress(stage, "counters") as update:
        for n, (spec, cost) in enumerate(zip(specs, costs, strict=True)):
            update(n, len(specs), f"{cost.label}: {', '.join(names)} on the real module")
            results.append(tuple(measure_many(names, spec, cost.inputs, batch, num_classes=num_classes)))
    return tuple(names), tuple(results)


def _measure(specs: Sequence[ModelSource], costs: Sequence[ModelCost], batch: int, dtype: str, precision: str,
             names: Sequence[str], *, explicit: bool, num_classes: int, measure_fn: MeasureFn | None,
             stage: Stage | None) -> tuple[tuple[ModelRecord, ...], tuple[SkippedDevice, ...],
                                           tuple[RuntimeFailure, ...]]:
    """Short measurements of every model on every runtime, on every available device
    (``mbcost.bench.model_bench.each_device``): the eager baseline at ``dtype`` first, then each of ``names`` (none:
    eager alone) at ``precision`` (``mbcost.bench.model_bench.bench_runtimes``, the path of ``mbcost bench
    --runtime``).

    The runtimes are checked against the CPU before anything is measured: a missing package or an impossible
    request refuses the whole comparison when the runtimes were named (``explicit``), and is noted as skipped
    when they were not (eager int8 on a CPU without torch's x86 quantized engine). On another device a runtime
    that cannot run there is skipped with its reason. A toolchain that fails on a model is a ``RuntimeFailure``;
    the other runtimes and models are still measured.
    """
    from dataclasses import replace

    from mbcost.bench.devices import resolve_device
    from mbcost.bench.model_bench import BenchSettings, bench_runtimes, each_device, plan_models
    from mbcost.bench.runtimes import RuntimeUnavailable

    refused = BenchSettings(resolve_device("cpu"), dtype, precision=precision).validated().refusals(names) \
        if names else {}
    if refused and explicit:
        raise RuntimeUnavailable(next(iter(refused.values())))
    skipped = [SkippedDevice(f"cpu {name} {precision}", reason) for name, reason in refused.items()]
    usable = [name for name in names if name not in refused]

    records: list[ModelRecord] = []
    failures: list[RuntimeFailure] = []
    with _progress(stage, "measuring") as update:
        def plan(settings: BenchSettings) -> list[ModelPlan]:  # every model at its costed inputs
            return [p for spec, cost in zip(specs, costs, strict=True)
                    for p in plan_models([spec], cost.inputs, [batch], settings, num_classes=num_classes)]

        for run in each_device(plan, dtype):
            if run.settings is None:
                skipped.append(SkippedDevice(run.device, str(run.error)))
                continue
            base = run.settings
            jobs = [(base, ["eager"])]
            at_precision = replace(base, precision=precision)
            refused = at_precision.refusals(usable)
            skipped += [SkippedDevice(f"{run.device} {name} {precision}", reason) for name, reason in refused.items()]
            # the baseline itself (eager at the dtype) is measured once
            here = [name for name in usable if name not in refused and not (name == "eager" and precision == dtype)]
            if here:
                jobs.append((at_precision, here))
            for settings, runtimes in jobs:
                done = bench_runtimes(run.plans, settings, runtimes, measure_fn=measure_fn, progress=update)
                records += done.records
                failures += done.failures
    return tuple(records), tuple(skipped), tuple(failures)


def measure_conv(c: ConvComparison, *, measure_fn: MeasureFn | None = None) -> ConvRecord:
    """``mbcost conv --bench``: time the standard conv and the separable pair once on CPU, float32,
    with the quick budget."""
    from mbcost.bench.devices import resolve_device
    from mbcost.bench.model_bench import BenchSettings
    from mbcost.bench.records import busy_cpus_now
    from mbcost.bench.sweep import ConvPoint, bench_conv
    from mbcost.bench.timer import QUICK_BUDGET

    settings = BenchSettings(resolve_device("cpu"), "float32", budget=QUICK_BUDGET).validated()
    point = ConvPoint(c.in_channels, c.out_channels, c.kernel, c.size, c.stride, c.padding, c.batch, c.bias)
    busy = busy_cpus_now()
    with settings.runtime():
        return bench_conv(point, settings, measure_fn=measure_fn, busy_cpus=busy)
