"""What every counter adapter shares: the typed result, the registry of adapters, running a counter.

Each adapter (``fvcore_counter``, ``thop_counter``, ``torch_counter``, ``ptflops_counter``,
``ptflops_aten_counter``) runs its library on a real CPU module in eval mode with a real input
tensor and returns the library's own figures, untouched, in a ``CounterResult``. The libraries
are optional (``pip install 'mbcost[counters]'``)
and imported only here, when a count is asked for.
"""

from __future__ import annotations

import contextlib
import copy as copy_module
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mbcost.counters import fvcore_counter, ptflops_aten_counter, ptflops_counter, thop_counter, torch_counter
from mbcost.counters.adapter import CounterUnavailable, RawCount, require
from mbcost.errors import AnalysisError, MbcostError, SpecError, first_line
from mbcost.inputs import FLOAT_DTYPES, renamed_inputs, resolve_inputs
from mbcost.io import quiet

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mbcost.inputs import Inputs
    from mbcost.zoo.spec import ModelSource

__all__ = [
    "ADAPTERS", "COUNTERS", "CounterResult", "CounterUnavailable", "RawCount", "eval_mode", "measure", "measure_many",
    "parse_counters", "require",
]

#: The counters by name, in display order: the one list (the CLI's help and ``parse_counters`` read it). Each
#: adapter module declares its name and what ``mbcost.counters.adapter`` says.
ADAPTERS: dict[str, ModuleType] = {a.NAME: a for a in (
    fvcore_counter, thop_counter, torch_counter, ptflops_counter, ptflops_aten_counter)}
COUNTERS: tuple[str, ...] = tuple(ADAPTERS)


@dataclass(frozen=True)
class CounterResult:
    """One library's count of one model, as the library reports it.

    ``total`` is the library's own number (thop's float is kept as an int when it is whole);
    ``unit`` says what it counts. ``by_op`` is the library's breakdown (fvcore: by operator,
    torch: by ATen op, thop: by module type), ``unsupported`` what the library says it could
    not count (fvcore: unsupported ops and calls; thop: module types without a rule and how
    many modules). ``seconds`` times the library call alone.
    """

    counter: str
    model: str
    input: tuple[int, ...]
    batch: int
    total: int | float
    unit: str
    by_op: dict[str, int | float]
    unsupported: dict[str, int]
    version: str
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input"] = list(self.input)
        d["notes"] = list(self.notes)
        return d


def parse_counters(text: str) -> list[str]:
    """``"fvcore,thop"`` -> ``["fvcore", "thop"]``; ``"all"`` -> every counter. Refuses unknown names."""
    parts = [p.strip().lower() for p in (text or "").split(",") if p.strip()]
    if not parts:
        raise SpecError(f"no counters given; choose from {', '.join(COUNTERS)} or 'all'")
    if "all" in parts:
        return list(COUNTERS)
    unknown = [p for p in parts if p not in COUNTERS]
    if unknown:
        raise SpecError(f"unknown counter {unknown[0]!r}; choose from {', '.join(COUNTERS)} or 'all'")
    return list(dict.fromkeys(parts))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and restore every module's training flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _inputs(model: nn.Module, inputs: Inputs) -> tuple[torch.Tensor, ...]:
    """Zero tensors of ``inputs``' shapes on the model's device: floating ones in the model's dtype."""
    import torch

    if inputs.kwargs:
        raise SpecError("the counters take positional inputs only (fvcore and thop have no keyword inputs); "
                        "drop NAME= from --input")
    first = next(iter(model.parameters()), None)
    if first is not None and first.is_meta:
        raise AnalysisError("counters run the real forward pass; the model's parameters are on the meta device")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    device = first.device if first is not None else torch.device("cpu")
    return tuple(torch.zeros(i.shape, dtype=dtype if i.dtype in FLOAT_DTYPES else getattr(torch, i.dtype),
                             device=device) for i in inputs.args)


def measure(
    counter: str,
    model: str | ModelSource | nn.Module,
    inputs: Any = None,
    batch: int = 1,
    *,
    in_channels: int = 3,
    num_classes: int = 1000,
    name: str | None = None,
    copy: bool | None = None,
    input_size: Any = None,
) -> CounterResult:
    """Run ``counter`` (a name of ``COUNTERS``: ``"fvcore"``, ``"torch"``...) on a real module.

    Args:
        counter: which library.
        model: a spec or ``ModelSource`` (built fresh on the CPU), or a module.
        inputs: ``224``, ``"224x160"``, ``(H, W)``, or any positional input form ``mbcost.analyze`` takes
            (full shapes, several inputs). Default: the source's own, else 224.
        batch: batch size of the image shorthand.
        in_channels: input channels.
        num_classes: classifier outputs of zoo models.
        name: label of a module passed directly (default: its class name).
        copy: run on a deep copy. Default: only for a module passed by the caller and a counter that
            changes the module it counts (thop adds attributes and hooks).
        input_size: the former name of ``inputs`` (deprecated).

    Returns:
        A ``CounterResult`` with the library's total as it reports it.

    Raises:
        CounterUnavailable: the library is not installed.
        AnalysisError: the library failed on this model.

    Example:
        >>> measure("torch", "v2", 224).total
        601548544
    """
    return measure_many([counter], model, renamed_inputs(inputs, input_size), batch, in_channels=in_channels,
                        num_classes=num_classes, name=name, copy=copy)[0]


def measure_many(
    counters: list[str],
    model: str | ModelSource | nn.Module,
    inputs: Any = None,
    batch: int = 1,
    *,
    in_channels: int = 3,
    num_classes: int = 1000,
    name: str | None = None,
    copy: bool | None = None,
    input_size: Any = None,
) -> list[CounterResult]:
    """``measure`` for several counters, building a spec's module once. Same arguments."""
    import torch
    from torch import nn

    from mbcost.zoo.spec import resolve_source

    for counter in counters:
        if counter not in ADAPTERS:
            raise SpecError(f"unknown counter {counter!r}; choose from {', '.join(COUNTERS)}")
        ADAPTERS[counter].check_available()
    value = renamed_inputs(inputs, input_size)
    owned = not isinstance(model, nn.Module)
    if owned:
        source = resolve_source(model)
        module, label = source.build(num_classes=num_classes), source.label
        inputs = source.inputs(module, value, batch=batch, in_channels=in_channels)
    else:
        module, label = model, name or type(model).__name__
        inputs = resolve_inputs(224 if value is None else value, batch=batch, in_channels=in_channels)
    size = inputs.image_size or inputs.first.shape
    x = _inputs(module, inputs)
    results = []
    for counter in counters:
        adapter = ADAPTERS[counter]
        target = module
        if copy if copy is not None else (not owned and adapter.MUTATES):
            target = copy_module.deepcopy(module)
        with eval_mode(target), torch.no_grad(), quiet():
            start = time.perf_counter()
            try:
                raw = adapter.count(target, x)
            except MbcostError:
                raise
            except Exception as exc:  # a library can fail in any way on a user's model: one line, typed
                raise AnalysisError(f"{counter} failed on {label} at {inputs.label}: {first_line(exc)}") from exc
            seconds = time.perf_counter() - start
        total = raw.total
        if isinstance(total, float) and total.is_integer():
            total = int(total)
        results.append(CounterResult(
            counter=counter, model=label, input=size, batch=inputs.batch, total=total, unit=adapter.UNIT,
            by_op=raw.by_op, unsupported=raw.unsupported, version=raw.version, seconds=seconds, notes=tuple(raw.notes)))
    return results
