"""Typed results of the cost engine. They hold raw, exact numbers; rounding happens in render."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

# the per-op types live in layer_cost.py; imported from here as before
from mbcost.cost.layer_cost import (
    CATEGORIES,
    CategoryCost,
    LayerCost,
    LayerFacts,
    Shape,
    UnattributedParams,
    UncountedOp,
    UnpricedParams,
    categorize,
)

if TYPE_CHECKING:
    import pandas as pd

    from mbcost.inputs import InputSpec

__all__ = [
    "CATEGORIES", "CategoryCost", "LayerCost", "LayerFacts", "ModelCost", "Shape", "UnattributedParams", "UncountedOp",
    "UnpricedParams", "categorize",
]


@dataclass(frozen=True)
class ModelCost:
    """Analytic cost of one model on one set of inputs (the ``paper`` convention).

    ``input`` is ``(H, W)`` when the model gets one image, else the first input's full shape;
    ``inputs`` holds every input's shape and dtype. ``execution`` is ``meta`` (nothing ran) or
    ``real`` (a CPU forward with random inputs, for a data-dependent model: its counts depend on
    the data), with the reason in ``execution_note``.

    Example:
        >>> import mbcost
        >>> cost = mbcost.analyze("v1", input_size=224)
        >>> cost.params, cost.macs
        (4231976, 568740352)
    """

    name: str
    width: float | None
    input: tuple[int, ...]
    batch: int
    in_channels: int
    dtype: str
    dtype_bytes: int
    #: Unique parameter elements (each ``nn.Parameter`` once), frozen ones included; buffers excluded.
    #: ``trainable_params`` counts the ones with ``requires_grad``.
    params: int
    layers: tuple[LayerCost, ...]
    unattributed_params: int = 0
    #: Where they are: per subtree of modules that issued no op, its top module (``UnattributedParams``).
    unattributed: tuple[UnattributedParams, ...] = ()
    uncounted: tuple[UncountedOp, ...] = field(default_factory=tuple)
    inputs: tuple[InputSpec, ...] = ()
    execution: str = "meta"
    execution_note: str | None = None
    #: Elements in the model's buffers (BatchNorm running statistics...), the floating-point ones
    #: stored at ``dtype``...
    buffers: int = 0
    #: ...and, of these, the elements and bytes of the integer and boolean ones (BatchNorm's int64
    #: ``num_batches_tracked``), each at its own element size.
    nonfloat_buffers: int = 0
    nonfloat_buffer_bytes: int = 0
    #: Live activation bytes (inputs included) at the worst point of the forward, from tensor
    #: lifetimes (each freed after its last use; views and in-place ops share storage), and the layer
    #: where it happens. ``None`` after a real CPU run (lifetimes are traced on the meta device).
    peak_activation_bytes: int | None = None
    peak_op: str | None = None
    #: ``inference`` or ``train`` (a training step: forward, backward, optimizer update).
    mode: str = "inference"
    optimizer: str | None = None
    #: Trainable parameter elements (``requires_grad``), and the training step's activation peak.
    trainable_params: int = 0
    train_peak_activation_bytes: int | None = None
    train_peak_op: str | None = None
    #: Training: the parameters' gradients alive at the step's worst point (``None``: all of them).
    train_peak_grad_bytes: int | None = None
    #: Parameters of modules whose ops have no formula (embedding lookups), per module.
    unpriced_params: tuple[UnpricedParams, ...] = ()
    #: ``float32`` (every tensor at its dtype) or ``int8``: bytes as a runtime's int8 model holds them
    #: (``mbcost.cost.precision``: every byte figure, the layers' included; MACs are int8 MACs).
    precision: str = "float32"
    #: int8: the parameters' bytes, quantized (``precision.int8_weight_bytes``); ``None``: ``params x dtype_bytes``.
    quantized_weight_bytes: int | None = None

    @property
    def forward_macs(self) -> int:
        return self.macs

    @property
    def backward_macs(self) -> int:
        """Training: gradient MACs of convolutions and matrix products (``mbcost.cost.training``)."""
        return sum(layer.backward_macs for layer in self.layers)

    @property
    def backward_elementwise_ops(self) -> int:
        return sum(layer.backward_elementwise_ops for layer in self.layers)

    def _optimizer(self) -> Any:
        from mbcost.cost.training import OPTIMIZERS

        return None if self.optimizer is None else OPTIMIZERS[self.optimizer]

    @property
    def optimizer_ops(self) -> int | None:
        """Training: the optimizer's update ops, per trainable parameter element (``OPTIMIZERS``)."""
        opt = self._optimizer()
        return None if opt is None else opt.ops * self.trainable_params

    @property
    def optimizer_state_bytes(self) -> int | None:
        """Training: the optimizer's state tensors (``OPTIMIZERS``), one element per trainable weight each."""
        opt = self._optimizer()
        return None if opt is None else opt.state * self.trainable_params * self.dtype_bytes

    @property
    def train_peak_memory_bytes(self) -> int | None:
        """Training: weights + optimizer state + the activations and the parameters' gradients alive at the
        step's worst point (the gradients exist from their layer's backward on)."""
        if self.train_peak_activation_bytes is None or self.optimizer_state_bytes is None:
            return None
        return (self.weight_bytes + self.buffer_bytes + self.train_grad_bytes
                + self.optimizer_state_bytes + self.train_peak_activation_bytes)

    @property
    def train_grad_bytes(self) -> int:
        """Training: the parameters' gradients alive at the step's worst point (all of them unless known)."""
        if self.train_peak_grad_bytes is not None:
            return self.train_peak_grad_bytes
        return self.trainable_params * self.dtype_bytes

    @property
    def input_label(self) -> str:
        """``224x224`` for an image, else each input's full shape (``1x3x16x112x112``)."""
        from mbcost.inputs import Inputs

        if not self.inputs:
            return "x".join(str(d) for d in self.input)
        return Inputs(args=tuple(i for i in self.inputs if not i.name),
                      kwargs=tuple(i for i in self.inputs if i.name)).label

    @property
    def input_bytes(self) -> int:
        """Bytes of every input, each at its own dtype."""
        return sum(i.nbytes for i in self.inputs)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> int:
        """``2 * macs``."""
        return 2 * self.macs

    @property
    def bias_adds(self) -> int:
        return sum(layer.bias_adds for layer in self.layers)

    @property
    def other_ops(self) -> int:
        return sum(layer.other_ops for layer in self.layers)

    @property
    def elementwise_ops(self) -> int:
        return self.bias_adds + self.other_ops

    @property
    def weight_bytes(self) -> int:
        """Bytes of the parameters: ``params x dtype_bytes``, or at int8 the quantized weights with their
        scales and zero points (``mbcost.cost.precision``)."""
        return self.params * self.dtype_bytes if self.quantized_weight_bytes is None else self.quantized_weight_bytes

    @property
    def activation_bytes(self) -> int:
        """Sum of the bytes of every activation the forward pass writes (input excluded)."""
        return sum(layer.activation_bytes for layer in self.layers)

    @property
    def largest_op_bytes(self) -> int:
        """Largest input + output of any single op: a lower bound on the activation memory a
        forward pass needs at once (``peak_activation_bytes`` is the lifetime-based figure)."""
        return max((layer.input_bytes + layer.output_bytes for layer in self.layers), default=0)

    @property
    def buffer_bytes(self) -> int:
        """Bytes of every buffer: floating-point ones at ``dtype`` (as the weights), the others at their own."""
        return (self.buffers - self.nonfloat_buffers) * self.dtype_bytes + self.nonfloat_buffer_bytes

    @property
    def peak_memory_bytes(self) -> int | None:
        """Weights (parameters and buffers) + live activations at the worst point of the forward."""
        if self.peak_activation_bytes is None:
            return None
        return self.weight_bytes + self.buffer_bytes + self.peak_activation_bytes

    @property
    def categories(self) -> dict[str, CategoryCost]:
        params = dict.fromkeys(CATEGORIES, 0)
        macs = dict.fromkeys(CATEGORIES, 0)
        for layer in self.layers:
            params[layer.category] += layer.params
            macs[layer.category] += layer.macs
        params["other"] += self.unattributed_params + sum(u.params for u in self.unpriced_params)
        return {c: CategoryCost(params=params[c], macs=macs[c]) for c in CATEGORIES}

    def in_forward_order(self) -> list[LayerCost | UnpricedParams]:
        """The layer records with the ``unpriced_params`` rows each where its module first ran."""
        rows: list[LayerCost | UnpricedParams] = []
        pending = sorted(self.unpriced_params, key=lambda u: u.at)
        k = 0
        for i, layer in enumerate(self.layers):
            while k < len(pending) and pending[k].at <= i:
                rows.append(pending[k])
                k += 1
            rows.append(layer)
        rows += pending[k:]
        return rows

    @property
    def uncounted_calls(self) -> dict[str, int]:
        """Calls of each op the engine has no formula for, summed over the modules that issued it, by op name."""
        calls: dict[str, int] = {}
        for u in self.uncounted:
            calls[u.op] = calls.get(u.op, 0) + u.calls
        return dict(sorted(calls.items()))

    @property
    def label(self) -> str:
        if self.width is None or self.width == 1.0:
            return self.name
        return f"{self.name}@{self.width:g}"

    def to_dict(self, *, layers: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "width": self.width,
            "input": list(self.input),
            "inputs": [i.to_dict() for i in self.inputs],
            "execution": self.execution,
            "execution_note": self.execution_note,
            "batch": self.batch,
            "in_channels": self.in_channels,
            "dtype": self.dtype,
            "precision": self.precision,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "elementwise_ops": self.elementwise_ops,
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes,
            "peak_memory_bytes": self.peak_memory_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "peak_op": self.peak_op,
            "largest_op_bytes": self.largest_op_bytes,
            "categories": {c: asdict(v) for c, v in self.categories.items()},
            "uncounted": [asdict(u) for u in self.uncounted],
        }
        d.update(self.train_fields())
        if layers:
            d["layers"] = [layer.to_dict() for layer in self.layers]
            d["unpriced_params"] = [u.to_dict() for u in self.unpriced_params]
            d["unattributed"] = [asdict(u) for u in self.unattributed]
        return d

    def train_fields(self) -> dict[str, Any]:
        """A training step's figures (``mode="train"``), by their JSON and CSV names; empty for inference."""
        if self.mode != "train":
            return {}
        return dict(mode=self.mode, optimizer=self.optimizer, forward_macs=self.forward_macs,
                    backward_macs=self.backward_macs, backward_elementwise_ops=self.backward_elementwise_ops,
                    optimizer_ops=self.optimizer_ops, optimizer_state_bytes=self.optimizer_state_bytes,
                    trainable_params=self.trainable_params, train_peak_memory_bytes=self.train_peak_memory_bytes,
                    train_peak_activation_bytes=self.train_peak_activation_bytes, train_peak_op=self.train_peak_op)

    def to_frame(self) -> pd.DataFrame:
        """One row per layer record, raw integers, columns named with their units."""
        import pandas as pd

        rows = [layer.to_dict() for layer in self.layers]
        columns = list(LayerCost.__dataclass_fields__) + [
            "flops", "elementwise_ops", "bytes_moved", "activation_bytes", "arithmetic_intensity"]
        return pd.DataFrame(rows, columns=columns)

    def _repr_html_(self) -> str | None:
        """In Jupyter: ``mbcost compare``'s table for this model (``mbcost.render.html``)."""
        from mbcost import display

        return display.html(self)
