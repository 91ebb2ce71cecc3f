"""Model specs: ``"v2"``, ``"v1@0.75"``, ``"package.module:factory"``; input sizes: ``224``, ``"224x160"``."""

from __future__ import annotations

import importlib
import math
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from mbcost.errors import AnalysisError, SpecError, UnknownModelError
from mbcost.inputs import FLOAT_DTYPES
from mbcost.inputs import parse_image_size as parse_input  # noqa: F401  (re-exported by mbcost.zoo)
from mbcost.zoo.catalog import get_entry
from mbcost.zoo.registry import ModelEntry

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "DTYPES", "ModelSpec", "build_model", "check_input_fits", "load_factory", "meta_model", "parse_models",
    "parse_spec", "parse_width",
]

MAX_WIDTH = 4.0
DTYPES = FLOAT_DTYPES  # the model dtypes: floating point


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec. ``factory`` is set for a user's ``module:factory``; ``name`` then holds it."""

    name: str
    width: float | None = None
    factory: str | None = None

    @property
    def label(self) -> str:
        if self.width is None or self.width == 1.0:
            return self.name
        return f"{self.name}@{self.width:g}"

    @property
    def entry(self) -> ModelEntry | None:
        return None if self.factory else get_entry(self.name)


def parse_spec(text: str) -> ModelSpec:
    """Parse ``NAME[@WIDTH]`` or ``package.module:factory``.

    Raises:
        SpecError: empty spec, non-numeric or out-of-range width, width on a model without one.
        UnknownModelError: a name that is not in the zoo.
    """
    text = (text or "").strip()
    if not text:
        raise SpecError("empty model spec; give a zoo name such as 'v2' or 'v1@0.75', or 'pkg.module:factory'")
    if ":" in text:
        module, _, attr = text.partition(":")
        if not module or not attr or "@" in text:
            raise SpecError(f"bad factory spec {text!r}; expected 'package.module:factory'")
        return ModelSpec(name=text, factory=text)
    name, sep, width_text = text.partition("@")
    entry = get_entry(name)
    width: float | None = 1.0 if entry.supports_width else None
    if sep:
        width = parse_width(width_text, text)
        if not entry.supports_width and width != 1.0:
            raise SpecError(f"{entry.name} has no width multiplier (got {text!r}); width applies to v1, v1-conv, v2")
    return ModelSpec(name=entry.name, width=width)


def parse_width(text: str, spec: str = "") -> float:
    try:
        width = float(text)
    except ValueError:
        raise SpecError(f"width in {spec or text!r} is not a number") from None
    if not math.isfinite(width) or width <= 0 or width > MAX_WIDTH:
        raise SpecError(f"width {text!r} is out of range; it must be > 0 and <= {MAX_WIDTH:g}")
    return width


def parse_models(text: str) -> list[ModelSpec]:
    """Parse a comma-separated list of specs (``"v1,v2,vgg16"``); refuses an empty list."""
    parts = [p.strip() for p in (text or "").split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise SpecError("no models given; expected comma-separated model specs such as v1,v2,vgg16")
    return [parse_spec(p) for p in parts]


def check_input_fits(spec: ModelSpec, size: tuple[int, int]) -> None:
    """Refuse an input smaller than a zoo model's total downsampling."""
    entry = spec.entry
    if entry is not None and min(size) < entry.total_stride:
        raise SpecError(
            f"input {size[0]}x{size[1]} is too small for {entry.name}: it downsamples by {entry.total_stride}, "
            f"so each side must be at least {entry.total_stride}"
        )


def load_factory(path: str) -> Any:
    """Import ``package.module:factory`` (``factory`` may be dotted) and return the callable."""
    module_name, _, attr_path = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownModelError(f"cannot import module {module_name!r} for model spec {path!r}: {exc}") from None
    except Exception as exc:  # the module itself fails (SyntaxError, ValueError at import...): one line, exit 2
        raise UnknownModelError(f"cannot import module {module_name!r} for model spec {path!r}: it raised "
                                f"{type(exc).__name__}: {_first_line(exc)}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UnknownModelError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise SpecError(f"{path!r} is not callable; it must be a function or class returning an nn.Module")
    return obj


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def build_model(spec: str | ModelSpec, *, num_classes: int = 1000, device: str | None = None) -> nn.Module:
    """Build the ``nn.Module`` a spec names, e.g. ``build_model("v2@0.75")``.

    Args:
        spec: a zoo spec (``"v2"``, ``"v1@0.5"``) or ``"package.module:factory"``.
        num_classes: classifier outputs for zoo models.
        device: build directly on this device; ``"meta"`` builds without allocating weights.

    Returns:
        A new module in training mode, freshly initialised (no pretrained weights).
    """
    import torch
    from torch import nn

    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if num_classes < 1:
        raise SpecError(f"--classes must be >= 1 (got {num_classes})")
    with torch.device(device) if device else nullcontext():
        if parsed.factory:
            factory = load_factory(parsed.factory)
            try:
                model = factory()
            except Exception as exc:  # a user's factory can fail in any way; report it in one line
                raise AnalysisError(f"factory {parsed.factory!r} raised {type(exc).__name__}: {exc}") from exc
            if not isinstance(model, nn.Module):
                raise SpecError(f"factory {parsed.factory!r} returned {type(model).__name__}, not an nn.Module")
            return model
        entry = get_entry(parsed.name)
        return entry.builder(width=parsed.width or 1.0, num_classes=num_classes)


@lru_cache(maxsize=32)
def meta_model(spec: ModelSpec, num_classes: int, dtype: str) -> nn.Module:
    """A zoo model built on the meta device (no memory), cached: the engine only reads it."""
    import torch

    model = build_model(spec, num_classes=num_classes, device="meta")
    return model.to(getattr(torch, dtype)).eval()

