"""Interactive plotly figures and self-contained HTML reports.

``data.gather`` collects results into a ``ReportData``, ``figures`` draws it (one function per figure,
usable on its own in Jupyter) and ``html`` writes one page with plotly.js embedded; ``build_report`` does
it all in one call (``mbcost report``). Imports are lazy: importing ``mbcost.report`` imports neither
plotly nor torch.

Example::

    from mbcost.report import build_report, gather, report_figures
    figs = report_figures(gather("v1,v2,vgg16", 224))
    figs["categories"]              # a plotly Figure: displays inline in Jupyter
    build_report("v1,v2,vgg16", 224, from_files=["results.jsonl"], bench=False, out="reports/mobilenets.html").path
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mbcost.lazy import lazy_getattr
from mbcost.weights import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    from mbcost.bench.records import Record
    from mbcost.report.data import ReportData, gather  # noqa: F401
    from mbcost.report.figures import report_figures  # noqa: F401
    from mbcost.report.html import render_html, write_report  # noqa: F401
    from mbcost.report.measure import Progress
    from mbcost.zoo.spec import ModelSource

DEFAULT_OUT = Path("reports") / "mbcost-report.html"

#: What measuring now adds to the page's list of measurement sources.
_MEASURED_NOW = "--bench (measured now)"

_LAZY = {
    "ReportData": "mbcost.report.data",
    "gather": "mbcost.report.data",
    "report_figures": "mbcost.report.figures",
    "render_html": "mbcost.report.html",
    "write_report": "mbcost.report.html",
}

__all__ = ["DEFAULT_OUT", "WrittenReport", "build_report", *_LAZY]


@dataclass(frozen=True)
class WrittenReport:
    """A page ``build_report`` wrote: where, and the data it shows; ``failures``: measurements made now that a
    runtime's toolchain could not make (one line each; also on the page)."""

    path: Path
    data: ReportData
    failures: tuple[str, ...] = ()


def build_report(
    models: str | Sequence[str | ModelSource] = "v1,v2,vgg16",
    inputs: Any = None,
    batch: int = 1,
    *,
    num_classes: int = 1000,
    input_dtype: str | None = None,
    from_files: Sequence[str | Path] = (),
    records: Iterable[Record | Mapping[str, Any]] = (),
    bench: bool = True,
    runtime: str | Sequence[str] | None = None,
    checkpoints: Mapping[str, str | Path] | Iterable[tuple[str, str | Path]] = (),
    threshold: float = DEFAULT_THRESHOLD,
    out: str | Path = DEFAULT_OUT,
    command: str | None = None,
    progress: Progress | None = None,
    input_size: Any = None,
    profile: str | Path | None = None,
    **gather_options: Any,
) -> WrittenReport:
    """Gather, draw and write a report in one call (what ``mbcost report`` runs).

    Everything that can be refused is checked before anything is measured: ``out`` (its directory
    is created), the models, the input and the results files.

    Args:
        models, inputs, batch, num_classes, input_dtype, input_size, records: as for ``gather`` (``records``:
            the ones already in memory).
        from_files: JSON Lines files from ``mbcost bench/profile/sweep/roofline --save`` to merge;
            a line that breaks the record contract is left out, with its reason on the page.
        bench: measure now, on this machine (``mbcost.report.measure.measure_now``: CPU, and CUDA
            when available; float32, short budgets). On by default, as ``mbcost report`` (``--no-bench``).
        runtime: with ``bench``, also measure the models and the conv sweep on these runtimes
            (``"onnxruntime,openvino"`` or a sequence; ``mbcost.bench.runtimes``), next to eager PyTorch: the page
            gains a runtime table and figure, and the "8 to 9 times" claim the realised saving per runtime. (Runs
            saved by ``mbcost bench/sweep --runtime --save`` show the same with ``from_files``.)
        checkpoints: trained state_dicts for the dying-depthwise-kernels claim, by model spec
            (``{"v1": "v1.pt"}`` or ``[("v1", "v1.pt"), ...]``).
        threshold: with ``checkpoints``: a kernel is dead below ``threshold`` x its layer's median
            L1 norm (``mbcost.weights.DEFAULT_THRESHOLD``: 1e-3).
        out: the HTML file to write, atomically.
        command: the command line that made the page, shown in its footer.
        progress: told ``(done, total, what)`` before each step (reading checkpoints, measuring,
            analysing, drawing).
        profile: as for ``gather`` (the page says FORCED for a profile made for another setup, and how to make
            one when there is none); read before anything is measured.
        gather_options: passed to ``mbcost.report.data.gather`` (execute, mode, optimizer, widths, ...).

    Returns:
        A ``WrittenReport``: the path written and the ``ReportData`` it shows.

    Raises:
        MbcostError: bad input, one line (the CLI's exit 2): an unknown runtime, a runtime whose package is
            missing (before anything is measured), ``runtime`` without ``bench``, a corrupt ``profile``.
    """
    from mbcost.bench.store import load_records
    from mbcost.errors import SpecError
    from mbcost.inputs import renamed_inputs, resolve_inputs
    from mbcost.report.data import gather
    from mbcost.report.figures import report_figures
    from mbcost.report.html import prepare_out, write_report
    from mbcost.zoo.spec import resolve_sources

    def step(done: int, total: int, what: str) -> None:
        if progress is not None:
            progress(done, total, what)

    if not (isinstance(threshold, (int, float)) and 0 <= threshold < float("inf")):
        raise SpecError(f"--threshold must be a number >= 0 (got {threshold!r}); a kernel is dead below "
                        f"THRESHOLD x its layer's median L1 norm")
    out = prepare_out(out)
    runtimes = _runtimes(runtime, bench)
    specs = resolve_sources(models)
    value = renamed_inputs(inputs, input_size)
    if value is not None:  # refused now, before anything is measured
        resolved = resolve_inputs(value, batch=batch, dtype=input_dtype or "float32")
        value = resolved.image_size or resolved
    files = [Path(f) for f in from_files]
    loaded: list[Record | Mapping[str, Any]] = [*load_records(files, placeholders=True), *records]
    sources = [str(f) for f in files]
    if profile is not None:
        from mbcost.predict.profile import load_profile

        profile = load_profile(profile)  # a corrupt file: one line, before anything is measured
    pairs = list(checkpoints.items() if isinstance(checkpoints, Mapping) else checkpoints)
    health = {}
    if pairs:
        from mbcost.weights import checkpoint_health

        for n, (spec, path) in enumerate(pairs):
            step(n, len(pairs), f"reading {path}")
            h = checkpoint_health(path, spec, threshold=threshold,
                                  num_classes=num_classes)
            health[h.model] = h
    notes: list[str] = []
    if bench:
        from mbcost.report.measure import measure_now

        measured, notes = measure_now(specs, value, batch, num_classes=num_classes,
                                      progress=lambda done, total, what: step(done, total, f"measuring {what}"))
        loaded += measured
        sources.append(_MEASURED_NOW)
    failures: list[str] = []
    if runtimes:
        from mbcost.report.measure import measure_runtimes_now

        more, skipped, failed = measure_runtimes_now(
            specs, value, batch, runtimes, num_classes=num_classes,
            progress=lambda done, total, what: step(done, total, f"measuring {what}"))
        loaded += more
        failures = [f.message for f in failed]
        notes += [*skipped, *(f"not measured: {f}" for f in failures)]
    step(0, 2, "analysing the models, checking the claims")
    data = gather(specs, value, batch, num_classes=num_classes, input_dtype=input_dtype, records=loaded,
                  sources=sources, notes=notes, weights=health, profile=profile, **gather_options)
    step(1, 2, "drawing the figures")
    figures = report_figures(data)
    return WrittenReport(write_report(data, out, figures, command=command), data, tuple(failures))


def _runtimes(runtime: str | Sequence[str] | None, bench: bool) -> list[str]:
    """``runtime`` parsed and checked on the CPU (unknown, missing package, no float32 path: one line), before
    anything is measured."""
    if runtime is None:
        return []
    from mbcost.bench.devices import resolve_device
    from mbcost.bench.model_bench import BenchSettings
    from mbcost.bench.runtimes import parse_runtimes
    from mbcost.errors import SpecError

    names = parse_runtimes(runtime if isinstance(runtime, str) else list(runtime))
    if not bench:
        raise SpecError("--runtime measures now on each runtime; drop --no-bench (or pass runs saved by mbcost "
                        "bench --runtime --save with --from)")
    BenchSettings(resolve_device("cpu")).check_runtimes(names)
    return names

__getattr__ = lazy_getattr(__name__, _LAZY)
