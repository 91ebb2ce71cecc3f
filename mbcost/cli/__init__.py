"""The ``mbcost`` command line: a thin typer layer over the library."""

from __future__ import annotations

from mbcost.cli.app import app

# Each module registers its commands on ``app``; --help lists them in this order.
# isort: off
from mbcost.cli import costs  # noqa: F401
from mbcost.cli import bench  # noqa: F401
from mbcost.cli import predict  # noqa: F401
from mbcost.cli import report  # noqa: F401
from mbcost.cli import gate  # noqa: F401

__all__ = ["app", "main"]
# isort: on


def main() -> None:
    """Console-script entry point."""
    import os
    import sys

    import typer

    # Like ``python -m``, let ``package.module:factory`` specs find modules in the current directory.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    typer.main.get_command(app)()
