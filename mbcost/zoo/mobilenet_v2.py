"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks")."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from mbcost.zoo.layers import conv_bn_act, init_weights, make_divisible
from mbcost.zoo.registry import ModelEntry, Reported, register_model

__all__ = ["V2_BOTTLENECKS", "V2_LAST_CHANNELS", "InvertedResidual", "MobileNetV2", "mobilenet_v2"]

# Table 2 of the paper, after the stem (3x3 conv, 32 channels, stride 2):
#   t: expansion factor, c: output channels, n: repeats, s: stride of the first repeat
V2_BOTTLENECKS: list[tuple[int, int, int, int]] = [
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
V2_STEM_CHANNELS = 32
V2_LAST_CHANNELS = 1280


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear projection (no activation),
    with a residual connection when the block keeps resolution and width."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(in_channels, hidden, 1, activation=nn.ReLU6))
        layers.append(conv_bn_act(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6))
        layers.append(conv_bn_act(hidden, out_channels, 1, activation=None))  # linear bottleneck
        self.conv = nn.Sequential(*layers)

    def forward(self, x):  # noqa: ANN001, ANN201
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Sequential):
    """MobileNetV2. Channels are ``make_divisible(c * width, 8)``; the last 1x1 conv keeps
    1280 channels for widths below 1 (and grows above 1), as in the reference implementation."""

    def __init__(self, width: float = 1.0, num_classes: int = 1000, dropout: float = 0.2) -> None:
        channels = make_divisible(V2_STEM_CHANNELS * width)
        last = make_divisible(V2_LAST_CHANNELS * max(1.0, width))
        blocks: list[nn.Module] = [conv_bn_act(3, channels, 3, 2, activation=nn.ReLU6)]
        for t, c, n, s in V2_BOTTLENECKS:
            out_channels = make_divisible(c * width)
            for i in range(n):
                blocks.append(InvertedResidual(channels, out_channels, s if i == 0 else 1, t))
                channels = out_channels
        blocks.append(conv_bn_act(channels, last, 1, activation=nn.ReLU6))
        super().__init__(OrderedDict(
            features=nn.Sequential(*blocks),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(1),
            classifier=nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes)),
        ))
        init_weights(self)


def mobilenet_v2(width: float = 1.0, num_classes: int = 1000) -> MobileNetV2:
    return MobileNetV2(width, num_classes)


register_model(ModelEntry(
    name="v2",
    builder=mobilenet_v2,
    description="MobileNetV2: inverted residuals, linear bottlenecks, ReLU6 (Sandler et al. 2018)",
    total_stride=32,
    supports_width=True,
    reported=Reported(top1=72.0, macs_millions=300, params_millions=3.4,
                      source="Sandler et al. 2018, MobileNetV2, Table 4"),
    aliases=("mobilenet_v2", "mobilenetv2"),
))

