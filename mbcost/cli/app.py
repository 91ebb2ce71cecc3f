"""The typer application, its one error path and the shared output helpers.

Commands parse their options, call the library, and hand a result to ``emit``. Every
``MbcostError`` and click usage error becomes one line on stderr with exit status 2; Ctrl-C
exits 130. No command computes a cost or a time itself.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from mbcost.cost.precision import PRECISIONS
from mbcost.cost.training import MODES, OPTIMIZERS
from mbcost.cost.walker import EXECUTE_MODES
from mbcost.errors import MbcostError

if TYPE_CHECKING:
    from mbcost.bench.timer import MeasureFn

__all__ = [
    "CONVENTIONS_HELP", "BatchOpt", "ClassesOpt", "Execute", "ExecuteOpt", "Format", "FormatOpt", "InputDTypeOpt",
    "InputOpt", "Mode", "ModeOpt", "ModelArg", "ModelsOpt", "OptimizerName", "OptimizerOpt", "OutputOpt", "Precision",
    "app", "check_writable", "emit", "input_value", "show", "timer",
]

CONVENTIONS_HELP = (
    "Conventions: MACs = multiply-accumulates of conv and linear layers (bias, BatchNorm, activations, pooling "
    "and adds excluded: the papers' Mult-Adds); FLOPs = 2 x MACs; other work is reported separately as "
    "elementwise ops; params include biases and BatchNorm affine parameters."
)


class OneLineErrors(TyperGroup):
    """A command group whose failures are one line on stderr and a meaningful exit status."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name or "mbcost", complete_var=complete_var,
                              standalone_mode=False, **extra)
        except MbcostError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:
            sys.exit(1)
        except Exception as exc:
            # typer's (vendored) click exceptions, matched by shape so any typer/click version works.
            name = type(exc).__name__
            if name == "NoArgsIsHelpError":
                ctx = getattr(exc, "ctx", None)
                typer.echo(ctx.get_help() if ctx else str(exc))
                sys.exit(0)
            if name == "Abort":
                _fail("interrupted", 130)
            if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
                _fail(exc.format_message(), exc.exit_code)
            raise
        if rv == 130:  # typer turns Ctrl-C into Exit(130) itself; still say why in one line
            _fail("interrupted", 130)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> None:
    line = " ".join(str(message).split())
    typer.echo(f"mbcost: error: {line}", err=True)
    sys.exit(code)


app = typer.Typer(
    cls=OneLineErrors,
    name="mbcost",
    help="What a convolutional network costs and why: standard vs depthwise-separable convolution, "
         "MobileNetV1/V2 vs VGG16, analytic counts, cross-checked counters, measured latency. "
         + CONVENTIONS_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"


# Shared option declarations (one home for each option's wording); choices from their one list each.
Execute = Enum("Execute", {m: m for m in EXECUTE_MODES}, type=str)  # auto, meta, real
Mode = Enum("Mode", {m: m for m in MODES}, type=str)  # inference, train
OptimizerName = Enum("OptimizerName", {o: o for o in OPTIMIZERS}, type=str)  # sgd, momentum, adam, adamw
Precision = Enum("Precision", {p: p for p in PRECISIONS}, type=str)  # float32, int8

ModelsOpt = typer.Option("v1,v2,vgg16", "--models", "-m",
                         help="Comma-separated specs: zoo names (v1, v1-conv, v2, vgg16, vgg16-bn), "
                              "NAME@WIDTH (v2@0.75), torchvision:NAME, timm:NAME, hf:ID_OR_PATH (a local directory "
                              "holding config.json works offline), or package.module:factory.")
INPUT_HELP = ("Model input: 224 or HxW (an image, batch x 3 x H x W), a full shape such as 1x3x16x112x112 or "
              "[1,128], with an optional :DTYPE (1x128:int64) and NAME= for a keyword input "
              "(attention_mask=1x128:int64). Repeat for several inputs. Default: 224; an hf: model gets its token ids "
              "and attention mask (1x128:int64) or pixel values (config.image_size), a timm: model its own size.")
InputOpt = typer.Option(None, "--input", "-i", help=INPUT_HELP)
#: One model, as the commands that take one name it (``mbcost.zoo.resolve_source``).
ModelArg = typer.Argument(..., help="Model spec: v1, v2@0.75, vgg16, torchvision:NAME, timm:NAME, hf:ID_OR_PATH, "
                                    "package.module:factory ...")
InputDTypeOpt = typer.Option(None, "--input-dtype",
                             help="Element type of the inputs when it is not the model's --dtype: float32, float16, "
                                  "bfloat16, float64, int64, int32, int16, int8, uint8, bool (int64 token ids...).")
ExecuteOpt = typer.Option(Execute.auto, "--execute",
                          help="How the forward runs: meta (nothing allocated), real (CPU, random inputs, eval, no "
                               "grad), auto (meta; real when an op needs data, and the output says so).")
ModeOpt = typer.Option(Mode.inference, "--mode",
                       help="inference (an eval forward) or train (one training step: forward in train mode, "
                            "backward, optimizer update; adds backward MACs, optimizer ops and training memory).")
OptimizerOpt = typer.Option(OptimizerName.sgd, "--optimizer",
                            help="Optimizer of --mode train: sgd, momentum, adam, adamw (update ops and state per "
                                 "trainable parameter).")
BatchOpt = typer.Option(1, "--batch", "-b", help="Batch size.")
ClassesOpt = typer.Option(1000, "--classes", help="Classifier outputs of zoo models.")
FormatOpt = typer.Option(Format.table, "--format", "-f", help="Output format.")
OutputOpt = typer.Option(None, "--output", "-o", help="Write to FILE (atomically) instead of stdout.")


def input_value(values: list[str] | None) -> str | list[str] | None:
    """The ``--input`` values as ``mbcost.inputs.resolve_inputs`` takes them (``None`` when none: each model's own
    default input, 224 for an image model)."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def emit(fmt: Format, output: Path | None, *, table: Any = None, records: list[dict[str, Any]] | None = None,
         document: Any = None) -> None:
    """Render a result in the chosen format to stdout or, atomically, to ``output``.

    ``table`` is one ``Table`` or a list of them (shown one after another; CSV and JSON use
    ``records`` and ``document``).
    """
    from mbcost.render.table import to_csv, to_json

    tables = table if isinstance(table, (list, tuple)) else [table]
    if fmt is Format.json:
        text = to_json(document)
    elif fmt is Format.csv:
        text = to_csv(records or [])
    elif fmt is Format.markdown:
        text = "\n".join(t.to_markdown() for t in tables)
    elif output is not None:
        text = "\n".join(t.to_text() for t in tables)
    else:
        show(tables)
        return
    if output is None:
        sys.stdout.write(text)
    else:  # through a temporary file and a rename: never half a file
        from mbcost.io import write_text_atomic

        check_writable(output)
        write_text_atomic(output, text)


def show(tables: list[Any], pipe_width: int = 160) -> None:
    """Print tables on the terminal, or ``pipe_width`` wide to a pipe (which has no width to respect: numbers
    are not folded)."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=pipe_width)
    for t in tables:
        console.print(t.to_rich())


def check_writable(output: Path | None) -> None:
    """Fail early (exit 2) when ``output`` cannot be written, before any work is done."""
    from mbcost.io import check_target

    check_target(output, "--output")


def timer(ctx: typer.Context) -> MeasureFn | None:
    """What the measuring commands time with: the app's context object when it was started with a
    function (``CliRunner().invoke(app, args, obj=fake_measure)``: tests run the commands on a fake
    timer), else ``None``, which the library reads as ``mbcost.bench.timer.measure``."""
    return ctx.obj if callable(ctx.obj) else None
