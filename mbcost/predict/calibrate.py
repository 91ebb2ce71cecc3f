"""``calibrate``: measure this device's kernels and a few whole models, fit, and save the device profile.

Grid points chosen adaptively (``sampling``) are prepared on the runtime (``items``) and timed in interleaved
batches (``timing``), each sample appended to the samples file as measured (an interrupted run resumes); then
the calibration models (``sets``) are timed whole for the correction (``fit.fit_correction``); the roofline
prices kinds with no model. The whole models get their share of ``budget_minutes`` first, the kernels the rest.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mbcost.errors import MbcostError, first_line
from mbcost.predict.fit import KernelModel, fit_correction, fit_kernel
from mbcost.predict.items import TimeFn, default_time_fn, model_item, point_item
from mbcost.predict.kinds import fallback_kind, group_of
from mbcost.predict.predictor import PREDICTED_RUNTIMES, current_key
from mbcost.predict.profile import (
    DeviceProfile,
    ProfileError,
    ProfileKey,
    Roofline,
    append_sample,
    profile_path,
    read_samples,
    samples_path,
    save_profile,
)
from mbcost.predict.sampling import next_points
from mbcost.predict.sets import CALIBRATION_MODELS

__all__ = ["CALIBRATED_RUNTIMES", "DEFAULT_BUDGET_MINUTES", "CalibrationReport", "calibrate", "fit_profile"]

#: The default time budget: within 15 minutes on 2 cores, whatever the load does to the last batch.
DEFAULT_BUDGET_MINUTES = 12.0
#: Runtimes calibration can measure (``mbcost.bench.runtimes`` adapters).
CALIBRATED_RUNTIMES = PREDICTED_RUNTIMES
#: Share of the budget kept for the whole models, by runtime, and the seconds each model takes (building,
#: analysing, exporting for ONNX Runtime, timing) on a loaded 2-core VM: a budget whose share holds fewer models
#: than ``models`` times the first ones (``MIN_MODELS`` at least); the kernels get at least ``MIN_KERNEL_SHARE``.
MODEL_SHARE = {"eager": 0.25, "onnxruntime": 0.4}
MODEL_SECONDS = {"eager": 10.0, "onnxruntime": 20.0}
MIN_KERNEL_SHARE = 0.25
#: Fewest whole models timed, however short the budget (the correction's leave-one-out needs three).
MIN_MODELS = 3
#: Fewest samples a kind model is fitted on.
MIN_SAMPLES = 4

Progress = Callable[[int, int, str], None]

@dataclass(frozen=True)
class CalibrationReport:
    """What a calibration did: the profile written, its samples (``resumed`` of them from an earlier run),
    the whole models timed, and the time spent."""

    profile: DeviceProfile
    path: str
    samples_path: str
    kernel_samples: int
    resumed: int
    models: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    #: Calibration models that could not be built or prepared, with the reason (the others were timed).
    skipped: dict[str, str] = field(default_factory=dict)

def _fit_kernels(samples: Sequence[dict[str, Any]]) -> dict[str, KernelModel]:
    rows: dict[str, list[tuple[float, ...]]] = {}
    secs: dict[str, list[float]] = {}
    for s in samples:
        for kind in (s["kind"], fallback_kind(s["kind"])):
            if kind:
                rows.setdefault(kind, []).append(tuple(s["features"]))
                secs.setdefault(kind, []).append(float(s["seconds"]))
    return {k: fit_kernel(k, rows[k], secs[k]) for k in sorted(rows) if len(rows[k]) >= MIN_SAMPLES}


def fit_profile(key: ProfileKey, samples: Sequence[dict[str, Any]], roofline: Roofline, *, budget_s: float = 0.0,
                elapsed_s: float = 0.0) -> DeviceProfile:
    """The device profile fitted to calibration samples (``kernel`` and ``model`` lines of the samples file)."""
    kernel_samples = [s for s in samples if s.get("type") == "kernel"]
    model_samples = {s["model"]: s for s in samples if s.get("type") == "model"}
    kernels = _fit_kernels(kernel_samples)
    rows = []
    models: dict[str, dict[str, float]] = {}
    for name, s in model_samples.items():
        by_group: dict[str, float] = {}
        for kind, feats in s["kernels"]:
            model = kernels.get(kind) or kernels.get(fallback_kind(kind) or "")
            raw = model.seconds(feats) if model else roofline.seconds(feats[1], feats[3] + feats[4])
            by_group[group_of(kind)] = by_group.get(group_of(kind), 0.0) + raw
        rows.append((by_group, len(s["kernels"]), float(s["seconds"])))
        models[name] = {"measured_s": float(s["seconds"]), "kernel_s": sum(by_group.values()),
                        "macs": float(s.get("macs", 0)), "kernels": float(len(s["kernels"]))}
    correction = fit_correction(rows)
    return DeviceProfile(key=key, kernels=kernels, correction=correction, roofline=roofline,
                         created=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
                         budget_s=budget_s, elapsed_s=elapsed_s, calibration_models=models)

def _roofline(key: ProfileKey, samples: Sequence[dict[str, Any]], threads: int, measure_peaks: bool) -> Roofline:
    per_call = min((float(s["seconds"]) for s in samples if s.get("type") == "kernel"), default=1e-6)
    if not measure_peaks:
        return Roofline(peak_gflops=50.0, peak_gbps=10.0, per_call_s=per_call)
    from mbcost.bench.devices import resolve_device
    from mbcost.bench.roofline import get_peaks
    from mbcost.bench.timer import Budget

    peaks = get_peaks(resolve_device(key.device), "float32", threads,
                      budget=Budget(min_run_time=0.2, max_run_time=1.0, min_runs=3, warmup=1),
                      matmul_n=1024, copy_bytes=64 << 20)
    return Roofline(peak_gflops=peaks.peak_gflops, peak_gbps=peaks.peak_gbps, per_call_s=per_call)


def calibrate(*, device: str = "cpu", runtime: str = "eager", precision: str = "float32", threads: int | None = None,
              budget_minutes: float = DEFAULT_BUDGET_MINUTES, models: Sequence[str] = CALIBRATION_MODELS,
              progress: Progress | None = None, time_fn: TimeFn | None = None,
              clock: Callable[[], float] = time.monotonic, seed: int = 0, output: Path | str | None = None,
              measure_peaks: bool = True, fresh: bool = False, warm_zoo: bool = True) -> CalibrationReport:
    """Calibrate this device for ``runtime``: time kernels and whole models, fit, save the profile.

    Args:
        device, runtime, precision, threads: what the profile is for (threads default: torch's setting).
        budget_minutes: the wall-clock budget (the kernels get what the whole models leave).
        models: the whole models the correction is fitted on.
        progress: ``update(done, total, what)`` in seconds of the budget.
        time_fn: times a batch of ``TimedItem`` (tests pass a fake; default: interleaved rounds, real clock).
        clock: the budget's clock.
        output: where to write the profile (default: the cache's path for its key).
        measure_peaks: measure the roofline's peaks (cached per device by ``mbcost.bench.roofline``).
        fresh: discard the samples of earlier runs for this key (default: resume with them).
        warm_zoo: analyse the zoo's models at their default input into the analysis cache, so that their first
            ``mbcost predict`` needs no torch (``mbcost.predict.cache``).

    Returns:
        A ``CalibrationReport``. Samples already in the profile's samples file for the same key are kept.
    """
    from mbcost.bench.devices import resolve_device
    from mbcost.bench.devices import runtime as process_settings
    from mbcost.bench.runtimes import get_runtime
    from mbcost.bench.runtimes.base import RuntimeJob

    if runtime not in CALIBRATED_RUNTIMES:
        get_runtime(runtime)  # an unknown name fails naming the runtimes
        raise ProfileError(f"calibration covers --runtime {' and '.join(CALIBRATED_RUNTIMES)} (got {runtime})")
    if precision != "float32":
        raise ProfileError(f"calibration covers --precision float32 (got {precision})")
    if not budget_minutes > 0:
        raise ProfileError(f"--budget must be > 0 minutes (got {budget_minutes})")
    key = current_key(device, runtime, precision, threads)
    dev = resolve_device(device)
    if dev.type != "cpu":
        raise ProfileError(f"calibration covers --device cpu (got {device})")
    adapter = get_runtime(runtime)
    refusal = adapter.refusal(precision, "float32", dev)
    if refusal:
        raise ProfileError(refusal)
    job = RuntimeJob(precision=precision, threads=key.threads, device=dev)
    fused = runtime == "onnxruntime"
    spath = samples_path(key)
    out_path = Path(output) if output else profile_path(key)
    if fresh:
        spath.unlink(missing_ok=True)
    samples = read_samples(spath, key)
    resumed = len(samples)
    skipped: dict[str, str] = {}
    time_fn = time_fn or default_time_fn(key.threads)
    budget_s = budget_minutes * 60
    start = clock()
    done = {s["model"] for s in samples if s.get("type") == "model"}
    # as many whole models as the budget's share holds (at least MIN_MODELS): a short budget times a few
    fits = max(MIN_MODELS, int(MODEL_SHARE[runtime] * budget_s / MODEL_SECONDS[runtime]))
    todo = [m for m in models if m not in done][:max(0, fits - len(done & set(models)))]
    reserve = max(MODEL_SHARE[runtime] * budget_s, MODEL_SECONDS[runtime] * len(todo))
    kernel_end = start + max(budget_s - reserve, MIN_KERNEL_SHARE * budget_s)
    rng = random.Random(seed + resumed)
    tell = progress or (lambda done, total, what: None)

    def say(what: str) -> None:
        tell(int(clock() - start), int(budget_s), what)

    def record(sample: dict[str, Any]) -> None:
        sample["key"] = asdict(key)
        append_sample(spath, sample)
        samples.append(sample)

    with process_settings(dev, key.threads):
        while clock() < kernel_end:
            kernel_samples = [s for s in samples if s.get("type") == "kernel"]
            points = next_points(kernel_samples, rng)
            items = [point_item(p, adapter, job, fused) for p in points]
            seconds = time_fn(items)
            for p, item, s in zip(points, items, seconds, strict=True):
                if s > 0 and math.isfinite(s):
                    record({"type": "kernel", "kind": p.kind, "point": p.to_dict(), "features": list(item.features),
                            "seconds": s})
            say(f"kernels: {len(kernel_samples) + len(points)} samples")
        if todo:
            items = []
            for i, spec in enumerate(todo):
                say(f"whole models: preparing {spec} ({i + 1}/{len(todo)})")
                try:
                    items.append(model_item(spec, adapter, job, runtime))
                except MbcostError as exc:  # a model source not installed, an export the toolchain refuses
                    skipped[spec] = first_line(exc)
            say(f"whole models: timing {len(items)}")
            for item, s in zip(items, time_fn(items) if items else [], strict=True):
                record({"type": "model", "model": item.label, "seconds": s, "macs": item.macs,
                        "kernels": [[k, list(f)] for k, f in item.kernels]})
        say("fitting")
        roof = _roofline(key, samples, key.threads, measure_peaks)
    elapsed = clock() - start
    profile = fit_profile(key, samples, roof, budget_s=budget_s, elapsed_s=elapsed)
    path = save_profile(profile, out_path)
    if warm_zoo:  # the zoo's default analyses into the analysis cache: their first predict needs no torch
        from mbcost.predict.predictor import analysis_of
        from mbcost.zoo.catalog import list_models

        for name in list_models():
            say(f"analysing {name} for the analysis cache")
            try:
                analysis_of(name)
            except MbcostError as exc:  # the profile is saved: a zoo model the cache misses only costs time
                say(f"analysis cache: {name}: {first_line(exc)}")
    profile = replace(profile, path=str(path))
    return CalibrationReport(profile=profile, path=str(path), samples_path=str(spath),
                             kernel_samples=sum(1 for s in samples if s.get("type") == "kernel"), resumed=resumed,
                             models={m["model"]: m["seconds"] for m in samples if m.get("type") == "model"},
                             elapsed_s=elapsed, skipped=skipped)
