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
from mbcost.cli.progress import QuietOpt, progress_bar

__all__ = ["DEFAULT_OUT", "report"]

DEFAULT_OUT = Path("reports") / "mbcost-report.html"


@app.command(help="Write one self-contained HTML report (plotly.js embedded; opens without a network): the MobileNet "
                  "papers' claims checked with numbers computed now (1/N + 1/K^2, '8 to 9 times', V1 vs VGG16, "
                  "V2's table, inverted vs classic residual, the linear-bottleneck experiment, memory, dying "
                  "depthwise kernels with --weights), the accuracy-vs-cost frontier, a summary table with the "
                  "papers' quoted top-1, parameters and MACs per model, cost by layer category, per-layer costs, "
                  "standard vs depthwise + pointwise, width and resolution, and measured latency (measured now "
                  "unless --no-bench; merge runs from other machines with repeated --from). " + CONVENTIONS_HELP)
def report(
    models: str = ModelsOpt,
    input: list[str] | None = InputOpt,
    batch: int = BatchOpt,
    classes: int = ClassesOpt,
    input_dtype: str | None = InputDTypeOpt,
    execute: Execute = ExecuteOpt,
    mode: Mode = ModeOpt,
    optimizer: OptimizerName = OptimizerOpt,
    bench: bool = typer.Option(True, "--bench/--no-bench",
                               help="Measure now, on this machine (default; CPU, and CUDA when available; float32, "
                                    "short budgets): device peaks, each model end to end and per layer, a small conv "
                                    "sweep. --no-bench skips it. For careful numbers use mbcost bench/profile/sweep "
                                    "--save and --from."),
    weights: list[str] | None = typer.Option(
        None, "--weights", metavar="MODEL=CHECKPOINT",
        help="A trained state_dict for the dying-depthwise-kernels claim, e.g. --weights v1=v1.pt --weights "
             "v2=v2.pt (loaded with torch.load weights_only=True; it must match the model's keys and shapes)."),
    threshold: float = typer.Option(1e-3, "--threshold",
                                    help="With --weights: a kernel is dead when its L1 norm is below THRESHOLD x "
                                         "the median of its layer's kernels."),
    from_files: list[Path] | None = typer.Option(
        None, "--from", metavar="FILE",
        help="JSON Lines file written by 'mbcost bench/profile/sweep/roofline --save'; repeat to merge several "
             "machines and devices (each run is labelled by its environment)."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", "-o",
                             help="HTML file to write, atomically (its directory is created if missing)."),
    quiet: bool = QuietOpt,
) -> None:
    from mbcost.inputs import resolve_inputs
    from mbcost.report.data import gather, load_records
    from mbcost.report.figures import report_figures
    from mbcost.report.html import ensure_writable, write_report
    from mbcost.weights import checkpoint_health, parse_weights_option
    from mbcost.zoo.spec import parse_models

    ensure_writable(out)
    checkpoints = [parse_weights_option(w) for w in weights or []]
    specs = parse_models(models)
    inputs = resolve_inputs(input_value(input), batch=batch, dtype=input_dtype or "float32")
    size = inputs.image_size or inputs
    files = list(from_files or [])
    records = load_records(files)
    sources = [str(p) for p in files]
    health = {}
    notes: list[str] = []
    with progress_bar("report") as update:
        for n, (spec_text, path) in enumerate(checkpoints):
            update(n, len(checkpoints), f"reading {path}")
            h = checkpoint_health(path, spec_text, threshold=threshold, num_classes=classes)
            health[h.model] = h
        if bench:
            from mbcost.report.measure import measure_now

            measured, notes = measure_now(specs, size, batch, num_classes=classes,
                                          progress=lambda done, total, what: update(done, total, f"measuring {what}"))
            records += measured
            sources.append("--bench (measured now)")
        update(0, 2, "analysing the models, checking the claims")
        data = gather(specs, size, batch, num_classes=classes, input_dtype=input_dtype, execute=execute.value,
                      mode=mode.value, optimizer=optimizer.value, records=records, sources=sources, notes=notes,
                      weights=health)
        update(1, 2, "drawing the figures")
        figures = report_figures(data)
    args = ["mbcost", "report", "--models", models, *[a for i in (input or ["224"]) for a in ("--input", i)],
            *(["--input-dtype", input_dtype] if input_dtype else []),
            *(["--execute", execute.value] if execute is not Execute.auto else []),
            *(["--mode", mode.value, "--optimizer", optimizer.value] if mode is Mode.train else []),
            *(["--batch", str(batch)] if batch != 1 else []),
            *([] if bench else ["--no-bench"]), *[a for f in files for a in ("--from", str(f))],
            *[a for w in weights or [] for a in ("--weights", w)],
            *(["--threshold", f"{threshold:g}"] if weights and threshold != 1e-3 else []), "--out", str(out)]
    command = " ".join(shlex.quote(a) for a in args)
    path = write_report(data, out, figures, command=command)
    size_mb = path.stat().st_size / 1e6
    measured = f"{len(data.records)} measurement records from {len(data.runs)} run(s)" if data.runs \
        else "no measurements (measured unless --no-bench; or pass --from results.jsonl)"
    typer.echo(f"wrote {path} ({size_mb:.1f} MB; {', '.join(m.label for m in data.models)} at "
               f"{data.models[0].input_label}; {measured})")

