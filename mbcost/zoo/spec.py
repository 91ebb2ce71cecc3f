"""Model sources, resolved once: every way to name a model becomes one ``ModelSource``.

``"v2"``, ``"v1@0.75"`` (the zoo), ``"package.module:factory"`` (a user's callable), ``"torchvision:NAME"``,
``"timm:NAME"`` and ``"hf:ID_OR_PATH"`` (``mbcost.zoo.external``). ``resolve_source`` checks the name once (imports
a factory, reads a Hugging Face config); the object is passed down and every layer asks it, never the text:
``build()`` a fresh module, ``meta_model()`` the one the engine reads, ``inputs()`` the input it gets by default.
Input sizes (``224``, ``"224x160"``) are ``mbcost.inputs``'.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mbcost.errors import AnalysisError, MbcostError, SpecError, UnknownModelError, first_line
from mbcost.inputs import FLOAT_DTYPES, Inputs, resolve_inputs
from mbcost.inputs import parse_image_size as parse_input  # noqa: F401  (re-exported by mbcost.zoo)
from mbcost.zoo import external
from mbcost.zoo.catalog import get_entry
from mbcost.zoo.registry import ModelEntry

if TYPE_CHECKING:
    from torch import nn

__all__ = ["DTYPES", "ModelSource", "build_model", "load_factory", "parse_width", "resolve_source", "resolve_sources"]

MAX_WIDTH = 4.0
DTYPES = FLOAT_DTYPES  # the model dtypes: floating point
_META_CACHE_SIZE = 32
_meta_cache: dict[tuple[ModelSource, int, str], nn.Module] = {}


@dataclass(frozen=True)
class ModelSource:
    """A model, named once: ``kind`` is ``zoo``, ``factory`` or one of ``external.KINDS``; ``name`` the spec without
    its width: the zoo's name, ``module:factory``, ``KIND:NAME`` (an id or a local directory for ``hf``)."""

    kind: str
    name: str
    width: float | None = None
    #: What resolving loaded and building needs (a factory's callable, a Hugging Face config); not part of the
    #: source's identity.
    loaded: Any = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """The spec that resolves to this source again: ``v2@0.75``, ``timm:resnet18``, ``pkg.mod:factory``."""
        return self.name if self.width is None or self.width == 1.0 else f"{self.name}@{self.width:g}"

    @property
    def entry(self) -> ModelEntry | None:
        """The zoo's registry entry (what the papers report about it); ``None`` for any other source."""
        return get_entry(self.name) if self.kind == "zoo" else None

    def build(self, *, num_classes: int = 1000, device: str | Any | None = None) -> nn.Module:
        """A new module (training mode, random weights), built on ``device`` (``"meta"``: nothing allocated).
        ``num_classes`` sizes the zoo's classifiers, and torchvision's and timm's when it is not 1000."""
        import torch

        if num_classes < 1:
            raise SpecError(f"--classes must be >= 1 (got {num_classes})")
        with torch.device(device) if device else nullcontext():
            if self.kind == "zoo":
                return get_entry(self.name).builder(width=self.width or 1.0, num_classes=num_classes)
            if self.kind in external.KINDS:
                return external.build(self.kind, self.name.partition(":")[2], self.loaded, num_classes)
            return _call_factory(self.name, self.loaded or load_factory(self.name))

    def meta_model(self, num_classes: int = 1000, dtype: str = "float32") -> nn.Module:
        """The module the engine reads, in eval mode and ``dtype``: built on the meta device when the source allows
        it (kept, up to 32, for the next analysis), else on the CPU. A user's factory is called again each time."""
        import torch

        key = (self, num_classes, dtype)
        if key in _meta_cache:
            return _meta_cache[key]
        try:
            module = self.build(num_classes=num_classes, device="meta")
        except MbcostError:
            if self.kind == "zoo":
                raise
            module = self.build(num_classes=num_classes)  # its builder needs real tensors (or fails anyway)
        module = module.to(getattr(torch, dtype)).eval()
        on_meta = all(p.is_meta for p in module.parameters())
        if self.kind != "factory" and on_meta:
            if len(_meta_cache) >= _META_CACHE_SIZE:
                _meta_cache.pop(next(iter(_meta_cache)))
            _meta_cache[key] = module
        return module

    def inputs(self, module: nn.Module, value: Any = None, *, batch: int = 1, in_channels: int = 3,
               dtype: str = "float32") -> Inputs:
        """``value`` (any form ``mbcost.inputs.resolve_inputs`` takes) or, when it is ``None``, this source's
        default input (a Hugging Face model's token ids or pixel values, a timm model's own image size, else 224),
        checked against the zoo model's downsampling."""
        if value is None:
            value = external.default_inputs(self.kind, module, batch) if self.kind in external.KINDS else None
        resolved = resolve_inputs(224 if value is None else value, batch=batch, in_channels=in_channels,
                                  dtype=dtype)
        entry = self.entry
        size = resolved.image_size
        if entry is not None and size is not None and min(size) < entry.total_stride:
            raise SpecError(
                f"input {size[0]}x{size[1]} is too small for {entry.name}: it downsamples by {entry.total_stride}, "
                f"so each side must be at least {entry.total_stride}")
        return resolved


def resolve_source(spec: str | ModelSource) -> ModelSource:
    """Resolve ``NAME[@WIDTH]``, ``package.module:factory``, ``torchvision:NAME``, ``timm:NAME`` or
    ``hf:ID_OR_PATH`` into a ``ModelSource`` (a ``ModelSource`` is returned as it is).

    Raises:
        SpecError: empty spec, non-numeric or out-of-range width, width on a model without one.
        UnknownModelError: a name that is not in the zoo (or the library), a factory that cannot be imported, an
            id whose config cannot be read;
            a library that is not installed, naming the extra to install.
    """
    if isinstance(spec, ModelSource):
        return spec
    text = (spec or "").strip()
    if not text:
        raise SpecError("empty model spec; give a zoo name such as 'v2' or 'v1@0.75', 'torchvision:NAME', "
                        "'timm:NAME', 'hf:ID_OR_PATH' or 'pkg.module:factory'")
    prefix, colon, rest = text.partition(":")
    if colon and prefix in external.KINDS:
        return ModelSource(prefix, f"{prefix}:{rest.strip()}", loaded=external.check(prefix, rest.strip()))
    if colon:
        if not prefix or not rest or "@" in text:
            raise SpecError(f"bad factory spec {text!r}; expected 'package.module:factory'")
        return ModelSource("factory", text, loaded=load_factory(text))
    name, sep, width_text = text.partition("@")
    entry = get_entry(name)
    width: float | None = 1.0 if entry.supports_width else None
    if sep:
        width = parse_width(width_text, text)
        if not entry.supports_width and width != 1.0:
            raise SpecError(f"{entry.name} has no width multiplier (got {text!r}); width applies to v1, v1-conv, v2")
    return ModelSource("zoo", entry.name, width)


def resolve_sources(specs: str | ModelSource | Sequence[str | ModelSource]) -> list[ModelSource]:
    """Resolve a comma-separated list (``"v1,v2,vgg16"``) or a sequence of specs, each model once (``v2,v2@1``: one
    ``v2``, as the gate keeps it); refuses an empty list."""
    if isinstance(specs, str):
        specs = [p.strip() for p in specs.split(",") if p.strip()]
    elif isinstance(specs, ModelSource):
        specs = [specs]
    if not specs:
        raise SpecError("no models given; expected comma-separated model specs such as v1,v2,vgg16")
    sources: dict[str, ModelSource] = {}
    for source in map(resolve_source, specs):
        sources.setdefault(source.label, source)
    return list(sources.values())


def parse_width(text: str, spec: str = "") -> float:
    try:
        width = float(text)
    except ValueError:
        raise SpecError(f"width in {spec or text!r} is not a number") from None
    if not math.isfinite(width) or width <= 0 or width > MAX_WIDTH:
        raise SpecError(f"width {text!r} is out of range; it must be > 0 and <= {MAX_WIDTH:g}")
    return width


def load_factory(path: str) -> Any:
    """Import ``package.module:factory`` (``factory`` may be dotted) and return the callable."""
    module_name, _, attr_path = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownModelError(f"cannot import module {module_name!r} for model spec {path!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # the module itself fails (SyntaxError, sys.exit...): one line, exit 2
        raise UnknownModelError(f"cannot import module {module_name!r} for model spec {path!r}: it "
                                f"{_failed(exc)}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UnknownModelError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise SpecError(f"{path!r} is not callable; it must be a function or class returning an nn.Module")
    return obj


def _failed(exc: BaseException) -> str:
    """How a user's code failed, in a few words: ``raised ValueError: ...`` or ``called sys.exit(3)``."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    return f"raised {type(exc).__name__}: {first_line(exc)}"


def _call_factory(path: str, factory: Any) -> nn.Module:
    from torch import nn

    try:
        model = factory()
    except (Exception, SystemExit) as exc:  # a user's factory can fail in any way; report it in one line
        raise AnalysisError(f"factory {path!r} {_failed(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise SpecError(f"factory {path!r} returned {type(model).__name__}, not an nn.Module")
    return model


def build_model(spec: str | ModelSource, *, num_classes: int = 1000, device: str | None = None) -> nn.Module:
    """Build the ``nn.Module`` a spec names, e.g. ``build_model("v2@0.75")`` or ``build_model("timm:resnet18")``.

    Args:
        spec: any spec ``resolve_source`` takes, or a ``ModelSource``.
        num_classes: classifier outputs (zoo models; torchvision's and timm's when not 1000).
        device: build directly on this device; ``"meta"`` builds without allocating weights.

    Returns:
        A new module in training mode, freshly initialised (no pretrained weights).
    """
    return resolve_source(spec).build(num_classes=num_classes, device=device)


_RENAMED = {"ModelSpec": "ModelSource", "parse_spec": "resolve_source", "parse_models": "resolve_sources"}


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        warnings.warn(f"mbcost.zoo.{name} is deprecated; use {_RENAMED[name]}", DeprecationWarning, stacklevel=2)
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module 'mbcost.zoo.spec' has no attribute {name!r}")
