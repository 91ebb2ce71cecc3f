"""Per-layer latency, joined by module name to the analytic ``LayerCost`` records.

How layers are timed, and why this way: every module of the network gets a forward pre-hook
and a forward hook that read a clock (``time.perf_counter`` on CPU; on CUDA a pair of CUDA events
recorded on the stream, read after one synchronisation at the end of the pass). A module's
*total* time is hook to hook; its *own* time is its total minus the totals of the hooked calls
that ran nested directly inside it, as the pass really nested them (a call stack kept by the
hooks), not as the module tree declares them. A container that is never called itself
(``ModuleList``, ``ModuleDict``) therefore takes no part: its entries are subtracted from the
module whose ``forward`` called them, so own times add up to the instrumented pass. The
network is run ``budget.min_runs`` times or more and each module's own time is summarised per
pass (median, IQR), exactly like a whole-network measurement.

* It is the same eager forward pass users run, module by module, with no per-op profiler
  bookkeeping inside the layer; on CUDA no synchronisation is added inside the pass (events
  are queued on the stream), so kernel overlap and launch gaps stay as they are.
* Module names are the join key the cost engine uses (``LayerCost.module``), so every timed
  module meets its analytic records without guessing; a residual ``add`` issued by a block's own
  ``forward`` lands in that block's own time, where the cost engine puts it too.
* What it includes: PyTorch's per-module call overhead (a few microseconds in eager mode) is
  inside each module's time, as it is inside the end-to-end latency. The hooks' own cost falls
  between modules and ends up in the parents' own time: containers (``Sequential``) and modules
  with no analytic record (``Flatten``, ``Dropout``) are reported together as *unattributed*,
  and the end-to-end time without hooks is reported next to the instrumented total, so the
  instrumentation's cost is visible rather than hidden.

``torch.profiler`` was the alternative: it times ATen ops in C++ (no Python call overhead) but
only reports averages, needs its own module attribution, and perturbs small layers with its
event bookkeeping; it cannot time compiled graphs per layer either, and neither can hooks, so
per-layer timing refuses ``torch.compile``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mbcost.bench.errors import BenchError
from mbcost.bench.model_bench import BenchSettings, failing, model_record, plan_models, prepare_model, time_forward
from mbcost.bench.records import Env, LayerRecord, ModelRecord, Record, RunConfig, busy_cpus_now
from mbcost.bench.roofline import Peaks, bound_fraction
from mbcost.bench.timer import Budget, MeasureFn, Measurement
from mbcost.cost.result import CATEGORIES

if TYPE_CHECKING:
    from mbcost.cost.result import LayerCost, ModelCost
    from mbcost.zoo.spec import ModelSource

__all__ = [
    "UNATTRIBUTED", "CategoryShare", "LayerProfile", "ModuleTimes", "join_layers", "profile_model", "time_modules",
]

Clock = Callable[[], float]
UNATTRIBUTED = "unattributed"


@dataclass(frozen=True)
class ModuleTimes:
    """Per-pass times (seconds) of every module, keyed by module name (``""`` is the root).

    ``totals`` are hook to hook, nested calls included. ``nested`` is, per pass, the summed totals
    of the hooked calls that ran directly inside the module's calls (the nearest *called*
    descendants: a ``ModuleList`` that is never called passes its entries on to the module that
    called them); a module absent from ``nested`` had no hooked call inside it. ``children`` is
    the declared module tree, kept for display.
    """

    names: tuple[str, ...]
    children: dict[str, tuple[str, ...]]
    totals: dict[str, tuple[float, ...]]
    nested: dict[str, tuple[float, ...]]

    @property
    def passes(self) -> int:
        return len(self.totals.get("", ()))

    def own_times(self) -> dict[str, tuple[float, ...]]:
        """Per pass: a module's total minus the totals of the calls nested directly inside it (never below zero)."""
        out = {}
        for name in self.names:
            total = self.totals.get(name, ())
            inner = self.nested.get(name, ())
            out[name] = tuple(max(0.0, t - (inner[i] if i < len(inner) else 0.0)) for i, t in enumerate(total))
        return out


def _module_tree(model: Any) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]], dict[str, Any]]:
    modules = dict(model.named_modules())
    children = {}
    for name, mod in modules.items():
        kids = (f"{name}.{child}" if name else child for child, _ in mod.named_children())
        children[name] = tuple(k for k in kids if k in modules)
    return tuple(modules), children, modules


def time_modules(model: Any, x: Any, *, budget: Budget, device_type: str = "cpu",
                 clock: Clock | None = None) -> ModuleTimes:
    """Run ``model(*x.args, **x.kwargs)`` repeatedly with timing hooks on every module (see the module
    docstring); ``x`` is a ``ForwardArgs`` (a bare tensor is taken as the one positional input).

    Call under ``torch.inference_mode`` and the settings' runtime. Hooks are removed in
    ``finally``; the model is otherwise untouched.

    Args:
        budget: ``warmup`` passes without hooks, then at least ``min_runs`` timed passes and
            ``min_run_time`` seconds, stopping after ``max_run_time`` seconds (and 3 passes).
        device_type: ``cuda`` times with CUDA events instead of the host clock.
        clock: host clock in seconds (tests inject a fake one).
    """
    import torch

    names, children, modules = _module_tree(model)
    use_events = device_type == "cuda"
    clock = clock or time.perf_counter
    # the hooked calls now running, innermost last: (module name, start); a finished call's time goes to
    # its own total and to the nested time of the call below it on this stack
    stack: list[tuple[str, Any]] = []
    calls: list[tuple[str, str | None, Any, Any]] = []  # this pass's finished calls: (name, caller, start, end)

    def now() -> Any:
        if use_events:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return clock()

    def hooks_for(name: str) -> tuple[Callable[..., None], Callable[..., None]]:
        def pre(_mod: Any, _args: Any) -> None:
            stack.append((name, now()))

        def post(_mod: Any, _args: Any, _out: Any) -> None:
            end = now()
            # the innermost open call of this module (calls close in order unless a forward raised)
            at = max((i for i, (n, _) in enumerate(stack) if n == name), default=None)
            if at is None:  # its pre-hook never ran (an earlier pre-hook raised)
                return
            begin = stack[at][1]
            del stack[at:]
            calls.append((name, stack[-1][0] if stack else None, begin, end))

        return pre, post

    args, kwargs = (x.args, x.kwargs) if hasattr(x, "kwargs") else ((x,), {})
    for _ in range(budget.warmup):
        model(*args, **kwargs)
    handles = []
    passes: list[dict[str, float]] = []
    nested_passes: list[dict[str, float]] = []
    try:
        for name in names:
            pre, post = hooks_for(name)
            handles.append(modules[name].register_forward_pre_hook(pre))
            handles.append(modules[name].register_forward_hook(post, always_call=True))
        elapsed = 0.0
        while True:
            stack.clear()
            calls.clear()
            model(*args, **kwargs)
            if use_events:
                torch.cuda.synchronize()
            acc: dict[str, float] = defaultdict(float)
            inner: dict[str, float] = defaultdict(float)
            for name, caller, begin, end in calls:
                seconds = begin.elapsed_time(end) / 1e3 if use_events else end - begin
                acc[name] += seconds
                if caller is not None:
                    inner[caller] += seconds
            passes.append(dict(acc))
            nested_passes.append(dict(inner))
            elapsed += acc.get("", 0.0)
            enough = len(passes) >= budget.min_runs and elapsed >= budget.min_run_time
            if enough or (elapsed >= budget.max_run_time and len(passes) >= 3):
                break
    finally:
        for h in handles:
            h.remove()
    totals = {name: tuple(p.get(name, 0.0) for p in passes) for name in names}
    nested = {name: tuple(p.get(name, 0.0) for p in nested_passes) for name in names
              if any(name in p for p in nested_passes)}
    return ModuleTimes(names=names, children=children, totals=totals, nested=nested)


@dataclass(frozen=True)
class CategoryShare:
    """Time and MACs of one layer category (or the unattributed time), as shares of the pass."""

    category: str
    time_ms: float
    time_share: float
    macs: int
    mac_share: float
    ops: int = 0
    bytes_moved: int = 0

    @property
    def achieved_gflops(self) -> float:
        """All the category's work (FLOPs + elementwise ops) over its time."""
        return self.ops / self.time_ms / 1e6 if self.time_ms > 0 else math.nan

    @property
    def arithmetic_intensity(self) -> float:
        return self.ops / self.bytes_moved if self.bytes_moved else math.nan


@dataclass(frozen=True)
class LayerProfile:
    """Per-layer records of one network, category shares, and the instrumentation check."""

    model: str
    cost: ModelCost
    config: RunConfig
    layers: tuple[LayerRecord, ...]
    categories: tuple[CategoryShare, ...]
    unattributed_ms: float
    instrumented_ms: float
    end_to_end: ModelRecord | None = None
    peaks: Peaks | None = None
    passes: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


def _dominant_category(records: Sequence[LayerCost]) -> str:
    best = max(records, key=lambda r: r.macs)
    return best.category if best.macs else next((r.category for r in records if r.category != "other"), "other")


def join_layers(cost: ModelCost, times: ModuleTimes, config: RunConfig, env: Env, *,
                peaks: Peaks | None = None, end_to_end: ModelRecord | None = None) -> LayerProfile:
    """Join per-module own times to the analytic records of the same module (pure: no timing).

    One ``LayerRecord`` per module that has analytic records, in forward order; its ``layer`` is
    the ``LayerCost.name`` when the module has one record, else the module path. Shares are of
    the sum of every module's median own time, so layers plus ``unattributed`` add up to 1.
    """
    own = times.own_times()
    grouped: dict[str, list[LayerCost]] = {}
    for lc in cost.layers:
        grouped.setdefault(lc.module, []).append(lc)
    medians = {name: (Measurement(times=ts, number_per_run=1) if ts else None) for name, ts in own.items()}
    total_s = sum(m.median for m in medians.values() if m is not None)
    total_macs = cost.macs
    records = []
    for module, lcs in grouped.items():
        m = medians.get(module)
        if m is None:
            continue
        macs = sum(lc.macs for lc in lcs)
        flops = sum(lc.flops for lc in lcs)
        elementwise = sum(lc.elementwise_ops for lc in lcs)
        moved = sum(lc.bytes_moved for lc in lcs)
        work = flops + elementwise
        intensity = work / moved if moved else 0.0
        achieved = work / m.median / 1e9 if m.median > 0 else math.inf
        bound = peaks.bound(intensity) if peaks is not None and intensity > 0 else None
        records.append(LayerRecord(
            **Record.common(config, env, m),
            model=cost.label, input=cost.input, layer=lcs[0].name if len(lcs) == 1 else (module or "(root)"),
            module_type=lcs[0].module_type, category=_dominant_category(lcs), ops=tuple(lc.op for lc in lcs),
            macs=macs, flops=flops, elementwise_ops=elementwise, bytes_moved=moved, arithmetic_intensity=intensity,
            time_share=m.median / total_s if total_s else math.nan,
            mac_share=macs / total_macs if total_macs else 0.0,
            achieved_gflops=achieved, roofline_bound_gflops=bound,
            bound_fraction=bound_fraction(achieved, bound) if bound else None,
        ))
    attributed = set(grouped)
    unattributed_s = sum(m.median for n, m in medians.items() if m is not None and n not in attributed)
    shares = []
    for c in CATEGORIES:
        mine = [r for r in records if r.category == c]
        t = sum(r.median_ms for r in mine)
        mc = sum(r.macs for r in mine)
        shares.append(CategoryShare(c, t, t / (total_s * 1e3) if total_s else math.nan, mc,
                                    mc / total_macs if total_macs else 0.0,
                                    ops=sum(r.flops + r.elementwise_ops for r in mine),
                                    bytes_moved=sum(r.bytes_moved for r in mine)))
    shares.append(CategoryShare(UNATTRIBUTED, unattributed_s * 1e3,
                                unattributed_s / total_s if total_s else math.nan, 0, 0.0))
    root = Measurement(times=times.totals[""], number_per_run=1) if times.totals.get("") else None
    notes = []
    if peaks is not None and any((r.bound_fraction or 0) > 1 for r in records):
        notes.append("a bound fraction above 100% means the layer's data stayed in cache: the roofline uses "
                     "main-memory bandwidth")
    return LayerProfile(model=cost.label, cost=cost, config=config, layers=tuple(records), categories=tuple(shares),
                        unattributed_ms=unattributed_s * 1e3, instrumented_ms=root.median_ms if root else math.nan,
                        end_to_end=end_to_end, peaks=peaks, passes=times.passes, notes=tuple(notes))


def profile_model(spec: ModelSource, inputs: Any, batch: int, settings: BenchSettings, *,
                  peaks: Peaks | None = None, num_classes: int = 1000, input_dtype: str | None = None,
                  measure_fn: MeasureFn | None = None, clock: Clock | None = None) -> LayerProfile:
    """Time ``spec`` end to end and per module, and join the per-module times to its analytic cost.

    ``settings`` must be validated; ``peaks`` (``roofline.get_peaks``) adds the roofline columns.

    Example:
        >>> s = BenchSettings(resolve_device("cpu")).validated()          # doctest: +SKIP
        >>> p = profile_model(resolve_source("v2"), (224, 224), 1, s)
        >>> [(c.category, round(c.time_share, 2), round(c.mac_share, 2)) for c in p.categories][:3]
    """
    if settings.compile:
        raise BenchError("per-layer timing cannot time a torch.compile'd model (its layers are fused); "
                         "drop --compile")
    plan = plan_models([spec], inputs, [batch], settings, num_classes=num_classes, input_dtype=input_dtype)[0]
    busy = busy_cpus_now()
    with settings.runtime():
        env = settings.env(busy)
        model, x = prepare_model(spec, settings, plan.cost, num_classes=num_classes)
        what = f"{plan.cost.label} at batch {batch}"
        e2e = time_forward(model, x, settings, what, measure_fn)
        import torch

        try:
            with failing(f"{what}: the forward pass failed with timing hooks"), torch.inference_mode():
                times = time_modules(model, x, budget=settings.budget, device_type=settings.device.type, clock=clock)
        finally:
            del model, x
    return join_layers(plan.cost, times, plan.config, env, peaks=peaks, end_to_end=model_record(plan, e2e, env))
