"""HTML tables for notebooks: what Jupyter shows for a result (``_repr_html_``).

Each result renders as the table its command prints (the same rows, numbers and units: ``mbcost compare``'s
for a ``ModelCost`` and a ``Comparison``, ``mbcost conv``'s for a ``ConvComparison``, ``mbcost bench``'s,
``sweep``'s and ``profile``'s for the bench records, ``mbcost reconcile``'s for a ``Reconciliation``), with
the conventions as the caption (``Table.to_html``). Importing this module registers the makers with
``mbcost.display``, which the results' ``_repr_html_`` ask: the results sit below render and may not
import it (``tests/test_layers.py``).
"""

from __future__ import annotations

from mbcost import display
from mbcost import units as fmt
from mbcost.bench.records import ConvRecord, LayerRecord, ModelRecord, PeakRecord
from mbcost.comparison import Comparison
from mbcost.cost.conv import ConvComparison
from mbcost.cost.result import ModelCost
from mbcost.counters.reconciliation import Reconciliation
from mbcost.render.bench import ROOFLINE, bench_table, env_line, spread, sweep_table
from mbcost.render.comparison import comparison_tables
from mbcost.render.costs import compare_table, conv_table
from mbcost.render.reconcile import reconciliation_table
from mbcost.render.table import Table
from mbcost.units import ms, number, share

__all__ = ["html", "layer_record_table", "peak_record_table"]


def layer_record_table(r: LayerRecord) -> Table:
    """One layer of ``mbcost profile``: the columns of its per-layer table, for this layer alone."""
    columns = ["layer", "category", "time", "IQR (runs)", "time share", "MAC share", "intensity", "GFLOP/s",
               "bound GFLOP/s", "of bound"]
    row = [r.layer, r.category, ms(r.median_ms), spread(r), share(r.time_share), share(r.mac_share),
           number(r.arithmetic_intensity, 2), number(r.achieved_gflops, 2), number(r.roofline_bound_gflops, 1),
           share(r.bound_fraction)]
    notes = ["time = the module's own time (forward hooks on every module; the modules it called excluded), median "
             "of the instrumented passes; IQR over the same passes",
             "intensity = (FLOPs + elementwise ops) / bytes moved (input + weights + output), FLOP/byte; GFLOP/s "
             "counts the same work", ROOFLINE, env_line(r)]
    return Table(title=f"mbcost profile: {r.model}, layer {r.layer} ({r.module_type}), batch {r.batch}, {r.dtype}",
                 columns=columns, rows=[row], notes=notes)


def peak_record_table(r: PeakRecord) -> Table:
    """The peaks of ``mbcost roofline`` from their record."""
    row = [r.device_name, r.dtype, str(r.threads), number(r.peak_gflops), f"{ms(r.median_ms)} ({r.runs})",
           number(r.peak_gbps), ms(r.copy_median_ms), number(r.peak_gflops / r.peak_gbps, 2) if r.peak_gbps else "-"]
    notes = ["peak compute = 2 n^3 / median time of an n x n matmul in the dtype",
             "peak bandwidth = (bytes read + bytes written) / median time of a large tensor copy; GB = 10^9 bytes",
             "ridge point = peak compute / peak bandwidth: layers below this intensity are memory-bound",
             f"matmul n = {r.matmul_n}, copy {fmt.nbytes(r.copy_bytes)} moved", env_line(r)]
    return Table(title="mbcost roofline: measured attainable peaks",
                 columns=["device", "dtype", "threads", "GFLOP/s", "matmul (runs)", "GB/s", "copy", "ridge FLOP/B"],
                 rows=[row], notes=notes)


def html(obj: object) -> str | None:
    """The HTML table of a result (what its ``_repr_html_`` returns), ``None`` for an unknown object."""
    return display.html(obj)


display.register_html(ModelCost, lambda c: compare_table([c]).to_html())
display.register_html(ConvComparison, lambda c: conv_table(c).to_html())
display.register_html(Comparison, lambda c: "".join(t.to_html() for t in comparison_tables(c)))
display.register_html(ModelRecord, lambda r: bench_table([r], []).to_html())
display.register_html(ConvRecord, lambda r: sweep_table([r]).to_html())
display.register_html(LayerRecord, lambda r: layer_record_table(r).to_html())
display.register_html(PeakRecord, lambda r: peak_record_table(r).to_html())
display.register_html(Reconciliation, lambda r: reconciliation_table(r).to_html())
