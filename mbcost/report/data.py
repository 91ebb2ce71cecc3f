"""Everything a report shows, gathered once into a typed ``ReportData``.

Two sources feed a report: the analytic cost engine (the models at the report's input size,
the width x resolution grid of the width-multiplier models, and a grid of standard vs
depthwise + pointwise convolutions) and measurement records, the JSON Lines that
``mbcost bench --save`` writes (the contract: one JSON object per line with ``kind`` one of
``model``, ``layer``, ``conv``, ``peak``, plus the run's ``device``, ``dtype``, ``env`` and
``label``). Figures and the HTML page only read what is gathered here.

Example:
    >>> data = gather("v1,v2,vgg16", 224)
    >>> [m.label for m in data.models]
    ['v1', 'v2', 'vgg16']
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mbcost.bench.store import UNREADABLE  # a placeholder kind, re-exported for readers
from mbcost.claims.check import ClaimsData
from mbcost.cost.conv import ConvComparison, compare_conv
from mbcost.cost.result import ModelCost
from mbcost.errors import SpecError
from mbcost.zoo.registry import Reported
from mbcost.zoo.spec import ModelSpec, parse_models, parse_spec

if TYPE_CHECKING:
    from mbcost.weights import KernelHealth

__all__ = [
    "CONV_CHANNELS", "CONV_KERNELS", "PAPER_GRIDS", "ReportData", "Run", "category_times", "gather", "label_runs",
    "load_records", "read_jsonl",
]

log = logging.getLogger(__name__)

#: Width multipliers and square resolutions of the trade-off grid (the values the MobileNet
#: papers tabulate: V1 Tables 6-7 use 1.0/0.75/0.5/0.25 and 224/192/160/128, V2 adds 0.35,
#: 1.4 and 96).
WIDTHS: tuple[float, ...] = (0.25, 0.35, 0.5, 0.75, 1.0, 1.4)
RESOLUTIONS: tuple[int, ...] = (96, 128, 160, 192, 224)
#: Each paper's own grid, used by default: V1 (Howard et al. 2017, Tables 6-7) and its Conv twin,
#: V2 (Sandler et al. 2018, Table 6 / Figure 5); other width models get ``WIDTHS x RESOLUTIONS``.
PAPER_GRIDS: dict[str, tuple[tuple[float, ...], tuple[int, ...]]] = {
    "v1": ((0.25, 0.5, 0.75, 1.0), (128, 160, 192, 224)),
    "v1-conv": ((0.25, 0.5, 0.75, 1.0), (128, 160, 192, 224)),
    "v2": ((0.35, 0.5, 0.75, 1.0, 1.4), (96, 128, 160, 192, 224)),
}
#: The conv grid: M = N channels, K x K kernels, on a 14 x 14 map (the ratio does not depend on it).
CONV_CHANNELS: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024)
CONV_KERNELS: tuple[int, ...] = (3, 5, 7)
CONV_SIZE = 14

#: The papers report ImageNet top-1 at these settings; other settings get no quoted figure.
PAPER_INPUT = (224, 224)

#: Fields a record of each kind needs before a figure can use it.
REQUIRED: dict[str, tuple[str, ...]] = {
    "model": ("model", "median_ms", "macs"),
    "layer": ("model", "layer", "category", "median_ms", "arithmetic_intensity", "achieved_gflops"),
    "conv": ("cin", "cout", "k", "standard_ms", "separable_ms", "measured_speedup"),
    "peak": ("peak_gflops", "peak_gbps"),
}
NUMERIC = {"median_ms", "macs", "arithmetic_intensity", "achieved_gflops", "standard_ms", "separable_ms",
           "measured_speedup", "peak_gflops", "peak_gbps", "cin", "cout", "k"}

#: Environment fields that tell two runs apart (the timestamp does not: one run can be saved
#: by several ``bench`` invocations).
_IDENTITY = ("device", "device_name", "dtype", "threads", "channels_last", "compile")
_ENV_IDENTITY = ("cpu", "platform", "torch", "cuda", "cudnn", "mbcost")


@dataclass(frozen=True)
class Run:
    """One measured environment: every record with the same label and environment.

    ``label`` is unique within a report: when two different environments carry the same
    label, the fields that differ are appended to it.
    """

    label: str
    device: str
    device_name: str
    dtype: str
    env: dict[str, Any]
    sources: tuple[str, ...]
    counts: dict[str, int]

    @property
    def threads(self) -> Any:
        return self.env.get("threads")


@dataclass(frozen=True)
class ReportData:
    """What one report shows. Raw results only; figures and the page format them.

    Attributes:
        input: the report's input resolution (H, W).
        models: analytic costs of the requested models at ``input``.
        references: quoted paper figures by model label (only for zoo models at their paper
            setting: width 1.0, 224 x 224); quoted, never measured.
        scaling: analytic costs across ``WIDTHS`` x ``RESOLUTIONS`` of each width-multiplier model.
        conv_grid: standard vs depthwise + pointwise convolutions across channels and kernels.
        records: usable measurement records, each with ``run`` set to its run's label.
        runs: the measured environments, in order of first appearance.
        skipped: why some records were left out (one line each).
        sources: the JSON Lines files read, plus ``"--bench"`` when measured now.
        created: when the data was gathered (ISO 8601, UTC).
        claims: the papers' claims checked now, and the accuracy-vs-cost frontier
            (``mbcost.claims.check_claims``); ``None`` when not asked for.
    """

    input: tuple[int, int]
    batch: int
    models: tuple[ModelCost, ...]
    references: dict[str, Reported]
    scaling: tuple[ModelCost, ...]
    conv_grid: tuple[ConvComparison, ...]
    records: tuple[dict[str, Any], ...] = ()
    runs: tuple[Run, ...] = ()
    skipped: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    claims: ClaimsData | None = None

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == kind]

    @property
    def measured(self) -> bool:
        return bool(self.records)


# ---------------------------------------------------------------------------------------------
# Reading measurement records


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read one JSON Lines file of measurement records (``mbcost.bench.store.load_records``).

    A line that is not a JSON object becomes an ``UNREADABLE`` placeholder, which ``label_runs``
    counts and the page reports; the other records are kept.

    Raises:
        SpecError: the file is missing or unreadable.
    """
    return load_records([path])


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read and concatenate several JSON Lines files, in order, keeping placeholders for bad lines."""
    from mbcost.bench.store import load_records as load

    return load(list(paths), placeholders=True)


def _default_label(r: dict[str, Any]) -> str:
    return str(r.get("label") or f"{r.get('device_name') or r.get('device') or 'unknown device'} "
                                 f"{r.get('dtype') or ''}".strip())


def _identity(r: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    env = r.get("env") if isinstance(r.get("env"), dict) else {}
    items = [(k, json.dumps(r.get(k), sort_keys=True)) for k in _IDENTITY]
    items += [(f"env.{k}", json.dumps(env.get(k), sort_keys=True)) for k in _ENV_IDENTITY]
    return tuple(items)


def _dedupe_key(r: dict[str, Any]) -> tuple[Any, ...]:
    kind = r.get("kind")
    common = (r.get("run"), kind, json.dumps(r.get("input")), r.get("batch"))
    if kind == "model":
        return (*common, r.get("model"))
    if kind == "layer":
        return (*common, r.get("model"), r.get("layer"))
    if kind == "conv":
        return (*common, r.get("cin"), r.get("cout"), r.get("k"), json.dumps(r.get("size")), r.get("stride"))
    return common


def _usable(r: dict[str, Any]) -> str | None:
    """Why a record cannot be used, or None when it can."""
    kind = r.get("kind")
    if kind == UNREADABLE:
        return "line that is not a JSON object (a record cut short when a run was interrupted?)"
    if kind not in REQUIRED:
        return f"unknown kind {kind!r}"
    missing = [k for k in REQUIRED[kind] if r.get(k) is None]
    if missing:
        return f"{kind} record without {', '.join(missing)}"
    bad = [k for k in REQUIRED[kind] if k in NUMERIC and not _is_number(r.get(k))]
    if bad:
        return f"{kind} record with non-numeric {', '.join(bad)}"
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def label_runs(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Run], list[str]]:
    """Group records into runs, give each run a unique label, keep the usable records.

    Returns:
        ``(records, runs, skipped)``: copies of the usable records with ``run`` set (for a
        repeated measurement the last one wins), the runs in order of first appearance, and
        one line per reason records were left out.
    """
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[dict[str, Any]]] = {}
    reasons: dict[str, int] = {}
    for r in records:
        why = _usable(r)
        if why is not None:
            reasons[why] = reasons.get(why, 0) + 1
            continue
        groups.setdefault((_default_label(r), _identity(r)), []).append(r)

    by_label: dict[str, list[tuple[tuple[str, str], ...]]] = {}
    for label, ident in groups:
        by_label.setdefault(label, []).append(ident)
    names: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    for label, idents in by_label.items():
        if len(idents) == 1:
            names[(label, idents[0])] = label
            continue
        differing = [i for i in range(len(idents[0])) if len({ident[i][1] for ident in idents}) > 1]
        for n, ident in enumerate(idents, 1):
            detail = ", ".join(f"{ident[i][0]}={json.loads(ident[i][1])}" for i in differing) or f"#{n}"
            names[(label, ident)] = f"{label} ({detail})"

    kept: dict[tuple[Any, ...], dict[str, Any]] = {}
    runs: list[Run] = []
    for key, members in groups.items():
        name = names[key]
        counts: dict[str, int] = {}
        for r in members:
            rec = dict(r, run=name)
            kept.pop(_dedupe_key(rec), None)  # the last measurement of the same thing wins
            kept[_dedupe_key(rec)] = rec
            counts[r["kind"]] = counts.get(r["kind"], 0) + 1
        first = members[0]
        env = first.get("env") if isinstance(first.get("env"), dict) else {}
        sources = tuple(dict.fromkeys(str(r.get("_source", "")) for r in members if r.get("_source")))
        runs.append(Run(label=name, device=str(first.get("device", "")),
                        device_name=str(first.get("device_name", "")), dtype=str(first.get("dtype", "")),
                        env=dict(env, threads=first.get("threads", env.get("threads"))),
                        sources=sources, counts=counts))
    skipped = [f"{n} record{'s' if n > 1 else ''} left out: {why}" for why, n in reasons.items()]
    return list(kept.values()), runs, skipped


# ---------------------------------------------------------------------------------------------
# Gathering


def gather(
    models: str | Sequence[str | ModelSpec] = "v1,v2,vgg16",
    input_size: Any = 224,
    batch: int = 1,
    *,
    num_classes: int = 1000,
    dtype: str = "float32",
    input_dtype: str | None = None,
    execute: str = "auto",
    mode: str = "inference",
    optimizer: str = "sgd",
    records: Iterable[dict[str, Any]] = (),
    sources: Sequence[str] = (),
    notes: Sequence[str] = (),
    widths: Sequence[float] | None = None,
    resolutions: Sequence[int] | None = None,
    conv_channels: Sequence[int] = CONV_CHANNELS,
    conv_kernels: Sequence[int] = CONV_KERNELS,
    claims: bool = True,
    weights: Mapping[str, KernelHealth] | None = None,
) -> ReportData:
    """Analyse the models and the grids a report shows and attach measurement records.

    Args:
        models: ``"v1,v2,vgg16"`` or a list of specs.
        input_size: the report's input: ``224``, ``"HxW"`` or any form ``mbcost.analyze`` takes
            (a full shape, several inputs...).
        batch: batch size of the analytic counts.
        num_classes, dtype, input_dtype, execute, mode, optimizer: as for ``mbcost.analyze``.
        records: measurement records (dicts of the JSON Lines contract), e.g. ``load_records(paths)``.
        sources: where the records came from, shown on the page.
        notes: lines about measurements that were not made (shown with the runs).
        widths, resolutions: the width x resolution grid of the width-multiplier models (default: each
            paper's own grid, ``PAPER_GRIDS``).
        conv_channels, conv_kernels: the standard vs separable convolution grid (M = N).
        claims: check the MobileNet papers' claims now (``mbcost.claims.check_claims``), with the
            measured conv sweep among ``records`` and the kernel health of ``weights``.
        weights: kernel health of trained checkpoints by model spec (``mbcost.weights.checkpoint_health``).

    Returns:
        A ``ReportData``.
    """
    from mbcost.cost.analyze import analyze

    specs = parse_models(models) if isinstance(models, str) else [
        parse_spec(s) if isinstance(s, str) else s for s in models]
    if not specs:
        raise SpecError("no models given; e.g. --models v1,v2,vgg16")
    costs = [analyze(s, input_size, batch, num_classes=num_classes, dtype=dtype, input_dtype=input_dtype,
                     execute=execute, mode=mode, optimizer=optimizer) for s in specs]
    size = costs[0].input
    labels = [c.label for c in costs]
    if len(set(labels)) != len(labels):
        raise SpecError(f"a model is listed twice: {', '.join(labels)}")

    references: dict[str, Reported] = {}
    for spec, cost in zip(specs, costs, strict=True):
        entry = spec.entry
        if entry is not None and entry.reported is not None and entry.reported.top1 is not None \
                and (spec.width in (None, 1.0)) and size == PAPER_INPUT:
            references[cost.label] = entry.reported

    scaling: list[ModelCost] = []
    seen: set[str] = set()
    for spec in specs:
        entry = spec.entry
        if entry is None or not entry.supports_width or entry.name in seen:
            continue
        seen.add(entry.name)
        paper_widths, paper_resolutions = PAPER_GRIDS.get(entry.name, (WIDTHS, RESOLUTIONS))
        for w in widths or paper_widths:
            for r in resolutions or paper_resolutions:
                if r >= entry.total_stride:
                    scaling.append(analyze(ModelSpec(entry.name, float(w)), (r, r), batch,
                                           num_classes=num_classes, dtype=dtype))

    grid = tuple(compare_conv(n, n, k, CONV_SIZE) for k in conv_kernels for n in conv_channels)
    kept, runs, skipped = label_runs(records)
    checked = None
    if claims:
        from mbcost.claims.check import check_claims

        checked = check_claims(kept, weights)
    return ReportData(input=size, batch=batch, models=tuple(costs), references=references,
                      scaling=tuple(scaling), conv_grid=grid, records=tuple(kept), runs=tuple(runs),
                      skipped=(*notes, *skipped), sources=tuple(sources), claims=checked)


@dataclass(frozen=True)
class CategoryTimes:
    """Measured time and counted MACs of one model in one run, summed by layer category."""

    run: str
    model: str
    input: tuple[int, ...] | None
    batch: int | None
    time_ms: dict[str, float]
    macs: dict[str, float]

    @property
    def total_ms(self) -> float:
        return sum(self.time_ms.values())

    @property
    def total_macs(self) -> float:
        return sum(self.macs.values())


def category_times(records: Iterable[dict[str, Any]]) -> list[CategoryTimes]:
    """Sum the ``layer`` records of each (run, model, input, batch) by category, in record order."""
    from mbcost.cost.result import CATEGORIES

    groups: dict[tuple[Any, ...], CategoryTimes] = {}
    for r in records:
        if r.get("kind") != "layer":
            continue
        inp = tuple(r["input"]) if isinstance(r.get("input"), list) else None
        key = (r.get("run"), r["model"], inp, r.get("batch"))
        if key not in groups:
            groups[key] = CategoryTimes(run=str(r.get("run") or _default_label(r)), model=str(r["model"]),
                                        input=inp, batch=r.get("batch"),
                                        time_ms=dict.fromkeys(CATEGORIES, 0.0), macs=dict.fromkeys(CATEGORIES, 0))
        cat = r["category"] if r["category"] in CATEGORIES else "other"
        groups[key].time_ms[cat] += float(r["median_ms"])
        groups[key].macs[cat] += r.get("macs") if _is_number(r.get("macs")) else 0
    return list(groups.values())
