"""Small models for the prediction tests (``predict_models:NAME`` factories; tests/ is on sys.path)."""

from __future__ import annotations

from torch import nn


class ConvRelu(nn.Module):
    """3 -> 8 channels, 3x3, padding 1, no bias, then ReLU: on 1x3x8x8, 8*8*8*27 = 13824 MACs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.act = nn.ReLU()

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.act(self.conv(x))


class MetaOnly(ConvRelu):
    """The same network, whose forward refuses real data: it can be analysed on the meta device, never run."""

    def forward(self, x):  # noqa: ANN001, ANN201
        if x.device.type != "meta":
            raise RuntimeError("MetaOnly ran on real data")
        return super().forward(x)


def conv_relu() -> nn.Module:
    return ConvRelu()


def meta_only() -> nn.Module:
    return MetaOnly()
