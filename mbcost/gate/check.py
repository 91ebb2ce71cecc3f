"""Running the gate: measure the configured models, compare with the baseline, decide.

Parameter counts must match exactly; MACs may differ by a relative tolerance (per layer and
in total). The result holds raw numbers only; ``mbcost.render.gate`` turns it into tables.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from mbcost.errors import BaselineError, MbcostError, SpecError
from mbcost.gate.baseline import (
    Baseline,
    Entry,
    EntryKey,
    LayerCount,
    check_specs,
    dumps,
    make_baseline,
    measure,
    read_baseline,
)
from mbcost.gate.config import GateConfig, Size

__all__ = [
    "EXIT_DRIFT", "EXIT_PASS", "DiffRow", "EntryDiff", "GateResult", "UpdateResult", "compare", "compare_entry",
    "measure_all", "plan", "run_gate", "update_baseline",
]

Change = Literal["changed", "added", "removed"]
Status = Literal["ok", "drift", "added", "removed"]

EXIT_PASS = 0
EXIT_DRIFT = 1
DEFAULT_INPUT: Size = (224, 224)


def _json_input(size: Size) -> list[int] | str:
    """An input as the baseline file writes it: a list of ints, or the ``--input`` text."""
    return size if isinstance(size, str) else list(size)


def _delta(before: int | None, after: int | None) -> int:
    return (after or 0) - (before or 0)


def _percent(before: int | None, after: int | None) -> float | None:
    """Change in percent of ``before``; ``None`` when there was nothing before."""
    if not before:
        return None if after else 0.0
    return 100.0 * _delta(before, after) / before


class _BeforeAfter:
    """Deltas and percentages of ``params_before/after`` and ``macs_before/after``."""

    model: str
    input: Size
    batch: int
    params_before: int | None
    params_after: int | None
    macs_before: int | None
    macs_after: int | None

    @property
    def params_delta(self) -> int:
        return _delta(self.params_before, self.params_after)

    @property
    def params_percent(self) -> float | None:
        return _percent(self.params_before, self.params_after)

    @property
    def macs_delta(self) -> int:
        return _delta(self.macs_before, self.macs_after)

    @property
    def macs_percent(self) -> float | None:
        return _percent(self.macs_before, self.macs_after)

    def _head(self, **first: Any) -> dict[str, Any]:
        """``to_dict``'s keys: ``first``, then the counts before and after, their deltas and percentages."""
        return {"model": self.model, "input": _json_input(self.input), "batch": self.batch, **first,
                "params_before": self.params_before, "params_after": self.params_after,
                "params_delta": self.params_delta, "params_percent": self.params_percent,
                "macs_before": self.macs_before, "macs_after": self.macs_after, "macs_delta": self.macs_delta,
                "macs_percent": self.macs_percent}


@dataclass(frozen=True)
class DiffRow(_BeforeAfter):
    """One layer that differs between the baseline (before) and the model now (after).

    ``change`` is ``"changed"`` (both sides have it), ``"added"`` (before is ``None``) or
    ``"removed"`` (after is ``None``).
    """

    model: str
    input: Size
    batch: int
    layer: str
    change: Change
    params_before: int | None
    params_after: int | None
    macs_before: int | None
    macs_after: int | None

    def to_dict(self) -> dict[str, Any]:
        return self._head(layer=self.layer, change=self.change)


@dataclass(frozen=True)
class EntryDiff(_BeforeAfter):
    """One model x input x batch: its totals before and after, its status and its layer rows.

    ``status``: ``"ok"`` (matches), ``"drift"`` (layers or totals differ), ``"added"`` (gated but
    not in the baseline), ``"removed"`` (in the baseline but no longer gated).
    """

    model: str
    input: Size
    batch: int
    status: Status
    params_before: int | None
    params_after: int | None
    macs_before: int | None
    macs_after: int | None
    rows: tuple[DiffRow, ...] = ()
    #: Estimated activation peaks before and after (inference, and a training step's), when both
    #: the baseline and the gate have them; ``memory_drift`` when one moved beyond the tolerance.
    memory_before: int | None = None
    memory_after: int | None = None
    train_memory_before: int | None = None
    train_memory_after: int | None = None
    memory_drift: bool = False

    @property
    def key(self) -> EntryKey:
        return (self.model, self.input, self.batch)

    @property
    def drifted(self) -> bool:
        return self.status != "ok"

    def to_dict(self) -> dict[str, Any]:
        return {**self._head(status=self.status), "peak_activation_bytes_before": self.memory_before,
                "peak_activation_bytes_after": self.memory_after,
                "train_peak_activation_bytes_before": self.train_memory_before,
                "train_peak_activation_bytes_after": self.train_memory_after, "memory_drift": self.memory_drift,
                "rows": [r.to_dict() for r in self.rows]}


@dataclass(frozen=True)
class GateResult:
    """The verdict: every checked entry, the layer rows that drifted, and the exit code."""

    baseline: Path
    macs_tolerance: float
    entries: tuple[EntryDiff, ...]
    memory_tolerance: float = 0.0

    @property
    def rows(self) -> tuple[DiffRow, ...]:
        """Every drifted layer, entry by entry, in forward-pass order."""
        return tuple(r for e in self.entries for r in e.rows)

    @property
    def drifted(self) -> tuple[EntryDiff, ...]:
        return tuple(e for e in self.entries if e.drifted)

    @property
    def passed(self) -> bool:
        return not self.drifted

    @property
    def exit_code(self) -> int:
        """0 when everything matches the baseline, 1 on drift (usage problems raise instead: 2)."""
        return EXIT_PASS if self.passed else EXIT_DRIFT

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "exit_code": self.exit_code, "baseline": str(self.baseline),
                "macs_tolerance": self.macs_tolerance, "memory_tolerance": self.memory_tolerance,
                "entries": [e.to_dict() for e in self.entries]}


@dataclass(frozen=True)
class UpdateResult:
    """What ``update_baseline`` did: the changes it wrote (exact, no tolerance) and how."""

    path: Path
    baseline: Baseline
    changes: GateResult
    created: bool
    written: bool
    replaced_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": str(self.path), "created": self.created, "written": self.written,
                "replaced_reason": self.replaced_reason, "changes": self.changes.to_dict()}


def _macs_match(before: int, after: int, tolerance: float) -> bool:
    return abs(after - before) <= tolerance * before


def _memory_moved(before: int | None, after: int | None, tolerance: float) -> bool:
    return before is not None and after is not None and abs(after - before) > tolerance * before


def compare_entry(before: Entry, after: Entry, macs_tolerance: float = 0.0, memory_tolerance: float = 0.0) -> EntryDiff:
    """Compare one entry layer by layer. Layer rows keep forward-pass order; a removed layer
    sits where it used to be."""
    model, size, batch = after.key
    rows: list[DiffRow] = []
    old, new = list(before.layers), list(after.layers)

    def row(name: str, change: Change, b: LayerCount | None, a: LayerCount | None) -> DiffRow:
        return DiffRow(model, size, batch, name, change, b.params if b else None, a.params if a else None,
                       b.macs if b else None, a.macs if a else None)

    def same(b: LayerCount | Entry, a: LayerCount | Entry) -> bool:
        return b.params == a.params and _macs_match(b.macs, a.macs, macs_tolerance)

    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows += [row(name, "changed", before.layers[name], after.layers[name]) for name in old[i1:i2]
                     if not same(before.layers[name], after.layers[name])]
            continue
        # a layer that moved is compared where it now stands
        rows += [row(name, "removed", before.layers[name], None) for name in old[i1:i2] if name not in after.layers]
        for name in new[j1:j2]:
            b, a = before.layers.get(name), after.layers[name]
            if b is None or not same(b, a):
                rows.append(row(name, "added" if b is None else "changed", b, a))
    totals_match = same(before, after)
    memory_drift = (_memory_moved(before.peak_activation_bytes, after.peak_activation_bytes, memory_tolerance)
                    or _memory_moved(before.train_peak_activation_bytes, after.train_peak_activation_bytes,
                                     memory_tolerance))
    status: Status = "ok" if totals_match and not rows and not memory_drift else "drift"
    return EntryDiff(model, size, batch, status, before.params, after.params, before.macs, after.macs, tuple(rows),
                     before.peak_activation_bytes, after.peak_activation_bytes, before.train_peak_activation_bytes,
                     after.train_peak_activation_bytes, memory_drift)


def compare(before: Iterable[Entry], after: Iterable[Entry], *, macs_tolerance: float = 0.0,
            memory_tolerance: float = 0.0, baseline_path: Path | str = "") -> GateResult:
    """Compare baseline entries with fresh ones.

    Args:
        before: the baseline's entries.
        after: the entries measured now (their order is the report's order).
        macs_tolerance: relative MACs tolerance; parameter counts always match exactly.
        memory_tolerance: relative tolerance on the estimated activation peaks (checked where both sides
            hold them).
        baseline_path: recorded in the result for the report.

    Returns:
        A ``GateResult``: entries in ``after``'s order, then entries only the baseline has.
    """
    old = {e.key: e for e in before}
    entries: list[EntryDiff] = []
    seen: set[EntryKey] = set()
    for a in after:
        seen.add(a.key)
        b = old.get(a.key)
        if b is None:
            entries.append(EntryDiff(a.spec, a.input, a.batch, "added", None, a.params, None, a.macs))
        else:
            entries.append(compare_entry(b, a, macs_tolerance, memory_tolerance))
    for key, b in old.items():
        if key not in seen:
            entries.append(EntryDiff(b.spec, b.input, b.batch, "removed", b.params, None, b.macs, None))
    return GateResult(baseline=Path(baseline_path), macs_tolerance=macs_tolerance, entries=tuple(entries),
                      memory_tolerance=memory_tolerance)


def plan(config: GateConfig, baseline: Baseline | None) -> list[EntryKey]:
    """The entries to measure: the configured models x inputs, completed from the baseline.

    With neither models nor inputs configured, exactly the baseline's entries; with one of
    them, the other comes from the baseline (inputs default to 224x224).

    Raises:
        SpecError: nothing to gate (no models configured and no baseline entries).
        UnknownModelError: a configured model that does not exist.
    """
    from mbcost.zoo.spec import resolve_source

    known = list(baseline.entries) if baseline else []
    if not config.models and not config.inputs and known:
        return [e.key for e in known]
    specs = [resolve_source(m).label for m in config.models] or list(dict.fromkeys(e.spec for e in known))
    if not specs:
        raise SpecError("no models to gate: list them under [tool.mbcost.gate] models in pyproject.toml "
                        "or pass --models (e.g. --models v1,v2)")
    sizes = list(config.inputs) or list(dict.fromkeys(e.input for e in known)) or [DEFAULT_INPUT]
    return list(dict.fromkeys((s, size, config.batch) for s in specs for size in sizes))


def measure_all(keys: Iterable[EntryKey], mode: str = "inference", optimizer: str = "sgd") -> list[Entry]:
    """Measure every planned entry (analytic, no tensor is allocated)."""
    return [measure(spec, size, batch, mode, optimizer) for spec, size, batch in keys]


def run_gate(config: GateConfig) -> GateResult:
    """Check the configured models against the baseline.

    Returns:
        A ``GateResult``; ``.exit_code`` is 0 when everything matches and 1 on drift.

    Raises:
        BaselineError: missing, empty, corrupt, malformed or other-version baseline.
        UnknownModelError: the baseline or the config names a model that cannot be built.
        SpecError: a bad configuration.
    """
    baseline = check_specs(read_baseline(config.baseline), config.baseline)
    current = measure_all(plan(config, baseline), config.mode, config.optimizer)
    return compare(baseline.entries, current, macs_tolerance=config.macs_tolerance,
                   memory_tolerance=config.memory_tolerance, baseline_path=config.baseline)


def update_baseline(config: GateConfig) -> UpdateResult:
    """Measure the configured models and (re)write the baseline, reporting exactly what changed.

    A missing baseline is created; an unreadable one (corrupt, other schema) is replaced and
    the reason reported; entries the config no longer lists are dropped (reported as removed).
    The file is only rewritten when its content changes, atomically.

    Raises:
        UnknownModelError: a configured model (or, with no models configured, a baseline
            model) that cannot be built.
        SpecError: nothing to gate, bad configuration, or the file cannot be written.
    """
    from mbcost.io import write_text_atomic

    path = config.baseline
    old: Baseline | None = None
    replaced_reason: str | None = None
    try:
        old = read_baseline(path)
    except BaselineError as exc:
        if path.exists():
            replaced_reason = getattr(exc, "reason", str(exc))
    if old is not None:
        old = check_specs(old, path) if not config.models else _canonical_where_possible(old)
    new = make_baseline(measure_all(plan(config, old), config.mode, config.optimizer))
    changes = compare(old.entries if old else (), new.entries, baseline_path=path)
    text = dumps(new)
    written = old is None or replaced_reason is not None or not _same_file(path, text)
    if written:
        write_text_atomic(path, text)
    return UpdateResult(path=path, baseline=new, changes=changes, created=old is None and replaced_reason is None,
                        written=written, replaced_reason=replaced_reason)


def _canonical_where_possible(baseline: Baseline) -> Baseline:
    """Canonical specs for the entries that still resolve; others keep their spelling (they
    will be reported as removed)."""
    from mbcost.zoo.spec import resolve_source

    entries = []
    for e in baseline.entries:
        try:
            entries.append(replace(e, spec=resolve_source(e.spec).label))
        except MbcostError:
            entries.append(e)
    unique = {e.key: e for e in entries}
    return replace(baseline, entries=tuple(unique.values()))


def _same_file(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False
