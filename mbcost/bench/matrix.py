"""Runtimes side by side: each model's median on each runtime, its speed-up against eager PyTorch, and the
measured speed-ups between the models next to their MAC ratios, runtime by runtime.

What ``mbcost compare --runtime`` shows under its table, and what the report's runtime table and figure draw.
Arithmetic on measured ``ModelRecord`` s only (nothing is timed here). Records are grouped by what they were
measured under apart from the runtime (a ``Setting``: device, CPU, platform, threads, batch, dtype, layout,
mode); within a setting every (runtime, precision) is one ``RuntimeRow``, and the row's baseline is eager
PyTorch at the setting's float dtype (``eager float32`` unless ``--dtype`` said otherwise): the model as
trained, which every output check compares with too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from mbcost.bench.model_bench import Speedup
from mbcost.bench.records import ModelRecord

__all__ = ["BASELINE_RUNTIME", "RuntimeRow", "Setting", "runtime_rows"]

#: What every row's speed-up is measured against (at the setting's float dtype).
BASELINE_RUNTIME = "eager"


@dataclass(frozen=True)
class Setting:
    """What the records of one group share apart from the runtime and the precision."""

    device: str
    device_name: str
    dtype: str
    batch: int
    threads: int
    channels_last: bool
    mode: str
    cpu: str
    platform: str

    @classmethod
    def of(cls, r: ModelRecord) -> Setting:
        return cls(r.device, r.device_name, r.dtype, r.batch, r.threads, r.channels_last, r.mode, r.env.cpu,
                   r.env.platform)


@dataclass(frozen=True)
class RuntimeRow:
    """One runtime at one precision under one setting: each model's record, the eager baseline's, and the
    speed-ups between the models measured here.

    ``records`` and ``baseline`` map model labels to records, in the models' order; ``speedups`` holds each
    pair of models once, the one with fewer MACs as ``model`` (``measured`` = the other's median / its median,
    ``macs_ratio`` = the other's MACs / its MACs: both above 1 when the cheaper model is also the faster one).
    """

    setting: Setting
    runtime: str
    precision: str
    records: dict[str, ModelRecord]
    baseline: dict[str, ModelRecord]
    speedups: tuple[Speedup, ...] = ()

    @property
    def is_baseline(self) -> bool:
        """This row is the baseline itself (eager at the setting's float dtype)."""
        return self.runtime == BASELINE_RUNTIME and self.precision == self.setting.dtype

    def vs_eager(self, model: str) -> float | None:
        """How many times faster ``model`` ran here than on the baseline (its median / this median); ``None``
        when either was not measured."""
        r, base = self.records.get(model), self.baseline.get(model)
        if r is None or base is None or r.median_ms <= 0:
            return None
        return base.median_ms / r.median_ms

    @staticmethod
    def columns(rows: Sequence[RuntimeRow]) -> tuple[list[str], list[tuple[str, str]]]:
        """The columns of a table of ``rows``: every model, and every pair of models with a speed-up, in order of
        first appearance."""
        return (list(dict.fromkeys(m for row in rows for m in row.records)),
                list(dict.fromkeys((s.model, s.other) for row in rows for s in row.speedups)))

    def speedup(self, pair: tuple[str, str]) -> Speedup | None:
        """The speed-up of the pair of models ``(model, other)`` measured here, if any."""
        return next((s for s in self.speedups if (s.model, s.other) == pair), None)

    @property
    def failed_checks(self) -> list[str]:
        """The models whose output check failed on this runtime."""
        return [m for m, r in self.records.items() if r.output_check is not None and not r.output_check.passed]


def _pairs(records: dict[str, ModelRecord]) -> tuple[Speedup, ...]:
    """Each pair of models measured on the same input once, the one with fewer MACs first."""
    return tuple(Speedup.between(a, b) if a.step_macs <= b.step_macs else Speedup.between(b, a)
                 for a, b in combinations(records.values(), 2) if a.input == b.input)


def runtime_rows(records: Iterable[ModelRecord], models: Sequence[str] | None = None) -> list[RuntimeRow]:
    """Group model records into runtime rows (a later record of the same model, setting, runtime and precision
    replaces an earlier one).

    Args:
        records: measured model records (other kinds are ignored).
        models: the model labels to show, in order (default: every model, in order of first appearance).

    Returns:
        The rows, setting by setting (in order of first appearance), each setting's runtimes in the order of
        ``mbcost.bench.runtimes.RUNTIMES``, float before int8.

    Example:
        >>> rows = runtime_rows(records)                               # doctest: +SKIP
        >>> {(r.runtime, r.precision): r.vs_eager("v2") for r in rows}
        {('eager', 'float32'): 1.0, ('onnxruntime', 'float32'): 2.4}
    """
    from mbcost.bench.runtimes import runtime_order

    groups: dict[Setting, dict[tuple[str, str], dict[str, ModelRecord]]] = {}
    order: list[str] = list(models or [])
    for r in records:
        if not isinstance(r, ModelRecord) or (models is not None and r.model not in models):
            continue
        if r.model not in order:
            order.append(r.model)
        key = (r.runtime or BASELINE_RUNTIME, r.precision or r.dtype)
        groups.setdefault(Setting.of(r), {}).setdefault(key, {})[r.model] = r
    rows = []
    for setting, by_runtime in groups.items():
        baseline = by_runtime.get((BASELINE_RUNTIME, setting.dtype), {})
        base = {m: baseline[m] for m in order if m in baseline}
        for (runtime, precision) in sorted(by_runtime, key=lambda k: runtime_order(*k)):
            mine = {m: by_runtime[(runtime, precision)][m] for m in order if m in by_runtime[(runtime, precision)]}
            rows.append(RuntimeRow(setting, runtime, precision, mine, base, _pairs(mine)))
    return rows
