"""What a model is fed: parsing every input form into ``Inputs`` (shapes and dtypes, never data).

``resolve_inputs`` takes an image size (``224``, ``"224x160"``), a full shape (a tuple of three or more
ints, a list, ``torch.Size``, ``"1x3x16x112x112"``, ``"[1,128]"``), a tensor (its shape and dtype), a
tuple of these (positional inputs) or a dict (keyword inputs); text may end in ``:DTYPE`` and start with
``NAME=`` (docs/models-and-inputs.md). The batch completes the image shorthand only: a full shape carries
its own, and a different batch given with one is refused, never applied by rewriting the shape.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

from mbcost.errors import SpecError

__all__ = [
    "FLOAT_DTYPES", "INPUT_DTYPES", "MAX_BATCH", "InputSpec", "Inputs", "check_dtype", "parse_image_size",
    "parse_input_text", "parse_size_or_shape", "renamed_inputs", "resolve_inputs",
]

MAX_INPUT = 65536
MAX_BATCH = 1 << 20
#: Element types an input may have, with their size in bytes.
INPUT_DTYPES: dict[str, int] = {
    "float32": 4, "float16": 2, "bfloat16": 2, "float64": 8,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class InputSpec:
    """One input tensor: its full shape, element type and, for a keyword input, its name."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    name: str | None = None
    #: A 4-D input laid out channels-last (a tensor given so): convolution keeps that layout.
    channels_last: bool = False
    #: The input needs a gradient (a tensor given with ``requires_grad=True``): in a training step
    #: (``mode="train"``) the backward then computes it too.
    requires_grad: bool = False

    def __post_init__(self) -> None:
        if self.requires_grad and self.dtype not in FLOAT_DTYPES:
            raise SpecError(f"an input of dtype {self.dtype} cannot require a gradient; only floating-point ones can")

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * INPUT_DTYPES[self.dtype]

    @property
    def is_image(self) -> bool:
        """A floating ``N x C x H x W`` tensor."""
        return len(self.shape) == 4 and self.dtype in FLOAT_DTYPES

    @property
    def label(self) -> str:
        text = "x".join(str(d) for d in self.shape) or "scalar"
        if self.dtype not in FLOAT_DTYPES:
            text += f":{self.dtype}"
        return f"{self.name}={text}" if self.name else text

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"shape": list(self.shape), "dtype": self.dtype}
        if self.name:
            d["name"] = self.name
        if self.channels_last:
            d["memory_format"] = "channels_last"
        if self.requires_grad:
            d["requires_grad"] = True
        return d


@dataclass(frozen=True)
class Inputs:
    """Everything a forward call gets: positional inputs, then keyword inputs (each named)."""

    args: tuple[InputSpec, ...]
    kwargs: tuple[InputSpec, ...] = ()

    @property
    def all(self) -> tuple[InputSpec, ...]:
        return self.args + self.kwargs

    @property
    def first(self) -> InputSpec:
        return (self.args or self.kwargs)[0]

    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(H, W)`` when the model gets exactly one image; else ``None``."""
        if len(self.all) == 1 and self.first.is_image:
            return self.first.shape[2], self.first.shape[3]
        return None

    @property
    def batch(self) -> int:
        """The leading dimension of the first input (1 for a scalar input)."""
        shape = self.first.shape
        return shape[0] if shape else 1

    @property
    def nbytes(self) -> int:
        return sum(i.nbytes for i in self.all)

    @property
    def label(self) -> str:
        """``224x224`` for an image, else every input's full shape (``1x3x16x112x112``), ``+``-joined."""
        size = self.image_size
        if size is not None:
            return f"{size[0]}x{size[1]}"
        return " + ".join(i.label for i in self.all)

    def to_list(self) -> list[dict[str, Any]]:
        return [i.to_dict() for i in self.all]


def check_dtype(dtype: str, what: str = "input dtype") -> str:
    if dtype not in INPUT_DTYPES:
        raise SpecError(f"unknown {what} {dtype!r}; choose one of {', '.join(INPUT_DTYPES)}")
    return dtype


def _check_shape(shape: Sequence[Any], text: Any) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise SpecError(f"bad input shape {text!r}; every dimension must be an integer") from None
    if any(isinstance(d, bool) for d in shape) or not all(0 < d <= MAX_INPUT * 64 for d in dims):
        raise SpecError(f"input shape {text!r} is out of range; every dimension must be in 1..{MAX_INPUT * 64}")
    if prod(dims) > (1 << 48):
        raise SpecError(f"input shape {text!r} has more than 2^48 elements")
    return dims


def parse_image_size(value: int | str | Sequence[int]) -> tuple[int, int]:
    """``224`` or ``"224"`` -> (224, 224); ``"224x160"`` or ``(224, 160)`` -> (224, 160) (height x width)."""
    if isinstance(value, bool):
        raise SpecError(f"bad input size {value!r}")
    if isinstance(value, int):
        h = w = value
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        h, w = value
    else:
        parts = str(value).strip().lower().split("x")
        try:
            if len(parts) > 2:
                raise ValueError
            h, w = int(parts[0]), int(parts[-1])  # "224" is 224x224
        except ValueError:
            raise SpecError(f"bad input size {value!r}; expected a number such as 224 or HxW such as 224x160") from None
    if not (isinstance(h, int) and isinstance(w, int) and 0 < h <= MAX_INPUT and 0 < w <= MAX_INPUT):
        raise SpecError(f"input size {h}x{w} is out of range (1..{MAX_INPUT})")
    return h, w


def _dims(body: str, raw: Any) -> list[str]:
    """``"1x3x224x224"`` -> its dimensions as text; refuses anything but digits between the ``x``."""
    parts = body.strip().lower().split("x")
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        raise SpecError(f"bad input size {raw!r}; expected 224, HxW (224x160) or a full shape (1x3x16x112x112)")
    return parts


def parse_size_or_shape(value: Any) -> tuple[int, ...]:
    """One model input as a tuple: ``224``, ``"224x160"`` or ``[224, 160]`` -> ``(H, W)`` (an image);
    three or more numbers (``"1x3x16x112x112"``, ``[1, 3, 16, 112, 112]``) -> that full shape."""
    if isinstance(value, (list, tuple)) and len(value) > 2 and all(type(v) is int for v in value):
        return _check_shape(value, value)
    if isinstance(value, str) and len(value.strip().lower().split("x")) > 2:
        return _check_shape(_dims(value, value), value)
    return parse_image_size(value)


def parse_input_text(text: str, *, batch: int = 1, in_channels: int = 3, dtype: str = "float32") -> InputSpec:
    """One ``--input`` value: ``[NAME=]SIZE_OR_SHAPE[:DTYPE]`` (see the module docstring)."""
    raw = str(text).strip()
    name: str | None = None
    body = raw
    if "=" in body:
        name, _, body = body.partition("=")
        name = name.strip()
        if not _NAME.match(name):
            raise SpecError(f"bad input name {name!r} in {raw!r}; expected NAME=SHAPE such as mask=1x128:int64")
    if ":" in body:
        body, _, dt = body.rpartition(":")
        dtype = check_dtype(dt.strip().lower())
    body = body.strip().lower()
    if not body:
        raise SpecError(f"empty input spec {raw!r}; expected 224, HxW (224x160) or a full shape (1x3x16x112x112)")
    if body[0] in "[(" and body[-1] in ")]":
        parts = [p for p in re.split(r"[,\s]+", body[1:-1]) if p]
        if not parts:
            raise SpecError(f"empty shape in {raw!r}")
        return InputSpec(_check_shape(parts, raw), dtype, name)
    parts = _dims(body, raw)
    if len(parts) >= 3 or (dtype not in FLOAT_DTYPES):
        return InputSpec(_check_shape(parts, raw), dtype, name)
    return InputSpec((batch, in_channels, *parse_image_size(body)), dtype, name)


def _one(value: Any, batch: int, in_channels: int, dtype: str, name: str | None) -> InputSpec:
    torch_type = type(value).__module__.split(".")[0] == "torch"
    if torch_type and hasattr(value, "dtype") and hasattr(value, "shape"):  # a tensor: shape and dtype, no data
        dt = str(value.dtype).removeprefix("torch.")
        if dt not in INPUT_DTYPES:
            raise SpecError(f"input tensor of dtype {dt} is not supported; use one of {', '.join(INPUT_DTYPES)}")
        import torch

        channels_last = value.dim() == 4 and not value.is_contiguous() \
            and value.is_contiguous(memory_format=torch.channels_last)
        return InputSpec(tuple(int(d) for d in value.shape), dt, name, channels_last, bool(value.requires_grad))
    if torch_type and isinstance(value, tuple):  # torch.Size
        return InputSpec(_check_shape(value, value), dtype, name)
    if isinstance(value, str):
        spec = parse_input_text(value, batch=batch, in_channels=in_channels, dtype=dtype)
        return InputSpec(spec.shape, spec.dtype, name or spec.name)
    if isinstance(value, bool):
        raise SpecError(f"bad input {value!r}")
    if isinstance(value, int):
        return InputSpec((batch, in_channels, *parse_image_size(value)), dtype, name)
    if isinstance(value, (list, tuple)) and value and all(isinstance(d, int) for d in value):
        if isinstance(value, tuple) and len(value) == 2:  # (H, W); a list is a full shape
            return InputSpec((batch, in_channels, *parse_image_size(value)), dtype, name)
        return InputSpec(_check_shape(value, value), dtype, name)
    raise SpecError(f"bad input {value!r}; expected 224, 'HxW', a full shape, a tensor, a tuple or a dict of these")


def resolve_inputs(value: Any = 224, *, batch: int = 1, in_channels: int = 3, dtype: str = "float32") -> Inputs:
    """Parse any accepted input form into ``Inputs``.

    Args:
        value: see the module docstring. ``batch``, ``in_channels`` and ``dtype`` complete the
            image shorthand (``224``, ``"HxW"``) and are the defaults of text specs. A full shape (or a
            tensor) carries its own batch: a ``batch`` other than 1 must then equal its leading dimension.

    Raises:
        SpecError: anything that does not parse, out-of-range sizes, unknown dtypes, a ``batch`` other
            than 1 that differs from a full shape's leading dimension.

    Example:
        >>> resolve_inputs((1, 3, 16, 112, 112)).label
        '1x3x16x112x112'
        >>> resolve_inputs(["1x128:int64", "mask=1x128:int64"]).to_list()[1]
        {'shape': [1, 128], 'dtype': 'int64', 'name': 'mask'}
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise SpecError(f"batch must be an integer in 1..{MAX_BATCH} (got {batch!r})")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise SpecError(f"in_channels must be >= 1 (got {in_channels!r})")
    check_dtype(dtype)
    return _check_batch(_resolve(value, batch, in_channels, dtype), batch)


def _check_batch(inputs: Inputs, batch: int) -> Inputs:
    """Refuse a ``batch`` other than 1 that a full shape (a tensor, an ``InputSpec``) would silently override."""
    if batch == 1:
        return inputs
    for spec in inputs.all:
        lead = spec.shape[0] if spec.shape else 1
        if lead != batch:
            shape = "x".join(str(d) for d in spec.shape) or "a scalar"
            wanted = "x".join(str(d) for d in (batch, *spec.shape[1:])) if spec.shape else ""
            fix = f"give the shape {wanted}" if wanted else "leave the batch at 1"
            raise SpecError(
                f"batch {batch} conflicts with the full shape {shape}: a full shape carries its own batch (its "
                f"leading dimension, {lead}); {fix}, or use the batch with an image size (224, HxW) only")
    return inputs


def _resolve(value: Any, batch: int, in_channels: int, dtype: str) -> Inputs:
    if isinstance(value, Inputs):
        return value
    if isinstance(value, InputSpec):
        value = [value]
    if isinstance(value, Mapping):
        if not value:
            raise SpecError("no inputs given")
        kwargs = []
        for key, v in value.items():
            if not isinstance(key, str) or not _NAME.match(key):
                raise SpecError(f"bad keyword input name {key!r}")
            kwargs.append(_one(v, batch, in_channels, dtype, key))
        return Inputs(args=(), kwargs=tuple(kwargs))
    several = isinstance(value, (tuple, list)) and not (value and all(isinstance(d, int) for d in value))
    items = list(value) if several else [value]
    if not items:
        raise SpecError("no inputs given")
    specs = [i if isinstance(i, InputSpec) else _one(i, batch, in_channels, dtype, None) for i in items]
    args = tuple(s for s in specs if s.name is None)
    kwargs = tuple(s for s in specs if s.name is not None)
    if len({s.name for s in kwargs}) != len(kwargs):
        raise SpecError("a keyword input is given twice")
    return Inputs(args=args, kwargs=kwargs)


def renamed_inputs(inputs: Any, input_size: Any) -> Any:
    """``inputs``, or the value given under its former name ``input_size`` (with a ``DeprecationWarning``)."""
    if input_size is None:
        return inputs
    if inputs is not None:
        raise SpecError("give inputs or input_size, not both")
    warnings.warn("input_size is deprecated; pass inputs", DeprecationWarning, stacklevel=3)
    return input_size
