"""``mbcost compare``, ``mbcost layers`` and ``mbcost conv``: the analytic costs."""

from __future__ import annotations

from pathlib import Path

import typer

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
    ModelsOpt,
    ModeOpt,
    OptimizerName,
    OptimizerOpt,
    OutputOpt,
    app,
    check_writable,
    emit,
    input_value,
    timer,
)
from mbcost.cli.progress import QuietOpt

__all__ = ["compare", "conv", "layers"]


@app.command(help="Compare models side by side: params, MACs, FLOPs, ratios, memory, category shares. "
                  + CONVENTIONS_HELP)
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
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
    counters: str | None = CountersOpt,
    convention: ConventionName = ConventionOpt,
    bench: bool = BenchFlagOpt,
    quiet: bool = QuietOpt,
) -> None:
    from mbcost.cli.counters import compare_extras
    from mbcost.cost.analyze import analyze
    from mbcost.render.costs import compare_dict, compare_records, compare_table
    from mbcost.zoo.spec import parse_models

    check_writable(output)
    specs = parse_models(models)
    inputs = input_value(input)
    costs = [analyze(s, inputs, batch, num_classes=classes, dtype=dtype.value, input_dtype=input_dtype,
                     execute=execute.value, mode=mode.value, optimizer=optimizer.value) for s in specs]
    extras = compare_extras(specs, costs, counters, convention, batch, classes)  # --counters, --convention
    if bench:  # --bench/--no-bench: measured latency rows (mbcost.cli.bench)
        from mbcost.cli.bench import add_measurements

        add_measurements(extras, specs, costs, batch, dtype.value, classes, measure_fn=timer(ctx))
    costs = extras.costs
    emit(format, output, table=extras.on_table(compare_table(costs, extra_rows=extras.rows)),
         records=extras.on_records(compare_records(costs)),
         document=extras.on_document(compare_dict(costs, extra=extras.json)))


@app.command(help="Per-layer breakdown of one model: shapes, kernel, stride, groups, params, MACs, activation "
                  "bytes and arithmetic intensity. " + CONVENTIONS_HELP)
def layers(
    model: str = typer.Argument(..., help="Model spec: v1, v2@0.75, vgg16, package.module:factory ..."),
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
    from mbcost.cost.conv import compare_conv
    from mbcost.render.costs import conv_records, conv_table
    from mbcost.zoo.spec import parse_input

    check_writable(output)
    comparison = compare_conv(cin, cout, k, parse_input(size), stride, padding, bias, batch)
    table, records, document = conv_table(comparison), conv_records(comparison), comparison.to_dict()
    if bench:  # --bench: measured standard vs separable time (mbcost.cli.bench)
        from mbcost.cli.bench import add_conv_measurement

        add_conv_measurement(comparison, table, records, document, measure_fn=timer(ctx))
    emit(format, output, table=table, records=records, document=document)
