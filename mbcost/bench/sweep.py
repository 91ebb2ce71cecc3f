"""Standard vs depthwise-separable convolution over a grid: the paper's ratio against the clock.

For every (channels M = N, kernel K, feature map F) point, ``mbcost.cost.conv.compare_conv``
gives the exact MAC counts of a standard KxK convolution and of depthwise KxK + pointwise 1x1
(the theoretical ratio, exact and as the paper's ``1/N + 1/K^2``); the two real module stacks
are then built and timed on each runtime asked for (``mbcost.bench.runtimes``: eager by default, or
ONNX Runtime, OpenVINO, ExecuTorch, torch.compile; float32 or int8), through the same adapters, output
check and timer as whole networks. ``measured_speedup`` = standard time / separable time, to be read
against the MAC speed-up ``1 / macs_ratio``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mbcost.bench.devices import check_memory
from mbcost.bench.model_bench import (
    BenchSettings,
    OnRecord,
    Progress,
    RuntimeBench,
    each_runtime,
    open_runtime,
    reference_outputs,
    runtime_check,
    time_call,
)
from mbcost.bench.records import ConvRecord, Env, OutputCheck, Record, RunConfig
from mbcost.bench.runtimes.base import ForwardArgs
from mbcost.bench.timer import MeasureFn, Measurement
from mbcost.errors import SpecError

__all__ = [
    "ConvPoint", "bench_conv", "conv_inputs", "conv_record", "grid", "parse_int_list", "point_label",
    "run_sweep", "sweep_runtimes",
]


@dataclass(frozen=True)
class ConvPoint:
    """One grid point: M -> N channels, KxK kernel, F x F input, stride, batch."""

    cin: int
    cout: int
    k: int
    size: tuple[int, int]
    stride: int = 1
    padding: int | None = None
    batch: int = 1
    bias: bool = False


def parse_int_list(text: str, option: str, low: int = 1) -> list[int]:
    """``"32,64,128"`` -> ``[32, 64, 128]``; refuses empty lists and values below ``low``."""
    values = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            raise SpecError(f"{option}: {part!r} is not an integer") from None
        if v < low:
            raise SpecError(f"{option}: values must be >= {low} (got {v})")
        values.append(v)
    if not values:
        raise SpecError(f"{option}: give at least one value, e.g. {option} 32,64")
    return values


def grid(channels: Sequence[int], kernels: Sequence[int], sizes: Sequence[int], *, batch: int = 1,
         stride: int = 1) -> list[ConvPoint]:
    """Every combination, M = N = channels; points whose kernel does not fit are refused."""
    points = []
    for c, k, f in itertools.product(channels, kernels, sizes):
        if f + 2 * ((k - 1) // 2) < k:
            raise SpecError(f"a {k}x{k} kernel does not fit a {f}x{f} feature map")
        points.append(ConvPoint(c, c, k, (f, f), stride, None, batch))
    return points


def conv_record(point: ConvPoint, settings: BenchSettings, env: Env, standard: Measurement,
                separable: Measurement, standard_macs: int, separable_macs: int, formula_ratio: float, *,
                config: RunConfig | None = None, **runtime: Any) -> ConvRecord:
    """The record of one measured point (pure: no timing here). ``config`` replaces the settings' (another runtime
    or precision); ``runtime`` holds the runtime's fields (``runtime_version``, ``runtime_settings``,
    ``one_time_s``, ``standard_one_time_s``, ``output_check``, ``standard_output_check``)."""
    return ConvRecord(
        **Record.common(config or settings.config(point.batch), env, separable), **runtime,
        cin=point.cin, cout=point.cout, k=point.k, size=point.size, stride=point.stride,
        standard_ms=standard.median_ms, separable_ms=separable.median_ms, standard_iqr_ms=standard.iqr_ms,
        standard_runs=standard.runs, standard_wide_spread=standard.wide_spread,
        standard_times_ms=tuple(standard.times_ms), standard_macs=standard_macs, separable_macs=separable_macs,
        measured_speedup=standard.median / separable.median if separable.median > 0 else math.nan,
        macs_ratio=separable_macs / standard_macs if standard_macs else math.nan, formula_ratio=formula_ratio,
    )


def point_label(point: ConvPoint) -> str:
    """``conv M=64 N=64 K=3 14x14``: a point as messages name it."""
    return f"conv M={point.cin} N={point.cout} K={point.k} {point.size[0]}x{point.size[1]}"


def conv_inputs(point: ConvPoint, seed: int) -> ForwardArgs:
    """A float32 CPU input of the point's shape, standard normal, from a generator seeded with ``seed``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return ForwardArgs((torch.randn(point.batch, point.cin, *point.size, generator=gen),), {})


@dataclass(frozen=True)
class _Stack:
    """One side of a point measured on a runtime."""

    measurement: Measurement
    check: OutputCheck
    settings: dict[str, Any]
    one_time_s: dict[str, float]


def bench_conv(point: ConvPoint, settings: BenchSettings, *, runtime: str | None = None,
               measure_fn: MeasureFn | None = None, env: Env | None = None,
               busy_cpus: float | None = None) -> ConvRecord:
    """Count and time one point on one runtime (default ``settings.default_runtimes()[0]``: eager, or compile);
    call inside ``settings.runtime()``.

    Both layer stacks are built on the CPU in float32 (``conv_pair``) and go through the runtime's adapter as a
    network does in ``mbcost bench`` (``model_bench.open_runtime``: export, quantize, load, timed apart): their
    outputs on ``CHECK_SAMPLES`` seeded inputs are checked against eager float32's, and each call on the first
    input is timed by the one timer. int8 calibrates on random inputs (``CALIBRATION_BATCHES``).

    Raises:
        ExportError: the runtime's toolchain could not export, quantize or load a stack (its reason).
        BenchError: a call failed.
    """
    import torch

    from mbcost.bench.runtimes import get_runtime
    from mbcost.bench.runtimes.calibration import CALIBRATION_BATCHES, CHECK_SAMPLES
    from mbcost.cost.conv import compare_conv, conv_pair

    comparison = compare_conv(point.cin, point.cout, point.k, point.size, point.stride, point.padding, point.bias,
                              point.batch)
    # The counts are at float32: an upper bound on the memory of the narrower dtypes.
    check_memory(comparison.standard, settings.device,
                 what=f"conv M={point.cin} N={point.cout} K={point.k} F={point.size[0]} at batch {point.batch}")
    name = runtime or settings.default_runtimes()[0]
    adapter = get_runtime(name)
    int8 = settings.precision == "int8"
    is_reference = settings.is_reference(name)
    samples = [conv_inputs(point, seed) for seed in range(1 if is_reference else CHECK_SAMPLES)]
    job = settings.job(tuple(conv_inputs(point, 1000 + i) for i in range(CALIBRATION_BATCHES)) if int8 else ())
    pad = (point.k - 1) // 2 if point.padding is None else point.padding
    with torch.device("cpu"):
        stacks = conv_pair(point.cin, point.cout, point.k, point.stride, pad, point.bias)
    measured = []
    for side, module in zip(("standard", "separable"), stacks, strict=True):
        what = f"{point_label(point)} {side} on {name}" + (" int8" if int8 else "")
        module = module.eval()
        reference = None if is_reference else reference_outputs(module, samples, settings)
        with open_runtime(adapter, module, samples[0], job, settings) as prepared:
            check = runtime_check(prepared, samples, reference, settings.computes_in, what)
            m = time_call(prepared, settings, what, name, measure_fn)
            measured.append(_Stack(m, check, dict(prepared.settings), dict(prepared.phases)))
    standard, separable = measured
    config = settings.on_runtime(settings.config(point.batch), name)
    return conv_record(point, settings, env or settings.env(busy_cpus), standard.measurement, separable.measurement,
                       comparison.standard.macs, comparison.separable.macs, float(comparison.formula_ratio),
                       config=config, runtime_version=adapter.version(), runtime_settings=separable.settings,
                       one_time_s=separable.one_time_s, standard_one_time_s=standard.one_time_s,
                       output_check=separable.check, standard_output_check=standard.check)


def sweep_runtimes(points: Sequence[ConvPoint], settings: BenchSettings, runtimes: Sequence[str] | None = None, *,
                   measure_fn: MeasureFn | None = None, on_record: OnRecord | None = None,
                   progress: Progress | None = None) -> RuntimeBench:
    """Measure every point on every runtime (``mbcost.bench.runtimes``), point by point, runtime by runtime.

    As ``model_bench.bench_runtimes``: every runtime is checked first (a ``RuntimeUnavailable`` refusal before
    anything is built); a runtime whose toolchain fails on a point becomes a ``RuntimeFailure`` and the others
    are still measured; each record goes to ``on_record`` as soon as it exists. Ctrl-C (``KeyboardInterrupt``)
    propagates; the records already handed on are kept by the caller's writer.
    """
    names = tuple(runtimes) if runtimes else settings.default_runtimes()
    settings.check_runtimes(names)

    def describe(item: tuple[ConvPoint, str]) -> str:
        point, name = item
        return f"M=N={point.cin} K={point.k} F={point.size[0]}" + (f" on {name}" if len(names) > 1 else "")

    return each_runtime(
        [(p, n) for p in points for n in names], settings,
        lambda point, name, busy: bench_conv(point, settings, runtime=name, measure_fn=measure_fn, busy_cpus=busy),
        lambda point: (point_label(point), point.batch), describe, on_record=on_record,
        progress=progress)


def run_sweep(points: Sequence[ConvPoint], settings: BenchSettings, *,
              measure_fn: MeasureFn | None = None, on_record: OnRecord | None = None,
              progress: Progress | None = None, runtimes: Sequence[str] | None = None) -> list[ConvRecord]:
    """``sweep_runtimes``' records; its failures raised (``BenchError``, one line) after everything else
    was measured."""
    run = sweep_runtimes(points, settings, runtimes, measure_fn=measure_fn, on_record=on_record, progress=progress)
    run.raise_failures()
    return run.records
