"""Building blocks shared by the zoo's model files."""

from __future__ import annotations

from torch import nn

__all__ = ["conv_bn_act", "init_weights", "make_divisible"]


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    activation: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """Conv (no bias, "same" padding) -> BatchNorm -> activation, as the MobileNet papers use."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` (at least ``divisor``),
    never going more than 10% below ``value``. MobileNetV2's reference rounding rule."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions, unit BatchNorm, small normal linear layers."""
    if any(p.is_meta for p in model.parameters()):
        # Meta tensors hold no values to initialise, and the first random init on the meta
        # device imports torch._dynamo (over a second): skip it so analysis stays instant.
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
