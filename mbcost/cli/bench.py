"""``mbcost bench``, ``profile``, ``sweep`` and ``roofline``: measured latency next to the analytic cost.

Commands parse options, call ``mbcost.bench``, render with ``mbcost.render.bench``; records are appended
to ``--save`` as they are measured, so Ctrl-C (exit 130) keeps every finished measurement. (The measured
rows of ``mbcost compare`` and ``mbcost conv --bench`` come from ``mbcost.comparison``.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mbcost.bench.devices import BENCH_DTYPES
from mbcost.bench.runtimes import EXTRA, RUNTIMES
from mbcost.cli.app import (
    ClassesOpt,
    Format,
    FormatOpt,
    InputDTypeOpt,
    InputOpt,
    Mode,
    ModelArg,
    ModeOpt,
    OptimizerName,
    OptimizerOpt,
    OutputOpt,
    Precision,
    app,
    check_writable,
    emit,
    input_value,
    timer,
)
from mbcost.cli.progress import QuietOpt, progress_bar
from mbcost.errors import SpecError

if TYPE_CHECKING:
    from mbcost.bench.model_bench import BenchSettings
    from mbcost.bench.records import PeakRecord
    from mbcost.bench.roofline import Peaks

__all__ = ["bench", "profile", "roofline", "sweep"]

TIMING_HELP = ("Timing: torch.utils.benchmark (warm-up, adaptive auto-ranging, CUDA synchronisation), eval mode, "
               "inference_mode, random weights; on CPU denormals are flushed to zero and freed memory stays in the "
               "heap; median, IQR and runs are reported and a wide spread is flagged. GFLOP/s = analytic FLOPs "
               "(2 x MACs) / median time.")


#: The measurement dtypes as a choice, from their one list (``mbcost.bench.devices.BENCH_DTYPES``).
BenchDType = Enum("BenchDType", {d: d for d in BENCH_DTYPES}, type=str)

RUNTIME_HELP = ("Runtimes to measure on, comma-separated (default eager): "
                + "; ".join(f"{r.name} = {r.summary}" for r in RUNTIMES.values())
                + f". All but eager and compile need: pip install '{EXTRA}'.")


DeviceOpt = typer.Option("cpu", "--device", "-d", help="cpu, cuda or cuda:N.")
ThreadsOpt = typer.Option(None, "--threads", "-t", help="CPU intra-op threads (default: torch's current setting).")
BenchDTypeOpt = typer.Option(BenchDType.float32, "--dtype",
                             help="Element type of weights and inputs. float16 needs CUDA (or a CPU with native fp16); "
                                  "bfloat16 on CUDA needs compute capability 8.0+.")
ChannelsLastOpt = typer.Option(False, "--channels-last/--no-channels-last", help="NHWC memory format.")
BenchCompileOpt = typer.Option(False, "--compile/--no-compile", help="Alias of --runtime compile.")
RuntimeOpt = typer.Option(None, "--runtime", "-r", help=RUNTIME_HELP)
PrecisionOpt = typer.Option(Precision.float32, "--precision",
                            help="float32 (the network in --dtype) or int8: static post-training quantization with "
                                 "each runtime's own toolchain ("
                                 + "; ".join(f"{r.name}: {r.int8_toolchain}" for r in RUNTIMES.values()
                                             if "int8" in r.precisions)
                                 + "), calibrated on random inputs unless --calibration is given: the latency is "
                                   "representative, the accuracy is not.")
CalibrationOpt = typer.Option(None, "--calibration",
                              help="int8: calibrate on the input batches of this .npy, .npz or .pt FILE (one batch of "
                                   "the input shape, or a stack of samples) instead of random inputs.")
OversubscribeOpt = typer.Option(False, "--oversubscribe",
                                help="Allow --threads above the CPUs this process can run on (refused otherwise; the "
                                     "records and tables say so).")
SaveOpt = typer.Option(None, "--save", help="Append every record to this JSON Lines FILE as soon as it is measured.")
LabelOpt = typer.Option(None, "--label", help="Run label stored in each record (default: '<device name> <dtype>').")
DenormalOpt = typer.Option(False, "--keep-denormals",
                           help="Do not flush denormal floats to zero on CPU (random-weight networks can slow down "
                                "by 40x; trained ones rarely produce denormals).")
MallocOpt = typer.Option(False, "--default-malloc",
                         help="Leave glibc malloc at its defaults on CPU: freed activations go back to the kernel "
                              "and every pass page-faults them in again (slower, noisier; see docs/latency.md).")
CudnnOpt = typer.Option(None, "--cudnn-benchmark/--no-cudnn-benchmark",
                        help="Set torch.backends.cudnn.benchmark for the run (default: leave as is; recorded).")


MinTime = Annotated[float, typer.Option("--min-time", help="Seconds of timed runs at least, per measurement.")]
MaxTime = Annotated[float, typer.Option("--max-time", help="Seconds of timed runs at most, unless fewer than 5 runs "
                                                         "fit.")]


def parse_batches(text: str) -> list[int]:
    from mbcost.bench.sweep import parse_int_list
    from mbcost.inputs import MAX_BATCH

    batches = parse_int_list(text, "--batch")
    if max(batches) > MAX_BATCH:
        raise SpecError(f"--batch must be <= {MAX_BATCH}")
    return batches


def at_least_one(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise SpecError(f"{option} must be >= 1 (got {value})")


#: The options that go to ``BenchSettings`` as they are, in the commands that have them.
SETTINGS_OPTIONS = ("threads", "channels_last", "label", "cudnn_benchmark", "oversubscribe")


def settings_from(ctx: typer.Context) -> BenchSettings:
    """The command's measurement options (``ctx.params``: device, dtype, threads, time budget, precision...),
    resolved and validated (a bad one: one line, exit 2)."""
    from mbcost.bench.devices import resolve_device
    from mbcost.bench.model_bench import BenchSettings
    from mbcost.bench.timer import DEFAULT_BUDGET, Budget

    options = ctx.params
    budget = DEFAULT_BUDGET
    if "min_time" in options:
        min_time, max_time = options["min_time"], options["max_time"]
        if not (0 < min_time <= max_time):
            raise SpecError(f"need 0 < --min-time <= --max-time (got {min_time} and {max_time})")
        budget = Budget(min_run_time=min_time, max_run_time=max_time)
    calibration = options.get("calibration")
    return BenchSettings(resolve_device(options["device"]), options["dtype"].value, budget=budget,
                         flush_denormal=not options.get("keep_denormals"), keep_heap=not options.get("default_malloc"),
                         precision=options["precision"].value if "precision" in options else "float32",
                         calibration=None if calibration is None else str(calibration),
                         **{k: options[k] for k in SETTINGS_OPTIONS if k in options}).validated()


def runtime_names(runtime: str | None, compile: bool) -> list[str]:
    """``--runtime`` as a list of runtime names; ``--compile`` is ``--runtime compile``."""
    from mbcost.bench.runtimes import parse_runtimes

    if compile and runtime is not None and parse_runtimes(runtime) != ["compile"]:
        raise SpecError("--compile is an alias of --runtime compile; list compile in --runtime instead")
    return parse_runtimes(runtime or ("compile" if compile else "eager"))


@contextmanager
def recording(save: Path | None, what: str) -> Iterator[tuple[Any, Any]]:
    """``--save`` opened for appending and a progress bar: yields the record writer and the bar's ``update``.
    Ctrl-C -> one line saying how many finished records ``--save`` kept, exit 130."""
    from mbcost.bench.errors import Interrupted
    from mbcost.bench.store import RecordWriter

    with RecordWriter(save) as out:
        try:
            with progress_bar(what) as update:
                yield out, update
        except KeyboardInterrupt:
            kept = f"; {out.written} finished record(s) kept in {out.path}" if out.path is not None else \
                "; nothing saved (use --save FILE to keep finished measurements)"
            raise Interrupted(f"interrupted during {what}{kept}") from None


def measure_peaks(ctx: typer.Context, settings: BenchSettings, busy: float | None, *, batch: int = 1,
                  refresh: bool = False) -> tuple[Peaks, PeakRecord]:
    """The device's roofline peaks (cached per device, unless ``refresh``) and their record."""
    from mbcost.bench.roofline import get_peaks, peak_record

    with settings.runtime():
        peaks = get_peaks(settings.device, settings.dtype, settings.threads or 1, measure_fn=timer(ctx),
                          refresh=refresh)
        return peaks, peak_record(peaks, settings.config(batch), settings.env(busy))


def check_targets(output: Path | None, save: Path | None) -> None:
    """Fail early (exit 2) when ``--output`` cannot be written or ``--save`` appended to, before any work."""
    from mbcost.bench.store import check_appendable

    check_writable(output)
    check_appendable(save)


def emit_run(fmt: Format, output: Path | None, run: Any, table: Callable[[], Any], **document: Any) -> None:
    """Show what a runtime loop (``RuntimeBench``) measured, when anything, then raise its failures (one line,
    exit 2, after showing and saving what was measured)."""
    from mbcost.render.bench import flat, results_document

    if run.records:
        emit(fmt, output, table=table(), records=[flat(r) for r in run.records],
             document=results_document(run.records, **document, failures=[vars(f) for f in run.failures]))
    run.raise_failures()


# -- bench -----------------------------------------------------------------------------------------


@app.command(help="Measure the latency of real networks: median, spread (IQR, runs), images/s, achieved GFLOP/s and "
                  "the measured speed-up against the other models next to the MAC ratio. " + TIMING_HELP
                  + " --mode train times one training step instead (train mode, grad enabled: zero_grad, forward, "
                    "loss = sum of the outputs, backward, optimizer step; GFLOP/s = 2 x (forward + backward MACs) / "
                    "median), refused when the training memory estimate does not fit. --runtime measures the same "
                    "network on other runtimes (one-time export, quantize and load costs kept apart from the timed "
                    "calls; every output checked against eager float32, a wrong one flagged !!).")
def bench(
    ctx: typer.Context,
    models: str = typer.Option("v1,v2,vgg16", "--models", "-m", help="Comma-separated model specs (v1, v2@0.75, "
                                                                     "vgg16, package.module:factory)."),
    input: list[str] | None = InputOpt,
    input_dtype: str | None = InputDTypeOpt,
    device: str = DeviceOpt,
    batch: str = typer.Option("1", "--batch", "-b", help="Batch sizes, comma-separated (1,8,32); for image "
                                                        "inputs (224, HxW), a full shape carries its own."),
    threads: int | None = ThreadsOpt,
    oversubscribe: bool = OversubscribeOpt,
    runtime: str | None = RuntimeOpt,
    precision: Precision = PrecisionOpt,
    calibration: Path | None = CalibrationOpt,
    dtype: BenchDType = BenchDTypeOpt,
    channels_last: bool = ChannelsLastOpt,
    compile: bool = BenchCompileOpt,
    min_time: MinTime = 3.0,
    max_time: MaxTime = 10.0,
    classes: int = ClassesOpt,
    label: str | None = LabelOpt,
    keep_denormals: bool = DenormalOpt,
    default_malloc: bool = MallocOpt,
    cudnn_benchmark: bool | None = CudnnOpt,
    mode: Mode = ModeOpt,
    optimizer: OptimizerName = OptimizerOpt,
    save: Path | None = SaveOpt,
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
    quiet: bool = QuietOpt,
) -> None:
    from mbcost.bench.model_bench import bench_runtimes, plan_models, speedups
    from mbcost.render.bench import bench_table, speedup_dicts
    from mbcost.zoo.spec import resolve_sources

    check_targets(output, save)
    specs = resolve_sources(models)
    batches = parse_batches(batch)
    names = runtime_names(runtime, compile)
    settings = settings_from(ctx)
    settings.check_runtimes(names, mode.value)  # a missing package or an impossible request: before any work
    plans = plan_models(specs, input_value(input), batches, settings, num_classes=classes, input_dtype=input_dtype,
                        mode=mode.value, optimizer=optimizer.value)
    with recording(save, "bench") as (out, update):
        run = bench_runtimes(plans, settings, names, measure_fn=timer(ctx), on_record=out.write, progress=update)
    ups = speedups(run.records)
    emit_run(format, output, run, lambda: bench_table(run.records, ups, [f.message for f in run.failures]),
             speedups=speedup_dicts(ups))


# -- profile ---------------------------------------------------------------------------------------


@app.command(help="Per-layer latency of one network joined to its analytic per-layer costs: each category's share "
                  "of the time against its share of the MACs (depthwise layers take far more time than MACs), and "
                  "every layer on the device's roofline (intensity, achieved GFLOP/s, fraction of the bound). "
                  "Layers are timed with forward hooks on every module (CUDA events on GPU). " + TIMING_HELP)
def profile(
    ctx: typer.Context,
    model: str = ModelArg,
    input: list[str] | None = InputOpt,
    input_dtype: str | None = InputDTypeOpt,
    device: str = DeviceOpt,
    batch: int = typer.Option(1, "--batch", "-b", help="Batch size."),
    threads: int | None = ThreadsOpt,
    oversubscribe: bool = OversubscribeOpt,
    runtime: str = typer.Option("eager", "--runtime", "-r",
                                help="Per-layer timing hooks every module, so it runs on eager only."),
    dtype: BenchDType = BenchDTypeOpt,
    channels_last: bool = ChannelsLastOpt,
    min_time: MinTime = 3.0,
    max_time: MaxTime = 10.0,
    top: int | None = typer.Option(None, "--top", help="Show only the N slowest layers (the records keep all)."),
    roofline: bool = typer.Option(True, "--roofline/--no-roofline",
                                  help="Place layers on the measured roofline (peaks cached per device)."),
    refresh_peaks: bool = typer.Option(False, "--refresh-peaks", help="Measure the peaks again, ignoring the cache."),
    classes: int = ClassesOpt,
    label: str | None = LabelOpt,
    keep_denormals: bool = DenormalOpt,
    default_malloc: bool = MallocOpt,
    save: Path | None = SaveOpt,
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
    quiet: bool = QuietOpt,
) -> None:
    from mbcost.bench.layers import profile_model
    from mbcost.bench.model_bench import plan_models
    from mbcost.bench.records import busy_cpus_now
    from mbcost.render.bench import category_table, flat, layers_table, profile_document
    from mbcost.zoo.spec import resolve_source

    check_targets(output, save)
    at_least_one(top, "--top")
    at_least_one(batch, "--batch")
    if runtime_names(runtime, False) != ["eager"]:
        raise SpecError(f"profile times every layer with module hooks, which only the eager runtime calls; "
                        f"--runtime {runtime} runs the network as one compiled program (use mbcost bench --runtime "
                        f"{runtime} for its end-to-end time)")
    spec = resolve_source(model)
    inputs = input_value(input)
    settings = settings_from(ctx)
    plan_models([spec], inputs, [batch], settings, num_classes=classes, input_dtype=input_dtype)  # refuse early
    busy = busy_cpus_now()
    with recording(save, "profile") as (out, update):
        peaks = None
        if roofline:
            update(0, 2, "roofline peaks")
            peaks, record = measure_peaks(ctx, settings, busy, batch=batch, refresh=refresh_peaks)
            out.write(record)
        update(1, 2, f"{spec.label} per layer")
        p = profile_model(spec, inputs, batch, settings, peaks=peaks, num_classes=classes, input_dtype=input_dtype,
                          measure_fn=timer(ctx))
        for r in [*([p.end_to_end] if p.end_to_end else []), *p.layers]:
            out.write(r)
    emit(format, output, table=[category_table(p), layers_table(p, top)], records=[flat(r) for r in p.layers],
         document=profile_document(p))


# -- sweep -----------------------------------------------------------------------------------------


@app.command(help="Standard KxK convolution vs depthwise KxK + pointwise 1x1 over a grid of channels (M = N), kernel "
                  "sizes and feature-map sizes: the theoretical ratio (exact, and the paper's 1/N + 1/K^2) against "
                  "the measured speed-up. --runtime measures both layer stacks on each runtime (exported, quantized "
                  "and checked as bench does for networks; int8 calibrated on random inputs). " + TIMING_HELP)
def sweep(
    ctx: typer.Context,
    channels: str = typer.Option("64,128,256,512", "--channels", help="Channel counts M = N, comma-separated."),
    kernels: str = typer.Option("3,5", "--kernels", help="Kernel sizes K, comma-separated."),
    sizes: str = typer.Option("14,28,56", "--sizes", help="Feature-map sizes F (F x F input), comma-separated."),
    device: str = DeviceOpt,
    batch: int = typer.Option(1, "--batch", "-b", help="Batch size."),
    threads: int | None = ThreadsOpt,
    oversubscribe: bool = OversubscribeOpt,
    runtime: str | None = RuntimeOpt,
    precision: Precision = PrecisionOpt,
    dtype: BenchDType = BenchDTypeOpt,
    channels_last: bool = ChannelsLastOpt,
    compile: bool = BenchCompileOpt,
    min_time: MinTime = 0.2,
    max_time: MaxTime = 2.0,
    label: str | None = LabelOpt,
    keep_denormals: bool = DenormalOpt,
    default_malloc: bool = MallocOpt,
    save: Path | None = SaveOpt,
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
    quiet: bool = QuietOpt,
) -> None:
    from mbcost.bench.sweep import grid, parse_int_list, sweep_runtimes
    from mbcost.render.bench import sweep_table

    check_targets(output, save)
    at_least_one(batch, "--batch")
    points = grid(parse_int_list(channels, "--channels"), parse_int_list(kernels, "--kernels"),
                  parse_int_list(sizes, "--sizes"), batch=batch)
    names = runtime_names(runtime, compile)
    settings = settings_from(ctx)
    settings.check_runtimes(names)  # a missing package or an impossible request: before any work
    with recording(save, "sweep") as (out, update):
        run = sweep_runtimes(points, settings, names, measure_fn=timer(ctx), on_record=out.write, progress=update)
    emit_run(format, output, run, lambda: sweep_table(run.records, [f.message for f in run.failures]))


# -- roofline --------------------------------------------------------------------------------------


@app.command(help="Measure (or show the cached) attainable compute of the device in a dtype (an n x n matmul) and its "
                  "memory bandwidth (a large copy): the roofs every layer of 'mbcost profile' is judged against.")
def roofline(
    ctx: typer.Context,
    device: str = DeviceOpt,
    dtype: BenchDType = BenchDTypeOpt,
    threads: int | None = ThreadsOpt,
    oversubscribe: bool = OversubscribeOpt,
    refresh: bool = typer.Option(False, "--refresh", help="Measure again, ignoring and replacing the cache."),
    label: str | None = LabelOpt,
    save: Path | None = SaveOpt,
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
    quiet: bool = QuietOpt,
) -> None:
    from mbcost.bench.records import busy_cpus_now
    from mbcost.bench.roofline import cache_path
    from mbcost.render.bench import flat, peaks_table, results_document

    check_targets(output, save)
    settings = settings_from(ctx)
    busy = busy_cpus_now()
    with recording(save, "roofline") as (out, update):
        update(0, 1, "matmul and copy")
        peaks, record = measure_peaks(ctx, settings, busy, refresh=refresh)
        out.write(record)
    table = peaks_table([peaks])
    table.notes.append(f"cache: {cache_path()}")
    emit(format, output, table=table, records=[flat(record)],
         document=results_document([record], ridge_point=peaks.ridge_point))
