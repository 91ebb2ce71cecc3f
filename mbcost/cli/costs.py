"""``mbcost compare``, ``mbcost layers`` and ``mbcost conv``: the analytic costs."""

from __future__ import annotations

from pathlib import Path

import typer

from mbcost.bench.runtimes import EXTRA, RUNTIMES
from mbcost.cli.app import (
    CONVENTIONS_HELP,
    BatchOpt,
    BenchFlagOpt,
    ClassesOpt,
    ConvBenchOpt,
    ConventionName,
    ConventionOpt,
    CountersOpt,
    DType,
    DTypeOpt,
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
    PrecisionOpt,
    app,
    check_writable,
    emit,
    input_value,
    timer,
)
from mbcost.cli.progress import QuietOpt, progress_bar

__all__ = ["compare", "conv", "layers"]

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
    counters: str | None = CountersOpt,
    convention: ConventionName = ConventionOpt,
    bench: bool = BenchFlagOpt,
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
    bench: bool = ConvBenchOpt,
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
