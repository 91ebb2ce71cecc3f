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
from mbcost.bench.records import ConvRecord, LayerRecord, ModelRecord, PeakRecord
from mbcost.comparison import Comparison
from mbcost.cost.conv import ConvComparison
from mbcost.cost.result import ModelCost
from mbcost.counters.reconciliation import Reconciliation
from mbcost.render.bench import bench_table, layer_record_table, peak_record_table, sweep_table
from mbcost.render.comparison import comparison_tables
from mbcost.render.costs import compare_table, conv_table
from mbcost.render.reconcile import reconciliation_table

__all__ = ["html", "layer_record_table", "peak_record_table"]


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
