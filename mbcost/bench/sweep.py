"""Standard vs depthwise-separable convolution over a grid: the paper's ratio against the clock.

For every (channels M = N, kernel K, feature map F) point, ``mbcost.cost.conv.compare_conv``
gives the exact MAC counts of a standard KxK convolution and of depthwise KxK + pointwise 1x1
(the theoretical ratio, exact and as the paper's ``1/N + 1/K^2``); the two real module stacks
are then built on the device and timed. ``measured_speedup`` = standard time / separable time,
to be read against the MAC speed-up ``1 / macs_ratio``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from mbcost.bench.devices import check_memory
from mbcost.bench.errors import BenchError
from mbcost.bench.model_bench import BenchSettings, OnRecord, Progress, measure_each
from mbcost.bench.records import ConvRecord, Env, Record
from mbcost.bench.timer import MeasureFn, Measurement, measure
from mbcost.errors import SpecError

__all__ = ["ConvPoint", "bench_conv", "conv_modules", "conv_record", "grid", "parse_int_list", "run_sweep"]


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


def conv_modules(point: ConvPoint, settings: BenchSettings) -> tuple[object, object, object]:
    """The standard conv, the depthwise + pointwise pair, and an input, on the device, eval mode."""
    import torch

    from mbcost.cost.conv import conv_pair

    pad = (point.k - 1) // 2 if point.padding is None else point.padding
    dev, dtype = settings.device.torch_device, getattr(torch, settings.dtype)
    with torch.device(dev):
        standard, separable = conv_pair(point.cin, point.cout, point.k, point.stride, pad, point.bias)
    standard = standard.eval().to(dtype=dtype)
    separable = separable.eval().to(dtype=dtype)
    x = torch.randn(point.batch, point.cin, *point.size, device=dev, dtype=dtype)
    if settings.channels_last:
        standard = standard.to(memory_format=torch.channels_last)
        separable = separable.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if settings.compile:
        standard, separable = torch.compile(standard), torch.compile(separable)
    return standard, separable, x


def conv_record(point: ConvPoint, settings: BenchSettings, env: Env, standard: Measurement,
                separable: Measurement, standard_macs: int, separable_macs: int, formula_ratio: float) -> ConvRecord:
    """The record of one measured point (pure: no timing here)."""
    return ConvRecord(
        **Record.common(settings.config(point.batch), env, separable),
        cin=point.cin, cout=point.cout, k=point.k, size=point.size, stride=point.stride,
        standard_ms=standard.median_ms, separable_ms=separable.median_ms, standard_iqr_ms=standard.iqr_ms,
        standard_runs=standard.runs, standard_wide_spread=standard.wide_spread,
        standard_times_ms=tuple(standard.times_ms), standard_macs=standard_macs, separable_macs=separable_macs,
        measured_speedup=standard.median / separable.median if separable.median > 0 else math.nan,
        macs_ratio=separable_macs / standard_macs if standard_macs else math.nan, formula_ratio=formula_ratio,
    )


def bench_conv(point: ConvPoint, settings: BenchSettings, *, measure_fn: MeasureFn | None = None,
               env: Env | None = None, busy_cpus: float | None = None) -> ConvRecord:
    """Count and time one point; call inside ``settings.runtime()``."""
    import torch

    from mbcost.cost.conv import compare_conv

    comparison = compare_conv(point.cin, point.cout, point.k, point.size, point.stride, point.padding, point.bias,
                              point.batch)
    # The counts are at float32: an upper bound on the memory of the narrower dtypes.
    check_memory(comparison.standard, settings.device,
                 what=f"conv M={point.cin} N={point.cout} K={point.k} F={point.size[0]} at batch {point.batch}")
    measure_fn = measure_fn or measure
    standard, separable, x = conv_modules(point, settings)
    timings = []
    try:
        with torch.inference_mode():
            for module in (standard, separable):
                timings.append(measure_fn(lambda m=module: m(x), settings.budget, threads=settings.threads,
                                          device_type=settings.device.type))
    except (RuntimeError, NotImplementedError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BenchError(f"conv {point.cin}->{point.cout} k{point.k} {point.size[0]}x{point.size[1]} failed on "
                         f"{settings.device.torch_device} ({settings.dtype}): {first[:300]}") from exc
    return conv_record(point, settings, env or settings.env(busy_cpus), timings[0], timings[1],
                       comparison.standard.macs, comparison.separable.macs, float(comparison.formula_ratio))


def run_sweep(points: Sequence[ConvPoint], settings: BenchSettings, *,
              measure_fn: MeasureFn | None = None, on_record: OnRecord | None = None,
              progress: Progress | None = None) -> list[ConvRecord]:
    """Measure every point in order, handing each record to ``on_record`` as soon as it exists.

    Ctrl-C (``KeyboardInterrupt``) propagates; the records already handed on are kept by the
    caller's writer (``store.RecordWriter`` flushes each line).
    """
    return measure_each(
        points, settings, lambda point, busy: bench_conv(point, settings, measure_fn=measure_fn, busy_cpus=busy),
        lambda point: f"M=N={point.cin} K={point.k} F={point.size[0]}", on_record=on_record, progress=progress)
