"""Everything a report shows, gathered once into a typed ``ReportData``: what the analytic cost engine counts
(the models at the report's input, the width x resolution grid of the width-multiplier models, a grid of
standard vs depthwise + pointwise convolutions) and the measurement records, typed and grouped into runs
(``label_runs``). Figures and the HTML page only read what is gathered here.

Example:
    >>> data = gather("v1,v2,vgg16", 224)
    >>> [m.label for m in data.models]
    ['v1', 'v2', 'vgg16']
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mbcost.bench.records import ConvRecord, Env, LayerRecord, ModelRecord, Record, RecordError, parse_record
from mbcost.bench.store import UNREADABLE  # the placeholder kind load_records(placeholders=True) puts for a bad line
from mbcost.claims.check import ClaimsData
from mbcost.cost.conv import ConvComparison, compare_conv
from mbcost.cost.result import ModelCost
from mbcost.inputs import renamed_inputs
from mbcost.zoo.registry import Reported
from mbcost.zoo.spec import ModelSource, resolve_sources

if TYPE_CHECKING:
    from mbcost.bench.matrix import RuntimeRow
    from mbcost.predict.profile import DeviceProfile, ProfileKey
    from mbcost.weights import KernelHealth

__all__ = [
    "CONV_CHANNELS", "CONV_KERNELS", "PAPER_GRIDS", "CategoryTimes", "PredictedPoint", "Predictions", "ReportData",
    "Run", "category_times", "gather", "label_runs", "predictions", "report_runtime_rows", "runtime_name",
]

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

#: Environment fields that tell two runs apart (the timestamp does not: one run can be saved
#: by several ``bench`` invocations). What ran the records (``runtime``, ``precision``) tells runs apart too,
#: and names them (``runtime_name``); ``compile`` is the compile runtime.
_IDENTITY = ("device", "device_name", "dtype", "threads", "channels_last", "runtime", "precision")
_ENV_IDENTITY = ("cpu", "platform", "torch", "cuda", "cudnn", "mbcost")


#: A record type (``ReportData.of_kind``).
_R = TypeVar("_R", bound=Record)


@dataclass(frozen=True)
class Run:
    """One measured environment: every record with the same label and environment.

    ``label`` is unique within a report: when two different environments carry the same
    label, the fields that differ are appended to it. ``env`` and ``threads`` are those of the
    run's first record.
    """

    label: str
    device: str
    device_name: str
    dtype: str
    threads: int
    env: Env
    sources: tuple[str, ...]
    counts: dict[str, int]
    #: What ran the run's records (``mbcost.bench.runtimes``) and in what precision.
    runtime: str = "eager"
    precision: str = "float32"


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
        records: the measurement records shown, typed (``mbcost.bench.records``); each one's ``label`` is its
            run's (``Run.label``, unique within the report), so figures group by ``record.label``.
        runs: the measured environments, in order of first appearance.
        skipped: why some records were left out (one line each).
        sources: the JSON Lines files read, plus ``"--bench"`` when measured now.
        created: when the data was gathered (ISO 8601, UTC).
        claims: the papers' claims checked now, and the accuracy-vs-cost frontier
            (``mbcost.claims.check_claims``); ``None`` when not asked for.
        runtime_rows: the report's models measured on several runtimes side by side (``mbcost.bench.matrix``:
            median, speed-up against eager, speed-ups between the models); empty when every model record ran on
            eager PyTorch in float.
        predicted: the models' predicted latency (``mbcost.predict``) next to the measured one, when a device
            profile matches a measured run (or one was given); ``None`` otherwise, and ``predicted_hint`` says why
            in one line (how to make a profile).
    """

    input: tuple[int, int]
    batch: int
    models: tuple[ModelCost, ...]
    references: dict[str, Reported]
    scaling: tuple[ModelCost, ...]
    conv_grid: tuple[ConvComparison, ...]
    records: tuple[Record, ...] = ()
    runs: tuple[Run, ...] = ()
    skipped: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    claims: ClaimsData | None = None
    runtime_rows: tuple[RuntimeRow, ...] = ()
    predicted: Predictions | None = None
    predicted_hint: str = ""

    def of_kind(self, kind: type[_R]) -> list[_R]:
        """The records of one type, in order: ``data.of_kind(ModelRecord)``."""
        return [r for r in self.records if isinstance(r, kind)]

    @property
    def measured(self) -> bool:
        return bool(self.records)


# ---------------------------------------------------------------------------------------------
# Labelling measurement records

#: Why a placeholder (a line of a results file that is not a JSON object) was left out.
UNREADABLE_REASON = "line that is not a JSON object (a record cut short when a run was interrupted?)"


def _default_label(r: Record) -> str:
    """The run's name: the record's label, and the runtime that ran it unless it is eager PyTorch in float
    (``AMD EPYC float32, onnxruntime``; ``..., openvino int8``), so runs of several runtimes are told apart
    whatever their labels (and eager runs are named as before runtimes existed)."""
    label = r.label or f"{r.device_name or r.device or 'unknown device'} {r.dtype}".strip()
    name = runtime_name(r)
    return f"{label}, {name}" if name else label


def runtime_name(r: Record) -> str:
    """``onnxruntime``, ``openvino int8``, ``eager int8``, ``compile``; empty for eager at its float dtype."""
    runtime, precision = r.runtime or "eager", r.precision or r.dtype
    if runtime == "eager" and precision == r.dtype:
        return ""
    return runtime + (" int8" if precision == "int8" else "")


def _identity(r: Record) -> tuple[tuple[str, str], ...]:
    items = [(k, json.dumps(getattr(r, k), sort_keys=True)) for k in _IDENTITY]
    # a training step and an inference forward measure different work: never one run (only model
    # records have a mode; every other kind is inference)
    items += [(k, json.dumps(getattr(r, k, default))) for k, default in (("mode", "inference"), ("optimizer", None))]
    items += [(f"env.{k}", json.dumps(getattr(r.env, k), sort_keys=True)) for k in _ENV_IDENTITY]
    return tuple(items)


def _dedupe_key(r: Record) -> tuple[Any, ...]:
    """What a record measured: a later record with the same key replaces it."""
    common = (r.label, r.kind, getattr(r, "input", None), r.batch, r.runtime, r.precision)
    if isinstance(r, LayerRecord):
        return (*common, r.model, r.layer)
    if isinstance(r, ModelRecord):
        return (*common, r.model)
    if isinstance(r, ConvRecord):
        return (*common, r.cin, r.cout, r.k, r.size, r.stride)
    return common


def _typed(r: Record | Mapping[str, Any]) -> tuple[Record | None, str | None, str | None]:
    """``(record, source file, why it is left out)`` of one record in memory or one loaded line."""
    if isinstance(r, Record):
        return r, None, None
    source = r.get("_source") if isinstance(r, Mapping) else None
    if isinstance(r, Mapping) and r.get("kind") == UNREADABLE:
        return None, source, UNREADABLE_REASON
    try:
        return parse_record(dict(r) if isinstance(r, Mapping) else r), source, None
    except RecordError as exc:
        return None, source, str(exc)


def label_runs(records: Iterable[Record | Mapping[str, Any]]) -> tuple[list[Record], list[Run], list[str]]:
    """Type the records, group them into runs, give each run a unique label.

    Args:
        records: typed records, or JSON objects of a results file (``mbcost.bench.store.load_records``
            with ``placeholders=True``: unreadable lines are placeholders, and ``_source`` names each
            line's file, which ``Run.sources`` lists); each object is read with ``parse_record``.

    Returns:
        ``(records, runs, skipped)``: the typed records, each with ``label`` set to its run's
        unique label (for a repeated measurement of the same thing the last one wins), the runs
        in order of first appearance, and one line per reason records were left out
        (``"2 records left out: model record without median_ms"``).
    """
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[Record, str | None]]] = {}
    reasons: Counter[str] = Counter()
    for item in records:
        r, source, why = _typed(item)
        if r is None:
            reasons[str(why)] += 1
        else:
            groups.setdefault((_default_label(r), _identity(r)), []).append((r, source))

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

    kept: dict[tuple[Any, ...], Record] = {}
    runs: list[Run] = []
    for key, members in groups.items():
        name = names[key]
        for r, _ in members:
            rec = replace(r, label=name)
            kept.pop(_dedupe_key(rec), None)  # the last measurement of the same thing wins
            kept[_dedupe_key(rec)] = rec
        first = members[0][0]
        sources = tuple(dict.fromkeys(str(source) for _, source in members if source))
        runs.append(Run(label=name, device=first.device, device_name=first.device_name, dtype=first.dtype,
                        threads=first.threads, env=first.env, sources=sources,
                        counts=dict(Counter(r.kind for r, _ in members)),
                        runtime=first.runtime or "eager", precision=first.precision or first.dtype))
    skipped = [f"{n} record{'s' if n > 1 else ''} left out: {why}" for why, n in reasons.items()]
    return list(kept.values()), runs, skipped


# ---------------------------------------------------------------------------------------------
# Gathering


def gather(
    models: str | Sequence[str | ModelSource] = "v1,v2,vgg16",
    inputs: Any = None,
    batch: int = 1,
    *,
    num_classes: int = 1000,
    dtype: str = "float32",
    input_dtype: str | None = None,
    execute: str = "auto",
    mode: str = "inference",
    optimizer: str = "sgd",
    records: Iterable[Record | Mapping[str, Any]] = (),
    sources: Sequence[str] = (),
    notes: Sequence[str] = (),
    widths: Sequence[float] | None = None,
    resolutions: Sequence[int] | None = None,
    conv_channels: Sequence[int] = CONV_CHANNELS,
    conv_kernels: Sequence[int] = CONV_KERNELS,
    claims: bool = True,
    weights: Mapping[str, KernelHealth] | None = None,
    input_size: Any = None,
    profile: str | Path | DeviceProfile | None = None,
) -> ReportData:
    """Analyse the models and the grids a report shows and attach measurement records.

    Args:
        models: ``"v1,v2,vgg16"`` or a list of specs (``mbcost.zoo.resolve_source``).
        inputs: the report's input: ``224``, ``"HxW"`` or any form ``mbcost.analyze`` takes
            (a full shape, several inputs...); default: each source's own, else 224. ``input_size`` is its
            former name (deprecated).
        batch: batch size of the analytic counts.
        num_classes, dtype, input_dtype, execute, mode, optimizer: as for ``mbcost.analyze``.
        records: measurement records: typed (``mbcost.bench.records``), or the JSON objects of
            results files (``mbcost.bench.store.load_records(paths, placeholders=True)``), read with
            ``parse_record``; a line that breaks the contract is left out and said so on the page.
        sources: where the records came from, shown on the page.
        notes: lines about measurements that were not made (shown with the runs).
        widths, resolutions: the width x resolution grid of the width-multiplier models (default: each
            paper's own grid, ``PAPER_GRIDS``).
        conv_channels, conv_kernels: the standard vs separable convolution grid (M = N).
        claims: check the MobileNet papers' claims now (``mbcost.claims.check_claims``), with the
            measured conv sweep among ``records`` and the kernel health of ``weights``.
        weights: kernel health of trained checkpoints by model spec (``mbcost.weights.checkpoint_health``).
        profile: a device profile (file or loaded) to predict the measured models' latency with, even one made
            for another setup (then marked forced); default: the cache's profile of a measured run's setup.

    Returns:
        A ``ReportData``.
    """
    from mbcost.cost.analyze import analyze

    specs = resolve_sources(models)
    value = renamed_inputs(inputs, input_size)
    costs = [analyze(s, value, batch, num_classes=num_classes, dtype=dtype, input_dtype=input_dtype,
                     execute=execute, mode=mode, optimizer=optimizer) for s in specs]
    size = costs[0].input
    labels = [c.label for c in costs]

    references = {cost.label: spec.entry.reported for spec, cost in zip(specs, costs, strict=True)
                  if spec.entry is not None and spec.entry.reported is not None
                  and spec.entry.reported.top1 is not None and spec.width in (None, 1.0) and size == PAPER_INPUT}

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
                    scaling.append(analyze(ModelSource("zoo", entry.name, float(w)), (r, r), batch,
                                           num_classes=num_classes, dtype=dtype))

    grid = tuple(compare_conv(n, n, k, CONV_SIZE) for k in conv_kernels for n in conv_channels)
    kept, runs, skipped = label_runs(records)
    checked = None
    if claims:
        from mbcost.claims.check import check_claims

        checked = check_claims(kept, weights)
    predicted, hint = (None, "") if mode != "inference" or dtype != "float32" else predictions(costs, kept, profile)
    return ReportData(input=size, batch=batch, models=tuple(costs), references=references,
                      scaling=tuple(scaling), conv_grid=grid, records=tuple(kept), runs=tuple(runs),
                      skipped=(*notes, *skipped), sources=tuple(sources), claims=checked,
                      runtime_rows=report_runtime_rows(kept, labels, size), predicted=predicted,
                      predicted_hint=hint)


def report_runtime_rows(records: Iterable[Record], models: Sequence[str],
                        size: tuple[int, ...]) -> tuple[RuntimeRow, ...]:
    """The runtime x model rows (``mbcost.bench.matrix.runtime_rows``) of the report's models at its input, when
    any of their records ran on a runtime other than eager PyTorch in float; else none."""
    from mbcost.bench.matrix import runtime_rows

    mine = [r for r in records if isinstance(r, ModelRecord) and r.model in models and r.input == tuple(size)
            and r.mode == "inference"]
    if not any(runtime_name(r) for r in mine):
        return ()
    return tuple(runtime_rows(mine, list(models)))


@dataclass(frozen=True)
class PredictedPoint:
    """One model's predicted latency (``mbcost.predict``) and its measured one (ms): ``measured_ms`` is the fastest
    of its timed runs, the lower envelope (drift only slows a run; calibration times its models so too)."""

    model: str
    macs: int
    predicted_ms: float
    interval_ms: tuple[float, float]
    measured_ms: float

    @property
    def error(self) -> float:
        """predicted / measured - 1 (0.1: predicted 10 % slower than measured)."""
        return self.predicted_ms / self.measured_ms - 1


@dataclass(frozen=True)
class Predictions:
    """The report's models predicted with one device profile, against one measured run (``run``, its ``key``).
    ``forced``: the profile was given and made for another setup (``mismatch`` says how)."""

    run: str
    key: ProfileKey
    profile: str | None
    points: tuple[PredictedPoint, ...]
    forced: bool = False
    mismatch: tuple[str, ...] = ()


def _run_key(r: ModelRecord) -> ProfileKey:
    from mbcost.predict.profile import ProfileKey

    return ProfileKey(device=r.device, device_name=r.device_name, runtime="eager", precision="float32",
                      threads=r.threads, torch=r.env.torch, runtime_version=r.runtime_version or r.env.torch)


def predictions(costs: Sequence[ModelCost], records: Iterable[Record],
                profile: str | Path | DeviceProfile | None = None) -> tuple[Predictions | None, str]:
    """The models' predicted latency against the first measured run (eager float32 inference on the CPU, at each
    model's input and batch) whose setup has a device profile in the cache, or against the first such run with the
    ``profile`` given (forced when made for another setup). Returns ``(predictions, "")``, or ``(None, hint)``:
    one line saying why there are none and how to get them (``mbcost calibrate``).

    Raises:
        ProfileError: ``profile`` is corrupt or unreadable.
    """
    from mbcost.predict.predictor import find_profile, predict_cost
    from mbcost.predict.profile import DeviceProfile, ProfileError

    by_label = {c.label: c for c in costs}
    runs: dict[str, list[ModelRecord]] = {}
    for r in records:
        c = by_label.get(getattr(r, "model", ""))
        if isinstance(r, ModelRecord) and c is not None and r.device == "cpu" and r.mode == "inference" \
                and (r.runtime or "eager") == "eager" and (r.precision or r.dtype) == "float32" \
                and r.input == tuple(c.input) and r.batch == c.batch:
            runs.setdefault(r.label, []).append(r)
    if not runs:
        return None, ("predicted vs measured latency: needs eager float32 CPU latency measured now (--bench) or "
                      "passed with --from, and a device profile: run mbcost calibrate")
    given = profile if isinstance(profile, DeviceProfile) else None
    if profile is not None and given is None:
        given = find_profile(_run_key(next(iter(runs.values()))[0]), profile)[0]  # corrupt: ProfileError
    hint = ""
    for label, rs in runs.items():
        key = _run_key(rs[0])
        if given is not None:
            prof, mismatch = given, tuple(given.key.differences(key))
        else:
            try:  # none for this setup, one made for another, a corrupt one: the hint names mbcost calibrate
                prof, mismatch = find_profile(key)
            except ProfileError as exc:
                hint = hint or f"predicted vs measured latency: {exc}"
                continue
        points = []
        for r in rs:
            p = predict_cost(by_label[r.model], prof, key=key, mismatch=mismatch, forced=bool(mismatch))
            points.append(PredictedPoint(r.model, r.macs, p.predicted_ms, p.interval_ms,
                                         min(r.times_ms) if r.times_ms else r.median_ms))
        return Predictions(label, key, prof.path, tuple(points), bool(mismatch), mismatch), ""
    return None, hint


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


def category_times(records: Iterable[Record]) -> list[CategoryTimes]:
    """Sum the layer records of each (run, model, input, batch) by category, in record order."""
    from mbcost.cost.result import CATEGORIES

    groups: dict[tuple[Any, ...], CategoryTimes] = {}
    for r in records:
        if not isinstance(r, LayerRecord):
            continue
        key = (r.label, r.model, r.input, r.batch)
        if key not in groups:
            groups[key] = CategoryTimes(run=r.label, model=r.model, input=r.input, batch=r.batch,
                                        time_ms=dict.fromkeys(CATEGORIES, 0.0), macs=dict.fromkeys(CATEGORIES, 0))
        cat = r.category if r.category in CATEGORIES else "other"
        groups[key].time_ms[cat] += r.median_ms
        groups[key].macs[cat] += r.macs
    return list(groups.values())
