"""MobileNetV2's architecture table (Sandler et al. 2018, Table 2), as published and as built.

``PUBLISHED_V2_TABLE`` is the paper's table typed in from the paper, independently of the zoo's
``V2_BOTTLENECKS``; ``v2_table`` reads the same rows back off a built model's modules (operator,
expansion t, output channels c, repeats n, stride s) and the cost engine's input shapes, so a
change to the zoo that the table does not describe shows up as a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from mbcost.cost.result import ModelCost

__all__ = ["PUBLISHED_V2_TABLE", "SOURCE", "TableRow", "compare_tables", "v2_table"]

SOURCE = "Sandler et al. 2018, MobileNetV2, Table 2"


@dataclass(frozen=True)
class TableRow:
    """One row of the table: input ``size^2 x channels``, operator, t, c, n, s (``None`` for '-')."""

    size: int
    channels: int
    operator: str
    t: int | None
    c: int | None
    n: int
    s: int | None

    @property
    def input(self) -> str:
        return f"{self.size}^2 x {self.channels}"


#: Table 2 as printed (k = 1000 classes for the classifier, the last 1x1 conv; its n is printed '-').
PUBLISHED_V2_TABLE: tuple[TableRow, ...] = (
    TableRow(224, 3, "conv2d", None, 32, 1, 2),
    TableRow(112, 32, "bottleneck", 1, 16, 1, 1),
    TableRow(112, 16, "bottleneck", 6, 24, 2, 2),
    TableRow(56, 24, "bottleneck", 6, 32, 3, 2),
    TableRow(28, 32, "bottleneck", 6, 64, 4, 2),
    TableRow(14, 64, "bottleneck", 6, 96, 3, 1),
    TableRow(14, 96, "bottleneck", 6, 160, 3, 2),
    TableRow(7, 160, "bottleneck", 6, 320, 1, 1),
    TableRow(7, 320, "conv2d 1x1", None, 1280, 1, 1),
    TableRow(7, 1280, "avgpool 7x7", None, None, 1, None),
    TableRow(1, 1280, "conv2d 1x1", None, 1000, 1, None),
)


def _convs(module: nn.Module) -> list[nn.Module]:
    from torch import nn

    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def v2_table(model: nn.Module, cost: ModelCost) -> tuple[TableRow, ...]:
    """The table read off a built MobileNetV2 (``features``, ``pool``, ``classifier``) and its cost.

    Each row's input shape is the engine's input shape of the row's first op; t is the first 1x1
    convolution's output over input channels (1 without one); c the last convolution's output
    channels; s the depthwise convolution's stride; consecutive blocks with the same t and c and
    stride 1 after the first are one row with n repeats. The classifier (a linear layer, the paper's
    1x1 conv on the pooled 1x1 map) is printed with n = 1 and no stride.
    """
    from torch import nn

    shapes: dict[str, tuple[int, ...]] = {}
    for lc in cost.layers:
        shapes.setdefault(lc.module, lc.input_shape)

    def input_of(path: str) -> tuple[int, int]:
        first = next(k for k in shapes if k == path or k.startswith(path + "."))
        shape = shapes[first]
        return (shape[2] if len(shape) == 4 else 1), shape[1]

    rows: list[TableRow] = []
    features = model.get_submodule("features")
    for name, block in features.named_children():
        path = f"features.{name}"
        convs = _convs(block)
        size, channels = input_of(path)
        if type(block).__name__ == "InvertedResidual":
            first, last = convs[0], convs[-1]
            depthwise = next(c for c in convs if c.groups > 1)
            t = first.out_channels // first.in_channels if first.kernel_size == (1, 1) and first.groups == 1 else 1
            row = TableRow(size, channels, "bottleneck", t, last.out_channels, 1, depthwise.stride[0])
            prev = rows[-1] if rows else None
            if prev and prev.operator == "bottleneck" and (prev.t, prev.c) == (row.t, row.c) \
                    and depthwise.stride[0] == 1:
                rows[-1] = TableRow(prev.size, prev.channels, prev.operator, prev.t, prev.c, prev.n + 1, prev.s)
                continue
            rows.append(row)
        else:
            conv = convs[0]
            k = conv.kernel_size[0]
            rows.append(TableRow(size, channels, "conv2d" if k == 3 else f"conv2d {k}x{k}", None, conv.out_channels,
                                 1, conv.stride[0]))
    pool = cost.layers[[lc.module for lc in cost.layers].index("pool")]
    h, w = pool.input_shape[2], pool.input_shape[3]
    rows.append(TableRow(h, pool.input_shape[1], f"avgpool {h}x{w}", None, None, 1, None))
    linear = next(m for m in model.get_submodule("classifier").modules() if isinstance(m, nn.Linear))
    rows.append(TableRow(1, linear.in_features, "conv2d 1x1", None, linear.out_features, 1, None))
    return tuple(rows)


def compare_tables(built: tuple[TableRow, ...], published: tuple[TableRow, ...] = PUBLISHED_V2_TABLE
                   ) -> tuple[int, ...]:
    """Indexes of the rows that differ (a missing row on either side counts as a difference)."""
    n = max(len(built), len(published))
    return tuple(i for i in range(n) if i >= len(built) or i >= len(published) or built[i] != published[i])
