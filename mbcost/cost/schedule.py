"""Which activations must exist whole: the MobileNetV2 paper's memory claim, over an analysed model.

Sandler et al. 2018 ("MobileNetV2", section "Memory efficient inference", Table 3) count the memory
an inference needs as the largest tensor that has to be *materialized*: held whole at once. Two
schedules are read from a ``ModelCost`` (nothing is run again):

* ``materialized``: every op output, and the model input, exists whole. The largest tensor is the
  largest of them; the live peak is the engine's ``peak_activation_bytes`` (tensor lifetimes).
* ``streamed``: every inverted-residual block (a module whose type is named ``InvertedResidual``:
  the zoo's and torchvision's) is computed in slices along the spatial axes, so the tensors made
  inside it (the expanded ``t x`` wide ones) never exist whole: only the block's input and its final
  output do. The ops before the first block (the stem) are streamed together with that block, so
  their outputs are not whole either. Ops outside blocks are materialized as before.

The streamed live peak is an estimate: the largest input + output of a streamed block (or of a
materialized op), the slice buffers of the inner tensors not counted. A model without streamable
blocks has the same figures under both schedules, its live peak included.

Per spatial resolution (the ``H x W`` of 4-D ``N x C x H x W`` tensors; the pooled ``1 x 1`` counts),
both schedules give the widest tensor held whole and its bytes: the rows of the paper's Table 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mbcost.cost.result import LayerCost, ModelCost, Shape

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from torch import nn

    from mbcost.zoo.spec import ModelSource

#: Module class names whose blocks are computed in streamed slices.
STREAMABLE_TYPES: frozenset[str] = frozenset({"InvertedResidual"})


@dataclass(frozen=True)
class ResolutionRow:
    """The widest tensor held whole at one spatial size, under each schedule.

    ``bytes`` is the largest such tensor's size (batch included); ``streamed_max_channels`` and
    ``streamed_bytes`` are 0 when no tensor of this size is held whole under streaming.
    """

    size: tuple[int, int]
    max_channels: int
    bytes: int
    streamed_max_channels: int
    streamed_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "max_channels": self.max_channels, "bytes": self.bytes,
                "streamed_max_channels": self.streamed_max_channels, "streamed_bytes": self.streamed_bytes}


@dataclass(frozen=True)
class MemorySchedule:
    """Activation memory of one model under the materialized and the streamed schedules.

    Bytes are exact, at ``dtype`` (the model input at its own dtype). ``peak_activation_bytes`` is
    ``None`` after a real CPU run (lifetimes are traced on the meta device only), and so is the
    streamed peak of a model without streamable blocks. ``streamed_blocks`` names the blocks
    computed in slices, the first one together with the stem before it.

    Example:
        >>> from mbcost.cost.schedule import memory_schedules
        >>> v1, v2 = memory_schedules("v1,v2", 224, dtype="float16")
        >>> v1.streamed_largest_tensor_bytes, v2.streamed_largest_tensor_bytes
        (1605632, 401408)
    """

    name: str
    label: str
    dtype: str
    input: tuple[int, ...]
    batch: int
    largest_tensor_bytes: int
    largest_tensor_shape: Shape
    streamed_largest_tensor_bytes: int
    streamed_largest_tensor_shape: Shape
    peak_activation_bytes: int | None
    streamed_peak_activation_bytes: int | None
    by_resolution: tuple[ResolutionRow, ...]
    streamed_blocks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "dtype": self.dtype,
            "input": list(self.input),
            "batch": self.batch,
            "largest_tensor_bytes": self.largest_tensor_bytes,
            "largest_tensor_shape": list(self.largest_tensor_shape),
            "streamed_largest_tensor_bytes": self.streamed_largest_tensor_bytes,
            "streamed_largest_tensor_shape": list(self.streamed_largest_tensor_shape),
            "peak_activation_bytes": self.peak_activation_bytes,
            "streamed_peak_activation_bytes": self.streamed_peak_activation_bytes,
            "streamed_blocks": list(self.streamed_blocks),
            "by_resolution": [row.to_dict() for row in self.by_resolution],
        }


def streamable_blocks(module: nn.Module) -> tuple[str, ...]:
    """Paths of the outermost submodules of ``module`` whose class (or a base) is named
    ``InvertedResidual``, in registration order. The module is read, never run or changed."""
    found: list[str] = []
    for path, mod in module.named_modules():
        if not path or not any(c.__name__ in STREAMABLE_TYPES for c in type(mod).__mro__):
            continue
        if not any(_inside(path, outer) for outer in found):
            found.append(path)
    return tuple(found)


def memory_schedule(cost: ModelCost, blocks: Sequence[str] = ()) -> MemorySchedule:
    """Both schedules of an analysed model, given the paths of its streamable blocks.

    Args:
        cost: ``analyze(...)``'s result; its records are read in forward order.
        blocks: module paths computed in streamed slices (``streamable_blocks(module)``); records
            issued inside one of them (the block itself or a submodule) belong to it.

    Returns:
        A ``MemorySchedule``; with no blocks, streamed figures equal the materialized ones.
    """
    inputs = [(i.shape, i.nbytes) for i in cost.inputs]
    segments = _segments(cost.layers, tuple(blocks))
    materialized = inputs + [(lc.output_shape, lc.output_bytes) for lc in cost.layers]
    streamed = list(inputs)
    streamed_peak = 0
    for records, streamed_segment in segments:
        if streamed_segment:  # only the segment's input and final output exist whole
            first, last = records[0], records[-1]
            streamed.append((last.output_shape, last.output_bytes))
            streamed_peak = max(streamed_peak, first.input_bytes + last.output_bytes)
        else:
            for lc in records:
                streamed.append((lc.output_shape, lc.output_bytes))
                streamed_peak = max(streamed_peak, lc.input_bytes + lc.activation_bytes)
    any_streamed = any(s for _, s in segments)
    largest, streamed_largest = _largest(materialized), _largest(streamed)
    return MemorySchedule(
        name=cost.name,
        label=cost.label,
        dtype=cost.dtype,
        input=cost.input,
        batch=cost.batch,
        largest_tensor_bytes=largest[1],
        largest_tensor_shape=largest[0],
        streamed_largest_tensor_bytes=streamed_largest[1],
        streamed_largest_tensor_shape=streamed_largest[0],
        peak_activation_bytes=cost.peak_activation_bytes,
        streamed_peak_activation_bytes=streamed_peak if any_streamed else cost.peak_activation_bytes,
        by_resolution=_by_resolution(materialized, streamed),
        streamed_blocks=tuple(dict.fromkeys(_block_of(r[-1].module, blocks) for r, s in segments if s)),
    )


def memory_schedules(models: str | ModelSource | nn.Module | list[Any], inputs: Any = None, batch: int = 1,
                     dtype: str = "float16", *, num_classes: int = 1000,
                     input_size: Any = None) -> list[MemorySchedule]:
    """Analyse each model and read both memory schedules from it.

    Args:
        models: a comma list of specs (``"v1,v2"``), or a list of specs / ``ModelSource`` / modules (a
            module given is used as it is: build it in ``dtype``).
        inputs: the input, as ``analyze`` takes it (``224``, ``"224x160"``, a full shape...; default: each
            source's own, else 224). ``input_size`` is its former name (deprecated).
        batch: batch size of an image input.
        dtype: element type of the activations; the paper's Table 3 assumes ``float16``.
        num_classes: classifier outputs of zoo models.

    Returns:
        One ``MemorySchedule`` per model, in order.

    Example:
        >>> [s.largest_tensor_bytes for s in memory_schedules(["v1", "v2"])]  # 112*112*64*2, 112*112*96*2
        [1605632, 2408448]
    """
    from torch import nn

    from mbcost.cost.analyze import analyze
    from mbcost.inputs import renamed_inputs
    from mbcost.zoo.spec import ModelSource, resolve_source, resolve_sources

    value = renamed_inputs(inputs, input_size)
    if isinstance(models, (str, ModelSource)):
        items: list[Any] = resolve_sources(models)
    else:
        items = [models] if isinstance(models, nn.Module) else \
            [m if isinstance(m, nn.Module) else resolve_source(m) for m in models]
    out = []
    for item in items:
        cost = analyze(item, value, batch, num_classes=num_classes, dtype=dtype)
        module = item if isinstance(item, nn.Module) else item.meta_model(num_classes, dtype)  # its blocks
        out.append(memory_schedule(cost, streamable_blocks(module)))
    return out


def _inside(module: str, block: str) -> bool:
    return module == block or module.startswith(block + ".")


def _block_of(module: str, blocks: Sequence[str]) -> str | None:
    return next((b for b in blocks if _inside(module, b)), None)


def _segments(layers: Sequence[LayerCost], blocks: tuple[str, ...]) -> list[tuple[list[LayerCost], bool]]:
    """Records in forward order, cut into runs: each uninterrupted run of one block's records is a
    streamed segment, every other record a materialized segment of its own. The records before the
    first block's (the stem) join that block's segment."""
    out: list[tuple[list[LayerCost], bool]] = []
    current: str | None = None
    for lc in layers:
        block = _block_of(lc.module, blocks)
        if block is not None and block == current:
            out[-1][0].append(lc)
        elif block is not None:
            out.append(([lc], True))
        else:
            out.append(([lc], False))
        current = block
    first = next((i for i, (_, streamed) in enumerate(out) if streamed), None)
    if first:  # the stem: everything before the first block streams with it
        stem = [lc for records, _ in out[:first] for lc in records]
        out[:first + 1] = [(stem + out[first][0], True)]
    return out


def _largest(tensors: Iterable[tuple[Shape, int]]) -> tuple[Shape, int]:
    """The largest tensor by bytes; the first in forward order among equals."""
    best: tuple[Shape, int] = ((), 0)
    for shape, nbytes in tensors:
        if nbytes > best[1]:
            best = (tuple(shape), nbytes)
    return best


def _widest(tensors: Iterable[tuple[Shape, int]]) -> dict[tuple[int, int], tuple[int, int]]:
    """``(H, W) -> (max channels, max bytes)`` over the 4-D tensors."""
    out: dict[tuple[int, int], tuple[int, int]] = {}
    for shape, nbytes in tensors:
        if len(shape) != 4:
            continue
        key = (shape[2], shape[3])
        channels, size = out.get(key, (0, 0))
        out[key] = (max(channels, shape[1]), max(size, nbytes))
    return out


def _by_resolution(materialized: list[tuple[Shape, int]],
                   streamed: list[tuple[Shape, int]]) -> tuple[ResolutionRow, ...]:
    whole, sliced = _widest(materialized), _widest(streamed)
    sizes = sorted(whole, key=lambda hw: (-hw[0] * hw[1], -hw[0], -hw[1]))
    return tuple(ResolutionRow(size=hw, max_channels=whole[hw][0], bytes=whole[hw][1],
                               streamed_max_channels=sliced.get(hw, (0, 0))[0],
                               streamed_bytes=sliced.get(hw, (0, 0))[1]) for hw in sizes)


__all__ = ["STREAMABLE_TYPES", "MemorySchedule", "ResolutionRow", "memory_schedule", "memory_schedules",
           "streamable_blocks"]
