"""``mbcost memory``: which activations must exist whole (the MobileNetV2 paper's memory claim)."""

from __future__ import annotations

from pathlib import Path

import typer

from mbcost.cli.app import (
    BatchOpt,
    DType,
    DTypeOpt,
    Format,
    FormatOpt,
    InputOpt,
    OutputOpt,
    app,
    check_writable,
    emit,
    input_value,
)

__all__ = ["memory"]

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
