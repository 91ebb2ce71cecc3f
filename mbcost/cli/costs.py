"""``mbcost compare``, ``layers``, ``conv``, ``memory``, ``weights`` and ``reconcile``: the analytic costs."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from mbcost.bench.runtimes import EXTRA, RUNTIMES
from mbcost.cli.app import (
    CONVENTIONS_HELP,
    BatchOpt,
    ClassesOpt,
    Execute,
    ExecuteOpt,
    Format,
    FormatOpt,
    InputDTypeOpt,
    InputOpt,
    Mode,
    ModelArg,
    ModelsOpt,
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
from mbcost.cost.conventions import CONVENTIONS, REGISTRY
from mbcost.counters.base import ADAPTERS
from mbcost.inputs import FLOAT_DTYPES
from mbcost.weights import DEFAULT_THRESHOLD

__all__ = ["compare", "conv", "layers", "memory", "reconcile", "weights"]

#: The model dtypes as a choice, from their one list (``mbcost.inputs.FLOAT_DTYPES``).
DType = Enum("DType", {d: d for d in FLOAT_DTYPES}, type=str)
DTypeOpt = typer.Option(DType.float32, "--dtype", help="Element type for byte counts.")
PrecisionOpt = typer.Option(Precision.float32, "--precision",
                            help="float32, or int8: the bytes of the statically quantized int8 model (int8 weights "
                                 "with a scale per output channel, int8 activations; MACs unchanged, as int8 MACs), "
                                 "and unless --no-bench its latency on eager (or each --runtime), quantized by each "
                                 "runtime's own toolchain on random calibration inputs: the latency is "
                                 "representative, the accuracy is not. The float types stay on --dtype.")
# Options of the cross-checking counters (reconcile), borrowed by compare; names from their registries.
ConventionName = Enum("ConventionName", {c: c for c in CONVENTIONS}, type=str)  # paper, fvcore, ..., ptflops-aten
COUNTERS_HELP = ("External counters to run on the real module (CPU forward): comma list of "
                 + ", ".join(f"{name} ({adapter.ABOUT})" for name, adapter in ADAPTERS.items())
                 + ", or 'all'. fvcore, thop and ptflops need: pip install 'mbcost[counters]'.")
CONVENTION_HELP = ("Count as a counter does: " + "; ".join(f"{c.name}: {c.summary}" for c in REGISTRY.values())
                   + ". Each preset equals its library's total; the table shows its MACs and elementwise ops apart.")
COMPARE_RUNTIME_HELP = ("Also measure on these runtimes, comma-separated, next to eager PyTorch (always measured: the "
                        "baseline): " + ", ".join(RUNTIMES) + f". All but eager and compile need: pip install "
                        f"'{EXTRA}'. See mbcost bench --help.")


@app.command(help="Compare models side by side: params, MACs, FLOPs, ratios, memory, category shares, and measured "
                  "latency (unless --no-bench). --runtime measures each model on each runtime too, at --precision "
                  "(int8: each runtime's own static quantizer, random calibration), next to eager PyTorch: a runtime "
                  "x model table of medians, speed-ups against eager, and measured speed-ups between the models next "
                  "to their MAC ratios. " + CONVENTIONS_HELP)
def compare(
    ctx: typer.Context,
    models: str = ModelsOpt,
    input: list[str] | None = InputOpt,
    batch: int = BatchOpt,
    classes: int = ClassesOpt,
    dtype: DType = DTypeOpt,
    input_dtype: str | None = InputDTypeOpt,
    execute: Execute = ExecuteOpt,
    mode: Mode = ModeOpt,
    optimizer: OptimizerName = OptimizerOpt,
    precision: Precision = PrecisionOpt,
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
    counters: str | None = typer.Option(None, "--counters", help=COUNTERS_HELP),
    convention: ConventionName = typer.Option(ConventionName.paper, "--convention", help=CONVENTION_HELP),
    bench: bool = typer.Option(True, "--bench/--no-bench",
                               help="Also measure latency: CPU (and CUDA when available) at the given batch, a short "
                                    "time budget per model (mbcost bench measures longer)."),
    runtime: str | None = typer.Option(None, "--runtime", "-r", help=COMPARE_RUNTIME_HELP),
    quiet: bool = QuietOpt,
) -> None:
    from mbcost.comparison import compare_models
    from mbcost.render.comparison import comparison_document, comparison_records, comparison_tables
    from mbcost.zoo.spec import resolve_sources

    check_writable(output)
    c = compare_models(resolve_sources(models), input_value(input), batch, num_classes=classes, dtype=dtype.value,
                       input_dtype=input_dtype, execute=execute.value, mode=mode.value, optimizer=optimizer.value,
                       precision=precision.value, counters=counters, convention=convention.value, bench=bench,
                       runtime=runtime, measure_fn=timer(ctx), stage=progress_bar)
    emit(format, output, table=comparison_tables(c), records=comparison_records(c), document=comparison_document(c))
    if c.failures:  # one line, exit 2, after showing what was measured
        from mbcost.bench.errors import BenchError

        raise BenchError("; ".join(f.message for f in c.failures))


@app.command(help="Per-layer breakdown of one model: shapes, kernel, stride, groups, params, MACs, activation "
                  "bytes and arithmetic intensity. " + CONVENTIONS_HELP)
def layers(
    model: str = ModelArg,
    input: list[str] | None = InputOpt,
    batch: int = BatchOpt,
    classes: int = ClassesOpt,
    dtype: DType = DTypeOpt,
    input_dtype: str | None = InputDTypeOpt,
    execute: Execute = ExecuteOpt,
    mode: Mode = ModeOpt,
    optimizer: OptimizerName = OptimizerOpt,
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
) -> None:
    from mbcost.cost.analyze import analyze
    from mbcost.render.costs import layer_records, layers_table

    check_writable(output)
    cost = analyze(model, input_value(input), batch, num_classes=classes, dtype=dtype.value,
                   input_dtype=input_dtype, execute=execute.value, mode=mode.value, optimizer=optimizer.value)
    document = cost.to_dict(layers=True)
    emit(format, output, table=layers_table(cost), records=layer_records(cost), document=document)


@app.command(help="One standard KxK convolution (M -> N channels) against depthwise KxK + pointwise 1x1: params "
                  "and MACs of each, the exact ratio, and the MobileNet paper's closed form 1/N + 1/K^2. "
                  + CONVENTIONS_HELP)
def conv(
    ctx: typer.Context,
    cin: int = typer.Option(512, "--cin", help="M: input channels."),
    cout: int = typer.Option(512, "--cout", help="N: output channels."),
    k: int = typer.Option(3, "--k", help="K: kernel size (KxK)."),
    size: str = typer.Option("14", "--size", help="F: input feature-map size, F or HxW."),
    stride: int = typer.Option(1, "--stride", help="Stride of the standard and of the depthwise conv."),
    padding: int | None = typer.Option(None, "--padding", help="Zero padding (default (K-1)//2)."),
    bias: bool = typer.Option(False, "--bias/--no-bias", help="Give every convolution a bias."),
    batch: int = BatchOpt,
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
    bench: bool = typer.Option(False, "--bench/--no-bench",
                               help="Also time both on CPU (float32) and show the measured speed-up next to the MAC "
                                    "speed-up."),
) -> None:
    from mbcost.comparison import measure_conv
    from mbcost.cost.conv import compare_conv
    from mbcost.render.costs import conv_document, conv_records, conv_table
    from mbcost.zoo.spec import parse_input

    check_writable(output)
    comparison = compare_conv(cin, cout, k, parse_input(size), stride, padding, bias, batch)
    measured = measure_conv(comparison, measure_fn=timer(ctx)) if bench else None  # --bench: measured times
    emit(format, output, table=conv_table(comparison, measured), records=conv_records(comparison, measured),
         document=conv_document(comparison, measured))


# The shared --dtype, defaulting to the paper's 16-bit activations (Sandler et al. 2018, Table 3).
MemoryDTypeOpt = typer.Option(DType.float16, "--dtype",
                              help=f"{DTypeOpt.help} Default float16, as the paper assumes (a model of your own "
                                   "must then accept float16 inputs; else give --dtype float32).")


@app.command(help="Activation memory per spatial resolution, materialized vs streamed: the largest tensor that "
                  "must exist whole when every op output is kept, and when each inverted-residual block (and the "
                  "stem before it) is computed in slices (MobileNetV2 paper, Table 3: V1 1600K, V2 400K).")
def memory(
    models: str = typer.Argument("v1,v2", help="Comma-separated specs: zoo names (v1, v2, vgg16...), NAME@WIDTH, "
                                               "or package.module:factory."),
    input: list[str] | None = InputOpt,
    batch: int = BatchOpt,
    dtype: DType = MemoryDTypeOpt,
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
) -> None:
    from mbcost.cost.schedule import memory_schedules
    from mbcost.render.memory import memory_document, memory_records, memory_table

    check_writable(output)
    schedules = memory_schedules(models, input_value(input), batch, dtype=dtype.value)
    emit(format, output, table=memory_table(schedules), records=memory_records(schedules),
         document=memory_document(schedules))


@app.command(help="Dead kernels of a trained state_dict (torch.load weights_only=True: never unpickles code): per "
                  "conv and linear layer and per category (conv, dwconv, pwconv, linear), the fraction of kernels "
                  "(one output channel's filter) whose L1 norm is below --threshold x the layer's median, and the "
                  "fraction of weights exactly zero. The checkpoint must match the model's keys and shapes.")
def weights(
    checkpoint: Path = typer.Argument(..., help="A file written by torch.save(model.state_dict(), FILE)."),
    model: str = typer.Option(..., "--model", "-m", help="The model it belongs to: v1, v2@0.5, vgg16, "
                                                         "package.module:factory ..."),
    threshold: float = typer.Option(DEFAULT_THRESHOLD, "--threshold",
                                    help="Dead below THRESHOLD x the median L1 norm of the layer's kernels."),
    classes: int = ClassesOpt,
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
) -> None:
    from mbcost.render.weights import weights_document, weights_records, weights_table
    from mbcost.weights import checkpoint_health

    check_writable(output)
    health = checkpoint_health(checkpoint, model, threshold=threshold, num_classes=classes)
    emit(format, output, table=weights_table(health), records=weights_records(health),
         document=weights_document(health))


@app.command(help="Cross-check the analytic count against fvcore, thop, torch's FlopCounterMode and ptflops (both "
                  "backends) run on the real module, and explain each difference: per counter, components by op "
                  "kind and layer category that sum exactly to (counter total - analytic MACs), the ops each "
                  "counter skips with their would-be cost, and the ops the libraries report as unsupported. "
                  "Analytic = the papers' Mult-Adds (conv + linear MACs, bias excluded); amounts are in each "
                  "counter's unit (fvcore, thop, ptflops: a MAC and an elementwise op count one each; torch: "
                  "FLOPs = 2 x MACs). Exit 0: every unit explained; 1: a counter's total leaves an unexplained "
                  "remainder (the output lists it as '!! unexplained'); 2: usage or input problem.")
def reconcile(
    model: str = ModelArg,
    input: list[str] | None = InputOpt,
    batch: int = BatchOpt,
    classes: int = ClassesOpt,
    counters: str = typer.Option("all", "--counters", help=COUNTERS_HELP),
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
    quiet: bool = QuietOpt,
) -> None:
    from mbcost.counters.base import parse_counters
    from mbcost.counters.reconciliation import reconcile_model
    from mbcost.render.reconcile import reconcile_document, reconcile_records, reconcile_table

    check_writable(output)
    names = parse_counters(counters)
    with progress_bar("reconcile") as update:
        update(0, 1, f"{model}: {', '.join(names)} on the real module")
        cost, recs = reconcile_model(model, input_value(input), batch, names, num_classes=classes)
    emit(format, output, table=reconcile_table(cost, recs), records=reconcile_records(recs),
         document=reconcile_document(cost, recs))
    if not all(r.exact for r in recs):  # a remainder no preset explains: the output says which, the status too
        raise typer.Exit(code=1)
