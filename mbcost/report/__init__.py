"""Interactive plotly figures and self-contained HTML reports.

``data`` gathers results (analytic costs, the conv and width x resolution grids, measurement
records from ``mbcost bench --save`` JSON Lines) into a ``ReportData``; ``figures`` turns them
into plotly Figures (one function per figure, usable on their own in Jupyter); ``html`` assembles
one page with plotly.js embedded, so it opens without a network.

Example::

    from mbcost.report import build_report, gather, report_figures
    data = gather("v1,v2,vgg16", 224)
    figs = report_figures(data)
    figs["categories"]              # a plotly Figure: displays inline in Jupyter
    build_report("v1,v2,vgg16", 224, out="reports/mobilenets.html")

Imports are lazy: importing ``mbcost.report`` does not import plotly or torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mbcost.report.data import ReportData, gather, load_records  # noqa: F401
    from mbcost.report.figures import report_figures  # noqa: F401
    from mbcost.report.html import render_html, write_report  # noqa: F401

DEFAULT_OUT = Path("reports") / "mbcost-report.html"

_LAZY = {
    "ReportData": ("mbcost.report.data", "ReportData"),
    "gather": ("mbcost.report.data", "gather"),
    "load_records": ("mbcost.report.data", "load_records"),
    "report_figures": ("mbcost.report.figures", "report_figures"),
    "render_html": ("mbcost.report.html", "render_html"),
    "write_report": ("mbcost.report.html", "write_report"),
}

__all__ = ["DEFAULT_OUT", "build_report", *_LAZY]


def build_report(
    models: str | Sequence[str] = "v1,v2,vgg16",
    input_size: int | str | tuple[int, int] = 224,
    *,
    from_files: Sequence[str | Path] = (),
    records: Sequence[dict[str, Any]] = (),
    out: str | Path = DEFAULT_OUT,
    **gather_options: Any,
) -> Path:
    """Gather, draw and write a report in one call; returns the path written.

    Args:
        models: comma-separated specs or a list (``"v1,v2,vgg16"``).
        input_size: ``224`` or ``"224x160"``.
        from_files: JSON Lines files from ``mbcost bench --save`` to merge.
        records: measurement records already in memory (the same contract).
        out: the HTML file to write (its directory is created).
        gather_options: passed to ``mbcost.report.data.gather`` (batch, widths, ...).
    """
    from mbcost.report.data import gather, load_records
    from mbcost.report.html import ensure_writable, write_report

    ensure_writable(out)
    loaded = load_records(from_files) + list(records)
    data = gather(models, input_size, records=loaded, sources=[str(p) for p in from_files], **gather_options)
    return write_report(data, out)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'mbcost.report' has no attribute {name!r}")
