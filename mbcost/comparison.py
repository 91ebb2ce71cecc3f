"""Models side by side as a library result: what ``mbcost compare`` shows, computed once.

``compare_models`` costs every model (``mbcost.analyze``), applies a counting convention to each
(``apply_convention``), runs other counters on the real modules (``--counters``) and measures
latency on CPU and CUDA (``--bench``); ``Comparison`` keeps the raw results (exact integers,
``ConventionCost``, ``CounterResult`` and ``ModelRecord`` objects). Nothing here formats a number:
``mbcost.render.comparison`` turns a ``Comparison`` into the table, the CSV rows and the JSON
document, and the CLI only calls the two.

``measure_conv`` is ``mbcost conv --bench``: one standard convolution against its depthwise +
pointwise pair, timed once on the CPU.

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
    from mbcost.bench.model_bench import Speedup
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

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.costs]

    def measured_for(self, label: str) -> list[ModelRecord]:
        """The records of the model labelled ``label``, device by device."""
        return [r for r in self.measured if r.model == label]

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
    measure_fn: MeasureFn | None = None,
    stage: Stage | None = None,
) -> Comparison:
    """Cost ``models`` on ``inputs`` and gather what ``mbcost compare`` shows next to the costs.

    Args:
        models: specs (``mbcost.zoo.resolve_source``), comma-separated or as a sequence (strings or
            ``ModelSource``).
        inputs, batch, num_classes, dtype, input_dtype, execute, mode, optimizer, precision: as
            ``mbcost.analyze`` (``precision="int8"``: the bytes of the int8 models; not with ``bench``, which
            times eager float32).
        counters: ``"fvcore,thop"``, ``"all"`` or a sequence of names: each library's own total,
            measured on the real module (CPU, float32, eval mode).
        convention: ``paper`` (default), ``fvcore``, ``thop``, ``torch``, ``ptflops`` or ``ptflops-aten``.
        bench: measure latency with a short budget on the CPU, and on CUDA when torch sees one (at
            ``dtype``, inference); a device that cannot run the dtype or the batch is skipped with
            its reason. On by default, as ``mbcost compare`` (``--no-bench``); ``False`` only counts.
        measure_fn: the timer (default ``mbcost.bench.timer.measure``; tests pass a fake one).
        stage: progress reporting, per stage (``"counters"``, ``"measuring"``).

    Returns:
        A ``Comparison``.

    Raises:
        SpecError: a bad spec, an unknown counter or convention; the errors of ``analyze``;
        CounterUnavailable: a counter library that is not installed.
    """
    from mbcost.cost.analyze import analyze
    from mbcost.cost.conventions import apply_convention, get_convention
    from mbcost.errors import SpecError
    from mbcost.zoo.spec import resolve_sources

    specs = resolve_sources(models)
    if bench and precision != "float32":
        raise SpecError(f"compare times eager {dtype} only; add --no-bench to see the {precision} costs (time "
                        f"{precision} models with mbcost bench --precision {precision})")
    costs = tuple(analyze(s, inputs, batch, num_classes=num_classes, dtype=dtype, input_dtype=input_dtype,
                          execute=execute, mode=mode, optimizer=optimizer, precision=precision) for s in specs)
    get_convention(convention)  # an unknown name: SpecError
    ccs = tuple(apply_convention(c, convention) for c in costs)
    names: tuple[str, ...] = ()
    results: tuple[tuple[CounterResult, ...], ...] = ()
    presets: tuple[Mapping[str, int], ...] = ()
    if counters:
        names, results = _count(specs, costs, counters, batch, num_classes, stage)
        presets = tuple({n: apply_convention(cost, n).total for n in names} for cost in costs)
    measured: tuple[ModelRecord, ...] = ()
    skipped: tuple[SkippedDevice, ...] = ()
    ups: tuple[Speedup, ...] = ()
    if bench:
        from mbcost.bench.model_bench import speedups

        measured, skipped = _measure(specs, costs, batch, dtype, num_classes, measure_fn, stage)
        ups = tuple(speedups(measured))
    return Comparison(costs=costs, convention=convention, convention_costs=ccs, counters=names,
                      counter_results=results, preset_totals=presets, bench=bench, measured=measured, speedups=ups,
                      skipped=skipped)


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


def _measure(specs: Sequence[ModelSource], costs: Sequence[ModelCost], batch: int, dtype: str, num_classes: int,
             measure_fn: MeasureFn | None, stage: Stage | None) -> tuple[tuple[ModelRecord, ...],
                                                                         tuple[SkippedDevice, ...]]:
    """Short measurements on every available device (``mbcost.bench.model_bench.each_device``)."""
    from mbcost.bench.model_bench import BenchSettings, ModelPlan, bench_models, each_device, plan_models

    def plan(settings: BenchSettings) -> list[ModelPlan]:
        return [p for spec, cost in zip(specs, costs, strict=True)
                for p in plan_models([spec], cost.inputs, [batch], settings, num_classes=num_classes)]

    records: list[ModelRecord] = []
    skipped: list[SkippedDevice] = []
    with _progress(stage, "measuring") as update:
        for run in each_device(plan, dtype):
            if run.settings is None:
                skipped.append(SkippedDevice(run.device, str(run.error)))
                continue
            records += bench_models(run.plans, run.settings, measure_fn=measure_fn, progress=update)
    return tuple(records), tuple(skipped)


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
