"""The inverted residual block against the classic residual block, same input and output channels.

MobileNetV2 (Sandler et al. 2018, Figure 3) contrasts the classic residual block, which connects
wide layers through a narrow middle (1x1 reduce by t, 3x3 convolution, 1x1 expand by t), with
its inverted residual, which connects narrow layers through a wide middle (1x1 expand by t, 3x3
depthwise, 1x1 linear projection). Both blocks are built here with the same input and output
channels C and expansion t, and counted by the cost engine: MACs, parameters and the largest
tensor any op of the block writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["BLOCK_CHANNELS", "BLOCK_SIZE", "EXPANSION", "BlockCost", "compare_blocks", "residual_blocks"]

#: The comparison point: V2's 14x14 stage with 96 channels (Table 2), expansion t = 6.
BLOCK_CHANNELS = 96
BLOCK_SIZE = 14
EXPANSION = 6


@dataclass(frozen=True)
class BlockCost:
    """One block's counted cost."""

    name: str
    layout: str
    channels: int
    expansion: int
    size: int
    macs: int
    params: int
    largest_tensor_elements: int
    largest_tensor_shape: tuple[int, ...]
    largest_tensor_bytes: int


def residual_blocks(channels: int = BLOCK_CHANNELS, expansion: int = EXPANSION) -> tuple[nn.Module, nn.Module]:
    """``(inverted, classic)`` blocks on the meta device, both ``channels`` in and out, with a shortcut."""
    import torch
    from torch import nn

    from mbcost.errors import SpecError
    from mbcost.zoo.layers import conv_bn_act
    from mbcost.zoo.mobilenet_v2 import InvertedResidual

    if channels % expansion:
        raise SpecError(f"channels ({channels}) must be a multiple of the expansion ({expansion})")

    class ClassicResidual(nn.Module):
        """1x1 reduce -> 3x3 -> 1x1 expand (linear), plus the input: the ResNet bottleneck's layout."""

        def __init__(self) -> None:
            super().__init__()
            narrow = channels // expansion
            self.conv = nn.Sequential(conv_bn_act(channels, narrow, 1), conv_bn_act(narrow, narrow, 3),
                                      conv_bn_act(narrow, channels, 1, activation=None))

        def forward(self, x):  # noqa: ANN001, ANN201
            return x + self.conv(x)

    with torch.device("meta"):
        return InvertedResidual(channels, channels, 1, expansion).eval(), ClassicResidual().eval()


def compare_blocks(channels: int = BLOCK_CHANNELS, size: int = BLOCK_SIZE, expansion: int = EXPANSION,
                   dtype: str = "float32") -> tuple[BlockCost, BlockCost]:
    """Count both blocks at ``channels x size x size`` (batch 1): ``(inverted, classic)``."""
    from mbcost.cost.analyze import analyze

    out = []
    layouts = {"inverted residual": f"1x1 expand to {expansion}C, 3x3 depthwise, 1x1 linear project to C",
               "classic residual": f"1x1 reduce to C/{expansion}, 3x3 standard, 1x1 expand to C"}
    for (name, layout), block in zip(layouts.items(), residual_blocks(channels, expansion), strict=True):
        cost = analyze(block, (size, size), 1, in_channels=channels, dtype=dtype, name=name)
        largest = max(cost.layers, key=lambda lc: lc.output_bytes)
        out.append(BlockCost(name=name, layout=layout, channels=channels, expansion=expansion, size=size,
                             macs=cost.macs, params=cost.params,
                             largest_tensor_elements=math.prod(largest.output_shape),
                             largest_tensor_shape=tuple(largest.output_shape),
                             largest_tensor_bytes=largest.output_bytes))
    return out[0], out[1]
