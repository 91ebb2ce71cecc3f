"""VGG16 (Simonyan & Zisserman 2015, configuration D), with and without BatchNorm."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from mbcost.zoo.layers import init_weights
from mbcost.zoo.registry import ModelEntry, Reported, register_model

__all__ = ["VGG", "vgg16", "vgg16_bn"]

# Configuration D: output channels of each 3x3 convolution (padding 1), "M" = 2x2 max pool.
VGG16_LAYERS: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Sequential):
    """VGG with the reference classifier (7x7 adaptive pool, 4096-4096-classes, dropout 0.5)."""

    def __init__(self, layers: list[int | str], batch_norm: bool = False, num_classes: int = 1000) -> None:
        modules: list[nn.Module] = []
        channels = 3
        for item in layers:
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            assert isinstance(item, int)
            modules.append(nn.Conv2d(channels, item, kernel_size=3, padding=1))
            if batch_norm:
                modules.append(nn.BatchNorm2d(item))
            modules.append(nn.ReLU(inplace=True))
            channels = item
        super().__init__(OrderedDict(
            features=nn.Sequential(*modules),
            avgpool=nn.AdaptiveAvgPool2d((7, 7)),
            flatten=nn.Flatten(1),
            classifier=nn.Sequential(
                nn.Linear(channels * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                nn.Linear(4096, num_classes),
            ),
        ))
        init_weights(self)


def vgg16(width: float = 1.0, num_classes: int = 1000) -> VGG:
    return VGG(VGG16_LAYERS, batch_norm=False, num_classes=num_classes)


def vgg16_bn(width: float = 1.0, num_classes: int = 1000) -> VGG:
    return VGG(VGG16_LAYERS, batch_norm=True, num_classes=num_classes)


register_model(ModelEntry(
    name="vgg16",
    builder=vgg16,
    description="VGG16 (configuration D) without BatchNorm (Simonyan & Zisserman 2015)",
    total_stride=32,
    supports_width=False,
    reported=Reported(top1=71.5, macs_millions=15300, params_millions=138,
                      source="Howard et al. 2017, MobileNets, Table 8 (VGG 16)"),
    aliases=("vgg",),
))
register_model(ModelEntry(
    name="vgg16-bn",
    builder=vgg16_bn,
    description="VGG16 (configuration D) with BatchNorm after every convolution",
    total_stride=32,
    supports_width=False,
    reported=Reported(top1=73.36, macs_millions=None, params_millions=138.4,
                      source="torchvision model card for vgg16_bn (IMAGENET1K_V1)"),
    aliases=("vgg16_bn",),
))
