"""The analysis cache: what ``predict`` reads of a model's analysis (``FIELDS`` per layer), kept as one JSON file
per key in ``$XDG_CACHE_HOME/mbcost/analyses/`` so a repeat prediction never imports torch; and torch's default
thread count, learned once. What a key holds and when an entry is used: docs/predict.md, "The analysis cache".
A ``package.module:factory`` spec is never cached; an unreadable entry is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace
from typing import Any

__all__ = ["FIELDS", "CachedAnalysis", "analysis_dir", "cache_key", "default_threads", "load", "remember_threads",
           "store", "torch_version"]

#: The ``LayerCost`` fields a prediction reads (``kinds.features``, ``kinds.model_kind``, ``fusion.kernels_of``).
FIELDS: tuple[str, ...] = ("name", "kind", "op", "groups", "input_shape", "output_shape", "kernel", "macs",
                           "input_bytes", "output_bytes", "weight_bytes", "other_ops", "bias_adds", "bytes_moved")
#: Bumped when an entry's layout changes.
CACHE_VERSION = 1
#: The spec prefix -> the distribution whose version decides what it builds.
_LIBRARIES = {"torchvision": "torchvision", "timm": "timm", "hf": "transformers"}
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS")


@dataclass(frozen=True)
class CachedAnalysis:
    """A model's analysis as far as prediction reads it: its name, input label, MACs, and per layer ``FIELDS``
    (``layers`` are namespaces with those attributes, in execution order)."""

    name: str
    inputs: str
    macs: int
    layers: tuple[Any, ...]


def analysis_dir() -> Path:
    from mbcost.io import cache_dir

    return cache_dir("analyses", "MBCOST_ANALYSIS_DIR")


def _write(path: Path, text: str) -> None:
    """Write atomically; a cache that cannot be written is skipped (nothing a prediction returns depends on it)."""
    from mbcost.errors import MbcostError
    from mbcost.io import write_text_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except (OSError, MbcostError):  # write_text_atomic reports its failures as mbcost's errors
        pass


def torch_version() -> str | None:
    """torch's ``__version__`` with its build tag (``2.14.1+cu130``), read from its ``version.py`` without
    importing it (the distribution's metadata drops the tag); ``None`` when it cannot be read."""
    try:
        spec = find_spec("torch")
        where = spec.submodule_search_locations if spec else None
        text = (Path(list(where)[0]) / "version.py").read_text(encoding="utf-8") if where else ""
    except (OSError, ImportError, ValueError):
        return None
    found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return found.group(1) if found else None


def _code_fingerprint() -> str:
    """mbcost's own modules: each one's path, size and modification time, hashed."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".py"):
                st = os.stat(os.path.join(folder, f))
                h.update(f"{os.path.relpath(os.path.join(folder, f), root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _source_identity(spec: str) -> str | None:
    """What decides the model a spec builds, beyond mbcost and torch; ``None`` when that cannot be known
    without importing it (a user's factory, a Hugging Face hub id)."""
    prefix, colon, rest = spec.partition(":")
    if not colon:
        return "zoo"  # mbcost's own tables
    if prefix not in _LIBRARIES:
        return None
    try:
        lib = f"{_LIBRARIES[prefix]} {version(_LIBRARIES[prefix])}"
    except PackageNotFoundError:
        return None
    if prefix == "hf":
        config = Path(rest.strip()) / "config.json"
        if not config.is_file():
            return None
        return f"{lib} {hashlib.sha256(config.read_bytes()).hexdigest()}"
    return lib


def cache_key(spec: Any, inputs: Any, batch: int, num_classes: int) -> str | None:
    """The entry's key for a prediction's analysis, or ``None`` when it cannot be cached (a module, a factory,
    an input given as tensors...)."""
    if not isinstance(spec, str) or not spec.strip():
        return None
    if inputs is not None and not isinstance(inputs, (int, str)) and not (
            isinstance(inputs, (list, tuple)) and all(isinstance(i, (int, str)) for i in inputs)):
        return None
    spec = spec.strip()
    source = _source_identity(spec)
    torch = torch_version()
    if source is None or torch is None:
        return None
    parts = [CACHE_VERSION, spec, repr(inputs), batch, num_classes, torch, source, _code_fingerprint()]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _path(key: str) -> Path:
    return analysis_dir() / f"{key}.json"


def load(key: str | None) -> CachedAnalysis | None:
    """The entry under ``key``, or ``None`` (no key, no entry, or an unreadable one)."""
    if key is None:
        return None
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
        shapes = ("input_shape", "output_shape", "kernel")
        layers = tuple(SimpleNamespace(**{f: tuple(v) if f in shapes and v is not None else v
                                          for f, v in zip(FIELDS, row, strict=True)}) for row in data["layers"])
        return CachedAnalysis(str(data["name"]), str(data["inputs"]), int(data["macs"]), layers)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(key: str | None, analysis: CachedAnalysis) -> None:
    """Keep ``analysis`` under ``key`` (``None``: not cached)."""
    if key is None:
        return
    rows = [[getattr(layer, f) for f in FIELDS] for layer in analysis.layers]
    doc = {"version": CACHE_VERSION, "name": analysis.name, "inputs": analysis.inputs, "macs": analysis.macs,
           "layers": rows}
    _write(_path(key), json.dumps(doc, separators=(",", ":"), default=list) + "\n")


def _threads_key(torch: str) -> str:
    """What torch's default thread count depends on: its build, the CPU (model, and the count usable
    here) and the thread variables."""
    from mbcost.bench.devices import cpu_info
    from mbcost.host import usable_cpus

    env = ",".join(f"{v}={os.environ.get(v, '')}" for v in _THREAD_VARIABLES)
    return f"{torch}|{cpu_info()[0]}|{usable_cpus()}|{env}"


def _known_threads() -> dict[str, Any]:
    """``threads.json``: torch's default thread count by ``_threads_key`` ({} when missing or unreadable)."""
    try:
        known = json.loads((analysis_dir() / "threads.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def default_threads() -> int | None:
    """torch's default intra-op thread count in a fresh process here, when learned before (else ``None``)."""
    torch = torch_version()
    value = _known_threads().get(_threads_key(torch)) if torch else None
    return value if isinstance(value, int) and value >= 1 else None


def remember_threads(threads: int) -> None:
    """Record torch's default thread count (read from a torch this process imported and left unchanged)."""
    torch = torch_version()
    known = _known_threads()
    if torch is None or known.get(_threads_key(torch)) == threads:
        return
    known[_threads_key(torch)] = threads
    _write(analysis_dir() / "threads.json", json.dumps(known, indent=1, sort_keys=True) + "\n")
