"""``mbcost weights``: dead kernels and zero weights of a trained checkpoint, per layer and category."""

from __future__ import annotations

from pathlib import Path

import typer

from mbcost.cli.app import ClassesOpt, Format, FormatOpt, OutputOpt, app, check_writable, emit
from mbcost.weights import DEFAULT_THRESHOLD

__all__ = ["weights"]


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
