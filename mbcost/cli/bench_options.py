"""The ``--bench`` options that ``compare`` and ``conv`` borrow from the measurement commands.

Kept apart from ``mbcost.cli.bench`` so that importing them does not register the measurement
commands ahead of ``compare`` in ``mbcost --help``.
"""

from __future__ import annotations

import typer

BenchFlagOpt = typer.Option(True, "--bench/--no-bench",
                            help="Also measure latency: CPU (and CUDA when available) at the given batch, a short "
                                 "time budget per model (mbcost bench measures longer).")
ConvBenchOpt = typer.Option(False, "--bench/--no-bench",
                            help="Also time both on CPU (float32) and show the measured speed-up next to the MAC "
                                 "speed-up.")
