"""``mbcost gate``: the CI regression gate on parameter counts and MACs.

Exit status: 0 when every model matches the baseline, 1 on drift (the per-layer diff is the
output, not an error), 2 for a usage or input problem (one line on stderr).
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path

import typer

from mbcost.cli.app import CONVENTIONS_HELP, app, show

__all__ = ["gate"]


class GateFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


@app.command(help="CI regression gate: compare parameter counts (total and per layer, exact) and MACs "
                  "(optionally within --macs-tolerance) of the configured models with a committed baseline. "
                  "Exit 0: match; 1: drift, with a per-layer diff; 2: usage or input problem. "
                  "Configure under [tool.mbcost.gate] in pyproject.toml (models, inputs, baseline, "
                  "macs_tolerance); options override it. With $GITHUB_STEP_SUMMARY set, a markdown summary "
                  "is appended there. " + CONVENTIONS_HELP)
def gate(
    baseline: Path | None = typer.Option(None, "--baseline", help="Baseline JSON file (default: from the "
                                         "config, else mbcost-baseline.json next to pyproject.toml)."),
    models: str | None = typer.Option(None, "--models", "-m", help="Comma-separated specs to gate (zoo names, "
                                      "NAME@WIDTH, package.module:factory); default: the config's, else the "
                                      "baseline's."),
    input: list[str] | None = typer.Option(None, "--input", "-i", help="Inputs to check, each one configuration, "
                                           "read as every command reads --input: 224, 224x160 (an image), a full "
                                           "shape (1x3x16x112x112, [1,64]), an optional :DTYPE (1x64:int64 for "
                                           "token ids); repeat the option or give a comma list (224,192)."),
    macs_tolerance: float | None = typer.Option(None, "--macs-tolerance", help="Relative MACs tolerance, "
                                                "e.g. 0.01 for 1% (per layer and in total). Parameter counts "
                                                "always match exactly."),
    memory_tolerance: float | None = typer.Option(None, "--memory-tolerance",
                                                  help="Relative tolerance on the estimated activation peaks, e.g. "
                                                       "0.05 for 5% (default exact, or the config's)."),
    mode: str | None = typer.Option(None, "--mode", help="inference, or train: also gate a training step's "
                                    "activation peak (default: the config's, else inference)."),
    optimizer: str | None = typer.Option(None, "--optimizer", help="Optimizer of --mode train: sgd, momentum, "
                                         "adam, adamw."),
    update: bool = typer.Option(False, "--update", help="Rewrite the baseline from the current models, "
                                "printing what changed."),
    format: GateFormat = typer.Option(GateFormat.table, "--format", "-f", help="Output format."),
    config: Path | None = typer.Option(None, "--config", help="pyproject.toml to read [tool.mbcost.gate] "
                                       "from (default: the nearest one from the current directory up)."),
) -> None:
    from mbcost.gate import load_config, parse_inputs, run_gate, update_baseline
    from mbcost.render import gate as render

    cfg = load_config(config).override(
        models=_split(models) if models is not None else None,
        inputs=parse_inputs(input) if input else None,
        baseline=baseline,
        macs_tolerance=macs_tolerance,
        memory_tolerance=memory_tolerance,
        mode=mode,
        optimizer=optimizer,
    )
    if update:
        outcome = update_baseline(cfg)
        result, closing = outcome.changes, render.update_message(outcome)
    else:
        outcome, result = None, run_gate(cfg)
        closing = render.verdict(result)

    if format is GateFormat.json:
        from mbcost.render.table import to_json

        sys.stdout.write(to_json(render.document(result, update=outcome)))
    elif format is GateFormat.markdown:
        sys.stdout.write(render.markdown(result, update=outcome))
    else:
        show(render.tables(result, update=update), pipe_width=200)  # CI logs are wider than a terminal
        typer.echo(closing)

    summary = os.environ.get(SUMMARY_ENV)
    if summary:
        _append_summary(Path(summary), render.markdown(result, update=outcome))
    if not update and not result.passed:
        raise typer.Exit(code=result.exit_code)


def _split(text: str) -> list[str]:
    from mbcost.errors import SpecError

    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise SpecError("no models given; e.g. --models v1,v2,vgg16")
    return parts


def _append_summary(path: Path, text: str) -> None:
    """Append to the job summary; a failure to do so is reported but does not change the verdict."""
    from mbcost.errors import MbcostError
    from mbcost.io import append_text

    try:
        append_text(path, text + "\n")
    except MbcostError as exc:
        typer.echo(f"mbcost: warning: ${SUMMARY_ENV}: {exc}", err=True)
