"""``mbcost calibrate`` and ``mbcost predict``: a device profile, and latency predicted with it."""

from __future__ import annotations

from pathlib import Path

import typer

from mbcost.cli.app import (
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

__all__ = ["calibrate", "predict"]

DeviceOpt = typer.Option("cpu", "--device", help="The device calibrated (cpu).")
RuntimeOpt = typer.Option("eager", "--runtime", "-r", help="eager (PyTorch op by op) or onnxruntime (CPU provider, "
                                                          "conv + BatchNorm + activation fused).")
PrecisionOpt = typer.Option("float32", "--precision", help="float32.")
ThreadsOpt = typer.Option(None, "--threads", help="Intra-op threads (default: torch's current setting).")


@app.command(help="Calibrate this device for latency prediction: time a grid of kernels (convolutions by kind, "
                  "matmuls, norms, activations, elementwise, pooling, softmax), sampling more where the fit is worst, "
                  "and a few whole models; fit and save a device profile in the cache. Resumable: an interrupted run "
                  "keeps its samples.")
def calibrate(
    device: str = DeviceOpt,
    runtime: str = RuntimeOpt,
    precision: str = PrecisionOpt,
    threads: int | None = ThreadsOpt,
    budget: float = typer.Option(12.0, "--budget", help="Wall-clock budget in minutes."),
    fresh: bool = typer.Option(False, "--fresh", help="Discard the samples of earlier runs for this device, "
                                                      "runtime and threads (default: resume with them)."),
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
    quiet: bool = QuietOpt,
) -> None:
    from mbcost.predict.calibrate import calibrate as run
    from mbcost.render.predict import calibration_document, calibration_records, calibration_table

    check_writable(output)
    with progress_bar("calibrating") as update:
        report = run(device=device, runtime=runtime, precision=precision, threads=threads, budget_minutes=budget,
                     progress=update, fresh=fresh)
    emit(format, output, table=calibration_table(report), records=calibration_records(report),
         document=calibration_document(report))


@app.command(help="Predict a model's latency on this calibrated device without running it: its analysis (meta "
                  "device) priced by the device profile of mbcost calibrate, per kernel and in total, with intervals.")
def predict(
    model: str = ModelArg,
    input: list[str] | None = InputOpt,
    batch: int = BatchOpt,
    classes: int = ClassesOpt,
    device: str = DeviceOpt,
    runtime: str = RuntimeOpt,
    precision: str = PrecisionOpt,
    threads: int | None = ThreadsOpt,
    profile: Path | None = typer.Option(None, "--profile", help="A device profile file to use, even one made for "
                                                               "another setup (the output then says so)."),
    format: Format = FormatOpt,
    output: Path | None = OutputOpt,
) -> None:
    from mbcost.predict.predictor import predict as run
    from mbcost.render.predict import prediction_document, prediction_records, prediction_table

    check_writable(output)
    p = run(model, input_value(input), batch, device=device, runtime=runtime, precision=precision, threads=threads,
            profile=profile, num_classes=classes)
    emit(format, output, table=prediction_table(p), records=prediction_records(p), document=prediction_document(p))
    if p.forced:
        typer.echo(f"mbcost: warning: forced: profile made for another setup ({'; '.join(p.mismatch)})", err=True)
