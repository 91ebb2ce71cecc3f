"""The gate baseline: a versioned, diffable JSON file of parameter counts and MACs.

One entry per model spec x input size x batch: total parameters, total MACs, and per layer (a module
path) the module's own parameters and the MACs of the ops it issued. Written with a fixed key order and
one layer per line, so a code review shows which layer changed (``mbcost-baseline.json`` at the
repository root is one; docs/ci-gate.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mbcost.errors import BaselineError, MbcostError, SpecError, UnknownModelError
from mbcost.gate.config import Size, gate_input
from mbcost.io import display_path

__all__ = [
    "CONVENTIONS", "ROOT", "SCHEMA_VERSION", "Baseline", "Entry", "EntryKey", "LayerCount", "Size", "baseline_error",
    "check_specs", "dumps", "entry_label", "input_label", "loads", "make_baseline", "measure", "read_baseline",
]

#: The schema version this mbcost reads and writes.
SCHEMA_VERSION = 1
VERSION_KEY = "mbcost_gate_baseline"

#: Pseudo-layer holding parameters of modules that never ran in the forward pass.
UNATTRIBUTED = "(unattributed)"
#: Name of the root module's own layer (a model that is itself a single layer).
ROOT = "(root)"

CONVENTIONS = (
    "params: unique parameters, frozen ones included, incl. biases and BatchNorm affine (buffers such as "
    "running stats excluded); "
    "MACs: multiply-accumulates of conv and linear layers, bias excluded (the papers' Mult-Adds); "
    "layers: module paths, each with its own parameters and the MACs of the ops it issued (an embedding's "
    "parameters with 0 MACs; modules with neither are not listed); " + UNATTRIBUTED + ": parameters of modules "
    "the forward pass never ran"
)

#: The optional estimated activation peaks of an entry (``Entry``'s fields and the file's keys).
PEAKS = ("peak_activation_bytes", "train_peak_activation_bytes")

REGENERATE = "regenerate it with `mbcost gate --update`"

EntryKey = tuple[str, Size, int]


@dataclass(frozen=True)
class LayerCount:
    """Parameters owned by one module and the MACs of the ops it issued."""

    params: int
    macs: int


@dataclass(frozen=True)
class Entry:
    """The counts of one model at one input size and batch (a baseline entry, or a fresh measure).

    ``layers`` keeps the forward pass's order (the order the file lists them in).
    """

    spec: str
    input: Size
    batch: int
    params: int
    macs: int
    layers: Mapping[str, LayerCount] = field(default_factory=dict)
    #: Estimated activation peaks (tensor lifetimes): an inference forward, and a training step's
    #: (with ``mode = "train"``); ``None`` where the baseline does not hold them.
    peak_activation_bytes: int | None = None
    train_peak_activation_bytes: int | None = None

    @property
    def key(self) -> EntryKey:
        return (self.spec, self.input, self.batch)

    @property
    def label(self) -> str:
        return entry_label(self.key)


def entry_label(key: EntryKey) -> str:
    """``v2 @ 224x224`` (``v2 @ 224x224 b8`` for a batch other than 1)."""
    spec, size, batch = key
    return f"{spec} @ {input_label(size)}" + (f" b{batch}" if batch != 1 else "")


def input_label(size: Size) -> str:
    """``224x224``, ``1x3x16x112x112``, or a text input as it is (``1x64:int64``)."""
    return size if isinstance(size, str) else "x".join(str(d) for d in size)


def _order(e: Entry) -> tuple:
    """Sort key of an entry: by spec, then tuple inputs before text inputs (never compared with each other)."""
    return (e.spec, isinstance(e.input, str), e.input, e.batch)


@dataclass(frozen=True)
class Baseline:
    """A parsed baseline file: its schema version, provenance and entries (sorted by key)."""

    entries: tuple[Entry, ...]
    version: int = SCHEMA_VERSION
    generated_by: str = ""
    conventions: str = CONVENTIONS


def measure(spec: str, size: Size, batch: int = 1, mode: str = "inference", optimizer: str = "sgd") -> Entry:
    """Count one model with the analytic engine (pure shapes, milliseconds per model).

    Args:
        spec: a zoo spec (``"v2"``, ``"v1@0.75"``) or ``"package.module:factory"``.
        size: ``(H, W)`` of an image, a full input shape (3 or more dims; ``batch`` is then its own), or
            an ``--input`` text (``"1x64:int64"``: ``mbcost.gate.config.gate_input``).
        batch: batch size of an image (MACs scale with it; parameters do not).
        mode: ``"train"`` also estimates a training step's activation peak (with ``optimizer``).

    Returns:
        An ``Entry`` keyed by the spec's canonical label (``"mobilenet_v2"`` -> ``"v2"``).
    """
    from mbcost.cost.analyze import analyze
    from mbcost.zoo.spec import resolve_source

    parsed = resolve_source(spec)
    cost = analyze(parsed, size, batch)
    train = analyze(parsed, size, batch, mode="train", optimizer=optimizer) if mode == "train" else None
    layers: dict[str, LayerCount] = {}
    for record in cost.in_forward_order():  # an embedding's parameters are its module's, with 0 MACs
        name = record.module or ROOT
        previous = layers.get(name, LayerCount(0, 0))
        layers[name] = LayerCount(previous.params + record.params, previous.macs + getattr(record, "macs", 0))
    layers = {name: count for name, count in layers.items() if count.params or count.macs}
    if cost.unattributed_params:
        layers[UNATTRIBUTED] = LayerCount(cost.unattributed_params, 0)
    key = tuple(cost.input) if isinstance(size, tuple) else size
    return Entry(spec=parsed.label, input=key, batch=cost.batch, params=cost.params, macs=cost.macs,
                 layers=layers, peak_activation_bytes=cost.peak_activation_bytes,
                 train_peak_activation_bytes=train.train_peak_activation_bytes if train else None)


def make_baseline(entries: Iterable[Entry]) -> Baseline:
    """A baseline of ``entries``, sorted by (spec, input, batch) so the file order is stable."""
    from mbcost._version import __version__

    return Baseline(entries=tuple(sorted(entries, key=_order)),
                    generated_by=f"mbcost {__version__}")


def dumps(baseline: Baseline) -> str:
    """The baseline as JSON text: fixed key order, one input and one layer per line, a final newline."""
    models = [{"spec": e.spec, "input": e.input if isinstance(e.input, str) else list(e.input), "batch": e.batch,
               "params": e.params, "macs": e.macs,
               **{k: getattr(e, k) for k in PEAKS if getattr(e, k) is not None},
               "layers": {name: {"params": c.params, "macs": c.macs} for name, c in e.layers.items()}}
              for e in baseline.entries]
    text = json.dumps({VERSION_KEY: baseline.version, "generated_by": baseline.generated_by,
                       "conventions": baseline.conventions, "models": models},
                      indent=2, ensure_ascii=False, allow_nan=False)
    # an input's list and a layer's counts back onto one line (a string never spans lines: no false match)
    text = re.sub(r"\[\n\s+(\d[\d,\s]*?)\n\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    return re.sub(r'\{\n\s+"params": (\d+),\n\s+"macs": (\d+)\n\s+\}', r'{"params": \1, "macs": \2}', text) + "\n"


def read_baseline(path: Path) -> Baseline:
    """Read and validate a baseline file.

    Raises:
        BaselineError: missing, unreadable, empty or corrupt file; another schema version;
            malformed or duplicate entries. The message is one line naming the file.
    """
    shown = display_path(path)
    path = Path(path)
    if not path.exists():
        raise baseline_error(f"no baseline at {shown}", "create one with `mbcost gate --update`")
    if path.is_dir():
        raise baseline_error(f"baseline {shown} is a directory, not a file", "")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise baseline_error(f"cannot read baseline {shown}: {reason}", "") from None
    return loads(text, shown)


def loads(text: str, path: Path | str = "<baseline>") -> Baseline:
    """Parse baseline JSON text (see ``read_baseline`` for the errors)."""
    if not text.strip():
        raise baseline_error(f"baseline {path} is empty")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) \
            else str(exc)
        raise baseline_error(f"baseline {path} is not valid JSON ({detail})") from None
    if not isinstance(data, dict) or VERSION_KEY not in data:
        raise baseline_error(f"{path} is not an mbcost gate baseline (no {VERSION_KEY!r} version field)")
    version = data[VERSION_KEY]
    if type(version) is not int:
        raise baseline_error(f"baseline {path} has a malformed schema version {version!r} "
                             f"(this mbcost reads version {SCHEMA_VERSION})")
    if version != SCHEMA_VERSION:
        origin = "a newer" if version > SCHEMA_VERSION else "an older"
        raise baseline_error(
            f"baseline {path} has schema version {version} (from {origin} mbcost); this mbcost reads version "
            f"{SCHEMA_VERSION}", ("upgrade mbcost or " if version > SCHEMA_VERSION else "") + REGENERATE)
    return Baseline(entries=_entries(data.get("models"), path), version=version,
                    generated_by=_text(data.get("generated_by", ""), "generated_by", path),
                    conventions=_text(data.get("conventions", ""), "conventions", path))


def check_specs(baseline: Baseline, path: Path | str) -> Baseline:
    """Refuse a baseline naming a model that no longer exists (exit 2, not drift).

    Each spec is resolved (``mbcost.zoo.resolve_source``: zoo names looked up, factories imported...).

    Returns:
        The baseline with every spec in its canonical form (``"mobilenet_v2"`` -> ``"v2"``).

    Raises:
        UnknownModelError: with the baseline's path and the entry in the message.
    """
    from mbcost.zoo.spec import resolve_source

    labels: dict[str, str] = {}
    for spec in dict.fromkeys(e.spec for e in baseline.entries):
        try:
            labels[spec] = resolve_source(spec).label
        except MbcostError as exc:
            raise UnknownModelError(f"baseline {display_path(path)} names model {spec!r}, which cannot be "
                                    f"built: {exc}") from None
    entries = [replace(e, spec=labels[e.spec]) for e in baseline.entries]
    if len({e.key for e in entries}) != len(entries):
        raise _malformed(display_path(path), "'models'", "lists the same model twice under different spellings")
    return replace(baseline, entries=tuple(entries))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a count")


def baseline_error(reason: str, hint: str = REGENERATE) -> BaselineError:
    """A ``BaselineError`` whose message is ``reason; hint``; the bare reason is kept as ``.reason``."""
    exc = BaselineError(f"{reason}; {hint}" if hint else reason)
    exc.reason = reason  # type: ignore[attr-defined]
    return exc


def _malformed(path: Path | str, where: str, what: str) -> BaselineError:
    return baseline_error(f"baseline {path} is malformed: {where} {what}")


def _text(value: Any, where: str, path: Path | str) -> str:
    if not isinstance(value, str):
        raise _malformed(path, where, "is not a string")
    return value


def _count(value: Any, where: str, path: Path | str) -> int:
    if type(value) is not int or value < 0:
        raise _malformed(path, where, f"must be a non-negative integer (got {value!r})")
    return value


def _entries(models: Any, path: Path | str) -> tuple[Entry, ...]:
    if not isinstance(models, list):
        raise _malformed(path, "'models'", "must be a list")
    entries: list[Entry] = []
    seen: set[EntryKey] = set()
    for i, m in enumerate(models):
        where = f"models[{i}]"
        if not isinstance(m, dict):
            raise _malformed(path, where, "is not an object")
        missing = [k for k in ("spec", "input", "params", "macs", "layers") if k not in m]
        if missing:
            raise _malformed(path, where, f"has no {missing[0]!r}")
        spec = m["spec"]
        if not isinstance(spec, str) or not spec.strip():
            raise _malformed(path, f"{where}.spec", "must be a model spec string")
        size = m["input"]
        if isinstance(size, str):
            try:
                size = gate_input(size)
            except SpecError as exc:
                raise _malformed(path, f"{where}.input", f"is not an input ({exc})") from None
        elif not (isinstance(size, list) and len(size) >= 2 and all(type(v) is int and v > 0 for v in size)):
            raise _malformed(path, f"{where}.input", f"must be [height, width], a full shape or an --input text "
                                                       f"such as \"1x64:int64\" (got {size!r})")
        batch = _count(m.get("batch", 1), f"{where}.batch", path)
        if batch < 1:
            raise _malformed(path, f"{where}.batch", "must be at least 1")
        layers_value = m["layers"]
        if not isinstance(layers_value, dict):
            raise _malformed(path, f"{where}.layers", "must be an object of layer name -> {params, macs}")
        layers: dict[str, LayerCount] = {}
        for name, c in layers_value.items():
            lw = f"{where}.layers[{name!r}]"
            if not isinstance(c, dict) or set(c) != {"params", "macs"}:
                raise _malformed(path, lw, "must be {\"params\": N, \"macs\": N}")
            layers[name] = LayerCount(_count(c["params"], f"{lw}.params", path), _count(c["macs"], f"{lw}.macs", path))
        peaks = {name: _count(m[name], f"{where}.{name}", path) if m.get(name) is not None else None
                 for name in PEAKS}
        entry = Entry(spec=spec.strip(), input=size if isinstance(size, str) else tuple(size), batch=batch,
                      params=_count(m["params"], f"{where}.params", path),
                      macs=_count(m["macs"], f"{where}.macs", path), layers=layers, **peaks)
        if entry.key in seen:
            raise _malformed(path, where, f"repeats {entry.label}")
        seen.add(entry.key)
        entries.append(entry)
    return tuple(entries)
