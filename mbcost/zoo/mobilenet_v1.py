"""MobileNetV1 (Howard et al. 2017, "MobileNets", Table 1) and its "Conv MobileNet" twin."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from mbcost.zoo.layers import conv_bn_act, init_weights
from mbcost.zoo.registry import ModelEntry, Reported, register_model

__all__ = ["V1_BLOCKS", "DepthwiseSeparable", "MobileNetV1", "mobilenet_v1", "mobilenet_v1_conv", "scale_channels"]

# Table 1 after the first full convolution (3x3, 32 channels, stride 2): each row is one
# depthwise 3x3 + pointwise 1x1 pair.
#   out_channels, stride (of the depthwise convolution)
V1_BLOCKS: list[tuple[int, int]] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2),
    # Table 1 prints "s2" here, but the feature map is already 7x7 and the reference
    # implementations (TF-slim, Keras) use stride 1.
    (1024, 1),
]
V1_STEM_CHANNELS = 32
MIN_CHANNELS = 8  # TF-slim's min_depth


def scale_channels(channels: int, width: float) -> int:
    """V1's width multiplier: every layer's channels times ``width`` (truncated, at least 8)."""
    return max(MIN_CHANNELS, int(channels * width))


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 conv -> BN -> ReLU (``dw``), then pointwise 1x1 conv -> BN -> ReLU (``pw``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(OrderedDict(
            dw=conv_bn_act(in_channels, in_channels, 3, stride, groups=in_channels),
            pw=conv_bn_act(in_channels, out_channels, 1),
        ))


class MobileNetV1(nn.Sequential):
    """MobileNetV1. With ``separable=False`` every depthwise + pointwise pair becomes one full
    3x3 convolution (the paper's "Conv MobileNet", Table 4)."""

    def __init__(self, width: float = 1.0, num_classes: int = 1000, separable: bool = True) -> None:
        channels = scale_channels(V1_STEM_CHANNELS, width)
        blocks: list[nn.Module] = [conv_bn_act(3, channels, 3, 2)]
        for out_channels, stride in V1_BLOCKS:
            out_channels = scale_channels(out_channels, width)
            if separable:
                blocks.append(DepthwiseSeparable(channels, out_channels, stride))
            else:
                blocks.append(conv_bn_act(channels, out_channels, 3, stride))
            channels = out_channels
        super().__init__(OrderedDict(
            features=nn.Sequential(*blocks),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(1),
            classifier=nn.Linear(channels, num_classes),
        ))
        init_weights(self)


def mobilenet_v1(width: float = 1.0, num_classes: int = 1000) -> MobileNetV1:
    return MobileNetV1(width, num_classes, separable=True)


def mobilenet_v1_conv(width: float = 1.0, num_classes: int = 1000) -> MobileNetV1:
    return MobileNetV1(width, num_classes, separable=False)


register_model(ModelEntry(
    name="v1",
    builder=mobilenet_v1,
    description="MobileNetV1: 3x3 conv + 13 depthwise/pointwise pairs (Howard et al. 2017)",
    total_stride=32,
    supports_width=True,
    reported=Reported(top1=70.6, macs_millions=569, params_millions=4.2,
                      source="Howard et al. 2017, MobileNets, Table 8 (1.0 MobileNet-224)"),
    aliases=("mobilenet_v1", "mobilenetv1"),
))
register_model(ModelEntry(
    name="v1-conv",
    builder=mobilenet_v1_conv,
    description="MobileNetV1 with full 3x3 convolutions instead of separable pairs (paper's Conv MobileNet)",
    total_stride=32,
    supports_width=True,
    reported=Reported(top1=71.7, macs_millions=4866, params_millions=29.3,
                      source="Howard et al. 2017, MobileNets, Table 4 (Conv MobileNet)"),
    aliases=("mobilenet_v1_conv",),
))
