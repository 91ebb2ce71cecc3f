"""Why a counter's total differs from the analytic MACs, every unit accounted for.

``reconcile(cost, counter_result)`` re-reads the engine's records under the counter's convention
(:mod:`mbcost.cost.conventions`). For each record the difference between what the counter charges
and the paper's MACs is attributed to the record's kind and the reason the convention gives
(BatchNorm counted, 2 FLOPs per MAC, an op the counter does not see, nn.MultiheadAttention's fused
fast path...), so the components sum exactly to ``total - analytic``. If the preset does not
reproduce the library's total, the remainder is an ``unexplained`` component and ``exact`` is False: it is never hidden.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mbcost.cost.conventions import ConventionCost, SkippedOp, apply_convention
from mbcost.cost.result import CATEGORIES, UncountedOp

if TYPE_CHECKING:
    from torch import nn

    from mbcost.cost.result import ModelCost
    from mbcost.counters.base import CounterResult
    from mbcost.zoo.spec import ModelSource

__all__ = ["UNEXPLAINED", "Component", "Reconciliation", "reconcile", "reconcile_model"]

UNEXPLAINED = "unexplained"


@dataclass(frozen=True)
class Component:
    """One cause of difference: a layer kind (or the rule's own name for it, e.g. ``multi_head_attention``)
    and the convention's reason, with its exact amount in the counter's unit."""

    kind: str
    reason: str
    amount: int | float
    calls: int
    categories: dict[str, int | float] = field(default_factory=dict)


@dataclass(frozen=True)
class Reconciliation:
    """A counter's total against the analytic MACs, split into components that sum to the difference."""

    counter: str
    model: str
    input: tuple[int, int]
    batch: int
    analytic: int
    total: int | float
    unit: str
    preset_total: int
    components: tuple[Component, ...]
    skipped: tuple[SkippedOp, ...]
    unsupported: dict[str, int]
    uncounted: tuple[UncountedOp, ...]
    version: str
    seconds: float

    @property
    def difference(self) -> int | float:
        """``total - analytic``."""
        return self.total - self.analytic

    @property
    def unexplained(self) -> int | float:
        """What the convention preset does not reproduce (0 when it matches the library exactly)."""
        return self.total - self.preset_total

    @property
    def exact(self) -> bool:
        """True when the preset equals the library's total, so every unit is explained."""
        return self.unexplained == 0 and sum(c.amount for c in self.components) == self.difference

    @property
    def by_category(self) -> dict[str, int | float]:
        """The difference per layer category (``unexplained`` as its own key when non-zero)."""
        out: dict[str, int | float] = dict.fromkeys(CATEGORIES, 0)
        for c in self.components:
            if c.kind == UNEXPLAINED:
                out[UNEXPLAINED] = c.amount
            for cat, v in c.categories.items():
                out[cat] += v
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "counter": self.counter, "version": self.version, "model": self.model, "input": list(self.input),
            "batch": self.batch, "unit": self.unit, "analytic": self.analytic, "total": self.total,
            "difference": self.difference, "preset_total": self.preset_total, "unexplained": self.unexplained,
            "exact": self.exact, "components": [asdict(c) for c in self.components],
            "by_category": self.by_category, "skipped": [asdict(s) for s in self.skipped],
            "unsupported": dict(self.unsupported), "uncounted": [asdict(u) for u in self.uncounted],
            "seconds": self.seconds,
        }

    def _repr_html_(self) -> str | None:
        """In Jupyter: ``mbcost reconcile``'s table for this counter (``mbcost.render.html``)."""
        from mbcost import display

        return display.html(self)


def reconcile(cost: ModelCost, result: CounterResult, convention: str | None = None) -> Reconciliation:
    """Split ``result.total - cost.macs`` into causes.

    Args:
        cost: the engine's analysis (its ``macs`` are the paper convention, the reference).
        result: the counter's own count of the same model, input and batch.
        convention: the preset that models the counter (default: the counter's own).

    Returns:
        A ``Reconciliation`` whose ``components`` sum exactly to ``total - analytic``.

    Example:
        >>> import mbcost
        >>> from mbcost.counters import measure
        >>> rec = reconcile(mbcost.analyze("v2"), measure("fvcore", "v2"))
        >>> rec.exact, [c.kind for c in rec.components]
        (True, ['batchnorm', 'global_pool'])
    """
    preset: ConventionCost = apply_convention(cost, convention or result.counter)
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in preset.records:
        diff = r.amount - r.paper_macs
        if not diff:
            continue
        g = groups.setdefault((r.component, r.reason), [0, 0, dict.fromkeys(CATEGORIES, 0)])
        g[0] += diff
        g[1] += 1
        g[2][r.category] += diff
    components = [Component(kind=k[0], reason=k[1], amount=v[0], calls=v[1],
                            categories={c: n for c, n in v[2].items() if n})
                  for k, v in groups.items() if v[0]]
    unexplained = result.total - preset.total
    if unexplained:
        hint = ""
        if cost.uncounted:
            ops = ", ".join(f"{op} x{calls}" for op, calls in cost.uncounted_calls.items())
            hint = f"; ops the engine has no formula for: {ops}"
        components.append(Component(kind=UNEXPLAINED, amount=unexplained, calls=0, reason=(
            f"the {preset.convention} preset gives {preset.total:,}, the library {result.total:,}{hint}")))
    return Reconciliation(
        counter=result.counter, model=cost.label, input=cost.input, batch=cost.batch, analytic=cost.macs,
        total=result.total, unit=result.unit, preset_total=preset.total, components=tuple(components),
        skipped=tuple(preset.skipped), unsupported=dict(result.unsupported), uncounted=tuple(cost.uncounted),
        version=result.version, seconds=result.seconds)


def reconcile_model(
    model: str | ModelSource | nn.Module,
    inputs: Any = None,
    batch: int = 1,
    counters: list[str] | None = None,
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    name: str | None = None,
    input_size: Any = None,
) -> tuple[ModelCost, list[Reconciliation]]:
    """Analyse ``model`` on ``inputs`` (as ``mbcost.analyze``; ``input_size`` is their former name, deprecated),
    run each counter on it and reconcile them (default: every counter)."""
    from mbcost.cost.analyze import analyze
    from mbcost.counters.base import COUNTERS, measure_many
    from mbcost.inputs import renamed_inputs
    from mbcost.zoo.spec import ModelSource, resolve_source

    if isinstance(model, (str, ModelSource)):
        model = resolve_source(model)
    cost = analyze(model, renamed_inputs(inputs, input_size), batch, num_classes=num_classes,
                   in_channels=in_channels, name=name)
    results = measure_many(list(counters or COUNTERS), model, cost.inputs, batch, num_classes=num_classes,
                           name=name or cost.label)
    return cost, [reconcile(cost, r) for r in results]
