"""``mbcost report``: one self-contained HTML page of figures and tables."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from mbcost.bench.runtimes import EXTRA, RUNTIMES
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
from mbcost.report import DEFAULT_OUT
from mbcost.weights import DEFAULT_THRESHOLD

__all__ = ["DEFAULT_OUT", "report"]


@app.command(help="Write one self-contained HTML report (plotly.js embedded; opens without a network): the MobileNet "
                  "papers' claims checked with numbers computed now (1/N + 1/K^2, '8 to 9 times', V1 vs VGG16, "
                  "V2's table, inverted vs classic residual, the linear-bottleneck experiment, memory, dying "
                  "depthwise kernels with --weights), the accuracy-vs-cost frontier, a summary table with the "
                  "papers' quoted top-1, parameters and MACs per model, cost by layer category, per-layer costs, "
                  "standard vs depthwise + pointwise, width and resolution, and measured latency (measured now "
                  "unless --no-bench; merge runs from other machines with repeated --from); runs of several runtimes "
                  "(--runtime, or saved by mbcost bench/sweep --runtime) add a runtime table and figure and the "
                  "realised saving per runtime to the '8 to 9 times' claim. " + CONVENTIONS_HELP)
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
    runtime: str | None = typer.Option(
        None, "--runtime", "-r",
        help="Also measure now on these runtimes, comma-separated (" + ", ".join(RUNTIMES) + "): each model end to "
             "end and the conv sweep, float32, next to eager PyTorch; the page gains a runtime table and figure and "
             "the '8 to 9 times' claim the realised saving per runtime. All but eager and compile need: pip install "
             f"'{EXTRA}'. Runs saved by mbcost bench/sweep --runtime --save show the same with --from."),
    weights: list[str] | None = typer.Option(
        None, "--weights", metavar="MODEL=CHECKPOINT",
        help="A trained state_dict for the dying-depthwise-kernels claim, e.g. --weights v1=v1.pt --weights "
             "v2=v2.pt (loaded with torch.load weights_only=True; it must match the model's keys and shapes)."),
    threshold: float = typer.Option(DEFAULT_THRESHOLD, "--threshold",
                                    help="With --weights: a kernel is dead when its L1 norm is below THRESHOLD x "
                                         "the median of its layer's kernels."),
    from_files: list[Path] | None = typer.Option(
        None, "--from", metavar="FILE",
        help="JSON Lines file written by 'mbcost bench/profile/sweep/roofline --save'; repeat to merge several "
             "machines and devices (each run is labelled by its environment)."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", "-o",
                             help="HTML file to write, atomically (its directory is created if missing)."),
    profile: Path | None = typer.Option(
        None, "--profile", metavar="FILE",
        help="A device profile (mbcost calibrate) to predict the measured models' latency with, even one made for "
             "another setup (the page then says FORCED); default: this device's profile for the measured setup."),
    quiet: bool = QuietOpt,
) -> None:
    from mbcost.report import build_report
    from mbcost.weights import parse_weights_option

    checkpoints = [parse_weights_option(w) for w in weights or []]
    files = list(from_files or [])
    args = ["mbcost", "report", "--models", models, *[a for i in input or [] for a in ("--input", i)],
            *(["--input-dtype", input_dtype] if input_dtype else []),
            *(["--execute", execute.value] if execute is not Execute.auto else []),
            *(["--mode", mode.value, "--optimizer", optimizer.value] if mode is Mode.train else []),
            *(["--batch", str(batch)] if batch != 1 else []),
            *([] if bench else ["--no-bench"]), *(["--runtime", runtime] if runtime else []),
            *[a for f in files for a in ("--from", str(f))],
            *[a for w in weights or [] for a in ("--weights", w)],
            *(["--threshold", f"{threshold:g}"] if weights and threshold != DEFAULT_THRESHOLD else []),
            *(["--profile", str(profile)] if profile else []),
            "--out", str(out)]
    with progress_bar("report") as update:
        written = build_report(models, input_value(input), batch, num_classes=classes, input_dtype=input_dtype,
                               from_files=files, bench=bench, runtime=runtime, checkpoints=checkpoints,
                               threshold=threshold, out=out, profile=profile,
                               command=" ".join(shlex.quote(a) for a in args), progress=update,
                               execute=execute.value, mode=mode.value, optimizer=optimizer.value)
    data = written.data
    size_mb = written.path.stat().st_size / 1e6
    measured = f"{len(data.records)} measurement records from {len(data.runs)} run(s)" if data.runs \
        else "no measurements (measured unless --no-bench; or pass --from results.jsonl)"
    typer.echo(f"wrote {written.path} ({size_mb:.1f} MB; {', '.join(m.label for m in data.models)} at "
               f"{data.models[0].input_label}; {measured})")
    if data.predicted is not None and data.predicted.forced:
        typer.echo(f"mbcost: warning: forced: profile made for another setup ({'; '.join(data.predicted.mismatch)})",
                   err=True)
    if written.failures:  # one line, exit 2, after writing the page with everything else
        from mbcost.bench.errors import BenchError

        raise BenchError("; ".join(written.failures))
