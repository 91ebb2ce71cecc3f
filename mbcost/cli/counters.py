"""``mbcost reconcile``: each counter's total on the real module, explained. (``mbcost compare --counters`` and
``--convention`` are computed by ``mbcost.comparison`` and rendered by ``mbcost.render.comparison``.)"""

from __future__ import annotations

from pathlib import Path

import typer

from mbcost.cli.app import (
    COUNTERS_HELP,
    BatchOpt,
    ClassesOpt,
    Format,
    FormatOpt,
    InputOpt,
    ModelArg,
    OutputOpt,
    app,
    check_writable,
    emit,
    input_value,
)
from mbcost.cli.progress import QuietOpt, progress_bar

__all__ = ["reconcile"]


# --- reconcile -------------------------------------------------------------------------------


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
