"""``mbcost report --bench``: a short measurement on this machine, through ``mbcost.bench``.

For each available device (CPU, and CUDA when torch sees one) at float32 with the quick budget:
the device's attainable peaks (``roofline.get_peaks``, cached per device), each model end to end
and per layer (``layers.profile_model``), and a small standard vs separable conv sweep
(``sweep.run_sweep``). The records are typed (``mbcost.bench.records``), exactly what
``mbcost bench/profile/sweep/roofline --save`` would write. For careful numbers, measure with
those commands (longer budgets, more configurations) and pass the files with ``--from``.

``mbcost report --runtime``: ``measure_runtimes_now`` measures the same models end to end, and the
same conv sweep, on each other runtime (``mbcost.bench.runtimes``), through ``bench_runtimes`` and
``sweep_runtimes``, as ``mbcost bench --runtime`` and ``mbcost sweep --runtime`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mbcost.bench.model_bench import DeviceRun, RuntimeFailure
    from mbcost.bench.records import Record
    from mbcost.zoo.spec import ModelSource

__all__ = ["Progress", "measure_now", "measure_runtimes_now"]

#: The conv sweep of ``--bench``: M = N channels, K = 3, a 14 x 14 map (a subset of the report's grid).
SWEEP_CHANNELS = (32, 128, 512)
SWEEP_KERNELS = (3,)
SWEEP_SIZES = (14,)

Progress = Callable[[int, int, str], None]


def measure_now(specs: Sequence[ModelSource], inputs: Any, batch: int = 1, *,
                num_classes: int = 1000, devices: Sequence[str] | None = None,
                progress: Progress | None = None) -> tuple[list[Record], list[str]]:
    """Measure ``specs`` on each device; returns ``(records, skipped)``.

    A device that cannot run the models (no CUDA memory for VGG16 at a large batch, ...) is
    skipped with a one-line reason instead of failing the report.

    Raises:
        MbcostError: bad input (the same errors ``mbcost bench`` raises), for the first device.
    """
    from mbcost.bench.devices import available_devices
    from mbcost.bench.layers import profile_model
    from mbcost.bench.roofline import get_peaks, peak_record
    from mbcost.bench.sweep import run_sweep

    devices = list(devices or available_devices())
    points = _sweep_points()
    steps = len(devices) * (1 + len(specs) + len(points))
    done = 0

    def step(what: str) -> None:
        nonlocal done
        if progress:
            progress(done, steps, what)
        done += 1

    records: list[Any] = []
    skipped: list[str] = []
    for run in _device_runs(specs, inputs, batch, num_classes, devices):
        dev, settings = run.device, run.settings
        if settings is None:
            skipped.append(f"{dev} not measured: {run.error}")
            continue
        step(f"{dev} peaks")
        with settings.runtime():
            peaks = get_peaks(settings.device, settings.dtype, settings.threads or 1)
            records.append(peak_record(peaks, settings.config(batch), settings.env()))
        for spec in specs:
            step(f"{dev} {spec.label} per layer")
            profile = profile_model(spec, inputs, batch, settings, peaks=peaks, num_classes=num_classes)
            records += [*([profile.end_to_end] if profile.end_to_end else []), *profile.layers]
        step(f"{dev} conv sweep")
        records += run_sweep(points, settings)
        done += len(points) - 1
    if progress:
        progress(steps, steps, "done")
    return records, skipped


def measure_runtimes_now(specs: Sequence[ModelSource], inputs: Any, batch: int, runtimes: Sequence[str], *,
                         num_classes: int = 1000, devices: Sequence[str] | None = None,
                         progress: Progress | None = None) -> tuple[list[Record], list[str], list[RuntimeFailure]]:
    """Measure ``specs`` end to end and ``measure_now``'s conv sweep on each of ``runtimes`` (eager's records come
    from ``measure_now``; eager is skipped here), on each device, at float32 with the quick budget.

    Returns ``(records, skipped, failures)``: a runtime that cannot run on a device is skipped with its reason;
    a runtime whose toolchain cannot export a model or a conv is a ``RuntimeFailure`` (the others still measured).

    Raises:
        MbcostError: bad input, for the first device (as ``measure_now``).
    """
    from mbcost.bench.model_bench import bench_runtimes
    from mbcost.bench.sweep import sweep_runtimes

    names = [n for n in runtimes if n != "eager"]
    points = _sweep_points()
    records: list[Any] = []
    skipped: list[str] = []
    failures: list[RuntimeFailure] = []
    if not names:
        return records, skipped, failures
    for run in _device_runs(specs, inputs, batch, num_classes, devices or None):
        settings = run.settings
        if settings is None:
            continue  # measure_now said why
        refused = settings.refusals(names)
        skipped += [f"{run.device} {name} not measured: {reason}" for name, reason in refused.items()]
        here = [name for name in names if name not in refused]
        if not here:
            continue
        done = bench_runtimes(run.plans, settings, here,
                             progress=_stage(progress, f"{run.device} models on {', '.join(here)}"))
        swept = sweep_runtimes(points, settings, here,
                               progress=_stage(progress, f"{run.device} conv sweep on {', '.join(here)}"))
        records += [*done.records, *swept.records]
        failures += [*done.failures, *swept.failures]
    return records, skipped, failures


def _sweep_points() -> list[Any]:
    from mbcost.bench.sweep import grid

    return grid(SWEEP_CHANNELS, SWEEP_KERNELS, SWEEP_SIZES, batch=1)


def _device_runs(specs: Sequence[ModelSource], inputs: Any, batch: int, num_classes: int,
                 devices: Sequence[str] | None) -> Iterator[DeviceRun]:
    """``each_device`` at float32 with every model planned (planning checks memory: a device that cannot run the
    models is refused before anything is timed); the first device's refusal is raised (bad input)."""
    from mbcost.bench.model_bench import each_device, plan_models

    runs = each_device(lambda s: plan_models(specs, inputs, [batch], s, num_classes=num_classes), "float32",
                       devices=devices)
    for n, run in enumerate(runs):
        if run.settings is None and n == 0:
            raise run.error
        yield run


def _stage(progress: Progress | None, what: str) -> Progress | None:
    if progress is None:
        return None
    return lambda done, total, item: progress(done, total, f"{what}: {item}")
