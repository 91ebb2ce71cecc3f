"""The engine's per-op result types: one ``LayerCost`` per op call, the facts conventions read, uncounted ops.

Raw, exact numbers; rounding happens in render. ``mbcost.cost.result`` re-exports them with ``ModelCost``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CATEGORIES", "CategoryCost", "LayerCost", "LayerFacts", "Shape", "UnattributedParams", "UncountedOp",
           "UnpricedParams", "categorize"]

#: Layer categories, with the exact names used in JSON output.
CATEGORIES: tuple[str, ...] = ("conv", "dwconv", "pwconv", "linear", "other")

Shape = tuple[int, ...]


def categorize(kind: str, *, groups: int | None = None, in_channels: int | None = None,
               kernel: tuple[int, ...] | None = None) -> str:
    """Layer category of an op.

    ``dwconv``: groups == in_channels (> 1); ``pwconv``: 1x1 kernel, groups == 1; ``conv``:
    every other convolution (standard, kernel > 1, and grouped); ``linear``: matrix products;
    ``other``: everything else (BatchNorm, activations, pooling, adds).
    """
    if kind == "conv":
        if groups and groups > 1 and groups == in_channels:
            return "dwconv"
        if groups == 1 and kernel is not None and all(k == 1 for k in kernel):
            return "pwconv"
        return "conv"
    if kind in ("matmul", "attention"):
        return "linear"
    return "other"


@dataclass(frozen=True)
class LayerFacts:
    """What the counting conventions (``mbcost.cost.conventions``) read of an op's module beyond its
    shapes and cost: other counters charge by module type or by flags the paper's count ignores."""

    #: Whether the issuing module has no children (hook-based counters see leaves only).
    module_is_leaf: bool
    #: Norm layers: whether the op has a learned scale (``affine``); ``None`` for other kinds.
    affine: bool | None = None
    #: Average pooling: whether padded zeros count in the window's divisor; ``None`` otherwise.
    count_include_pad: bool | None = None
    #: Names of the ``torch.nn`` classes in the issuing module's MRO, most derived first
    #: (``("Conv2d", "_ConvNd", "Module")``): lets a convention follow rules keyed by module type; the first is
    #: the module's own class only when ``module_is_torch`` (a subclass may share its base's name).
    torch_bases: tuple[str, ...] = ()
    #: BatchNorm: whether it normalised with the batch's own statistics (train mode, or no running
    #: statistics), not its running ones; ``None`` for other kinds.
    training: bool | None = None
    #: Reductions: the dims as the call named them (``x.mean((2, 3))``: ``(2, 3)``; ``F.adaptive_avg_pool2d(x,
    #: 1)``: ``(-1, -2)``); ``None`` over all dims and for other kinds.
    dims: tuple[int, ...] | None = None
    #: The issuing module's class, qualified (``torch.nn.modules.linear.Linear``): counters that hook exact
    #: types (ptflops) tell it from a subclass of the same name.
    module_class: str = ""
    #: Binary ops: the second operand's rank (``None``: a number), e.g. the mask SDPA's math path adds.
    other_rank: int | None = None

    @property
    def module_is_torch(self) -> bool:
        """Whether the issuing module's class is one of torch.nn's own."""
        return self.module_class.startswith("torch.nn.")


@dataclass(frozen=True)
class LayerCost:
    """The cost of one op call of one module call, with its shapes.

    ``params`` are the parameters of the owning module, attributed to the first op the module
    issued (so that summing ``params`` over layers never counts a tensor twice).
    """

    name: str
    module: str
    module_type: str
    op: str
    kind: str
    category: str
    input_shape: Shape
    output_shape: Shape
    weight_shape: Shape | None
    kernel: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    padding: tuple[int, ...] | str | None
    dilation: tuple[int, ...] | None
    groups: int | None
    params: int
    macs: int
    bias_adds: int
    other_ops: int
    input_bytes: int
    output_bytes: int
    weight_bytes: int
    inplace: bool = False
    #: What the counting conventions read of the module (leaf, affine, pooling divisor, torch.nn bases).
    facts: LayerFacts = LayerFacts(module_is_leaf=True)
    #: Training (``mode="train"``): the op's gradient products and backward elementwise work.
    backward_macs: int = 0
    backward_elementwise_ops: int = 0

    @property
    def flops(self) -> int:
        """``2 * macs``: one multiply and one add per MAC."""
        return 2 * self.macs

    @property
    def elementwise_ops(self) -> int:
        """Work outside ``macs``: bias adds plus other elementwise ops."""
        return self.bias_adds + self.other_ops

    @property
    def bytes_moved(self) -> int:
        """Input activations read + weights read + output written (no cache reuse assumed)."""
        return self.input_bytes + self.weight_bytes + self.output_bytes

    @property
    def activation_bytes(self) -> int:
        """Bytes of the output this op writes (0 for an in-place op, which writes no new tensor)."""
        return 0 if self.inplace else self.output_bytes

    @property
    def arithmetic_intensity(self) -> float:
        """``(flops + elementwise_ops) / bytes_moved``, in FLOP per byte."""
        return (self.flops + self.elementwise_ops) / self.bytes_moved if self.bytes_moved else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(d.pop("facts"))  # flat in JSON, as before the facts had a type of their own
        d.update(flops=self.flops, elementwise_ops=self.elementwise_ops, bytes_moved=self.bytes_moved,
                 activation_bytes=self.activation_bytes, arithmetic_intensity=self.arithmetic_intensity)
        return d


@dataclass(frozen=True)
class CategoryCost:
    params: int = 0
    macs: int = 0


@dataclass(frozen=True)
class UncountedOp:
    """An op the engine has no formula for: reported, never silently dropped."""

    op: str
    module: str
    module_type: str
    calls: int


@dataclass(frozen=True)
class UnpricedParams:
    """The parameters of a module that ran but issued only ops without a formula (an ``nn.Embedding``'s
    lookup, listed in ``uncounted``): they belong to that module, never to ``unattributed_params``
    (parameters of modules the forward never ran). Shown as a row of their own, 0 MACs counted."""

    module: str
    module_type: str
    op: str
    params: int
    #: Records made before the module's first op: where its row stands in forward order.
    at: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "module_type": self.module_type, "op": self.op, "params": self.params}


@dataclass(frozen=True)
class UnattributedParams:
    """Parameters no op was attributed to, by the top module of a subtree none of whose modules issued an op
    in this forward (an auxiliary head that the eval forward skips, or a layer whose weights another
    module's ops read). They count in ``params``, in no layer."""

    module: str
    module_type: str
    params: int
