"""``mbcost report``: one self-contained HTML page of figures and tables."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from mbcost.cli.app import (
    CONVENTIONS_HELP,
    BatchOpt,
    ClassesOpt,
    Execute,
    ExecuteOpt,
    InputDTypeOpt,
    InputOpt,
    Mode,
    ModelsOpt,
    ModeOpt,
    OptimizerName,
    OptimizerOpt,
    app,
    input_value,
)

DEFAULT_OUT = Path("reports") / "mbcost-report.html"


@app.command(help="Write one self-contained HTML report (plotly.js embedded; opens without a network): summary "
                  "table with the papers' quoted top-1, parameters and MACs per model, cost by layer category, "
                  "per-layer costs, standard vs depthwise + pointwise (1/N + 1/K^2), width and resolution "
                  "trade-off, and, from measurements, MACs vs latency and the roofline. Merge runs from several "
                  "machines and devices with repeated --from. " + CONVENTIONS_HELP)
def report(
    models: str = ModelsOpt,
    input: list[str] | None = InputOpt,
    batch: int = BatchOpt,
    classes: int = ClassesOpt,
    input_dtype: str | None = InputDTypeOpt,
    execute: Execute = ExecuteOpt,
    mode: Mode = ModeOpt,
    optimizer: OptimizerName = OptimizerOpt,
    bench: bool = typer.Option(False, "--bench",
                               help="Also measure now, on this machine (CPU, and CUDA when available; float32, short "
                                    "budgets): device peaks, each model end to end and per layer, a small conv "
                                    "sweep. For careful numbers use mbcost bench/profile/sweep --save and --from."),
    from_files: list[Path] | None = typer.Option(
        None, "--from", metavar="FILE",
        help="JSON Lines file written by 'mbcost bench/profile/sweep/roofline --save'; repeat to merge several "
             "machines and devices (each run is labelled by its environment)."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", "-o",
                             help="HTML file to write, atomically (its directory is created if missing)."),
) -> None:
    from mbcost.inputs import resolve_inputs
    from mbcost.report.data import gather, load_records
    from mbcost.report.html import ensure_writable, write_report
    from mbcost.zoo.spec import parse_models

    ensure_writable(out)
    specs = parse_models(models)
    inputs = resolve_inputs(input_value(input), batch=batch, dtype=input_dtype or "float32")
    size = inputs.image_size or inputs
    files = list(from_files or [])
    records = load_records(files)
    sources = [str(p) for p in files]
    notes: list[str] = []
    if bench:
        from mbcost.cli.bench import progress_bar
        from mbcost.report.measure import measure_now

        with progress_bar("measuring") as update:
            measured, notes = measure_now(specs, size, batch, num_classes=classes, progress=update)
        records += measured
        sources.append("--bench (measured now)")
    data = gather(specs, size, batch, num_classes=classes, input_dtype=input_dtype, execute=execute.value,
                  mode=mode.value, optimizer=optimizer.value, records=records, sources=sources, notes=notes)
    args = ["mbcost", "report", "--models", models, *[a for i in (input or ["224"]) for a in ("--input", i)],
            *(["--input-dtype", input_dtype] if input_dtype else []),
            *(["--execute", execute.value] if execute is not Execute.auto else []),
            *(["--mode", mode.value, "--optimizer", optimizer.value] if mode is Mode.train else []),
            *(["--batch", str(batch)] if batch != 1 else []),
            *(["--bench"] if bench else []), *[a for f in files for a in ("--from", str(f))], "--out", str(out)]
    command = " ".join(shlex.quote(a) for a in args)
    path = write_report(data, out, command=command)
    size_mb = path.stat().st_size / 1e6
    measured = f"{len(data.records)} measurement records from {len(data.runs)} run(s)" if data.runs \
        else "no measurements (pass --from results.jsonl or --bench)"
    typer.echo(f"wrote {path} ({size_mb:.1f} MB; {', '.join(m.label for m in data.models)} at "
               f"{data.models[0].input_label}; {measured})")

