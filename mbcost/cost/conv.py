"""One standard convolution against its depthwise + pointwise replacement.

The MobileNet paper (Howard et al. 2017, section 3.1) gives the cost ratio of a depthwise
KxK convolution followed by a 1x1 pointwise convolution to a standard KxK convolution with M
input and N output channels as ``1/N + 1/K^2``. ``compare_conv`` counts both real layer
stacks with the cost engine (one source of truth) and puts the closed form beside the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from mbcost.cost.analyze import analyze
from mbcost.cost.result import ModelCost
from mbcost.errors import SpecError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ConvComparison", "compare_conv", "conv_pair"]


@dataclass(frozen=True)
class ConvComparison:
    """Exact counts of a standard conv and its separable replacement, and the paper's formula."""

    in_channels: int
    out_channels: int
    kernel: int
    size: tuple[int, int]
    stride: int
    padding: int
    bias: bool
    batch: int
    standard: ModelCost
    separable: ModelCost

    @property
    def macs_ratio(self) -> Fraction:
        """Exact ``separable MACs / standard MACs``."""
        return Fraction(self.separable.macs, self.standard.macs)

    @property
    def params_ratio(self) -> Fraction:
        return Fraction(self.separable.params, self.standard.params)

    @property
    def formula_ratio(self) -> Fraction:
        """The paper's closed form ``1/N + 1/K^2``."""
        return Fraction(1, self.out_channels) + Fraction(1, self.kernel**2)

    @property
    def output_size(self) -> tuple[int, int]:
        out = self.standard.layers[0].output_shape
        return out[2], out[3]

    @property
    def notes(self) -> list[str]:
        """Why the exact ratio differs from the closed form, when it does."""
        notes = []
        if self.params_ratio != self.formula_ratio:
            notes.append("parameter ratio differs from 1/N + 1/K^2 because of the bias terms")
        if self.macs_ratio != self.formula_ratio:
            notes.append("MAC ratio differs from 1/N + 1/K^2")
        if self.stride > 1:
            notes.append(f"stride {self.stride}: both the standard and the depthwise conv produce "
                         f"{self.output_size[0]}x{self.output_size[1]}, so the MAC ratio is unchanged")
        if self.padding != (self.kernel - 1) // 2:
            notes.append(f"padding {self.padding} changes the output size, equally for both")
        if self.bias:
            notes.append("bias adds are elementwise ops, outside MACs; they add N (standard) and M + N "
                         "(separable) parameters")
        return notes

    def to_dict(self) -> dict[str, Any]:
        def part(cost: ModelCost) -> dict[str, Any]:
            return {
                "params": cost.params,
                "macs": cost.macs,
                "flops": cost.flops,
                "elementwise_ops": cost.elementwise_ops,
                "layers": [{"name": lc.name, "category": lc.category, "params": lc.params, "macs": lc.macs}
                           for lc in cost.layers],
            }

        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel": self.kernel,
            "input": list(self.size),
            "output": list(self.output_size),
            "stride": self.stride,
            "padding": self.padding,
            "bias": self.bias,
            "batch": self.batch,
            "standard": part(self.standard),
            "separable": part(self.separable),
            "ratio": float(self.macs_ratio),
            "ratio_exact": str(self.macs_ratio),
            "params_ratio": float(self.params_ratio),
            "formula_ratio": float(self.formula_ratio),
            "formula_ratio_exact": str(self.formula_ratio),
            "notes": self.notes,
        }

    def _repr_html_(self) -> str | None:
        """In Jupyter: ``mbcost conv``'s table (``mbcost.render.html``)."""
        from mbcost import display

        return display.html(self)


def conv_pair(in_channels: int, out_channels: int, kernel: int, stride: int, padding: int,
              bias: bool) -> tuple[nn.Sequential, nn.Sequential]:
    """A standard ``KxK`` conv (M -> N) and its replacement, depthwise ``KxK`` (M) + pointwise 1x1 (M -> N),
    built on the current default device (``with torch.device(...)``); the one definition that is both
    counted (``compare_conv``) and timed (``mbcost.bench.sweep``)."""
    from torch import nn

    standard = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=bias))
    separable = nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel, stride, padding, groups=in_channels, bias=bias),
        nn.Conv2d(in_channels, out_channels, 1, bias=bias),
    )
    return standard, separable


def compare_conv(
    in_channels: int,
    out_channels: int,
    kernel: int = 3,
    size: int | tuple[int, int] = 56,
    stride: int = 1,
    padding: int | None = None,
    bias: bool = False,
    batch: int = 1,
) -> ConvComparison:
    """Count a standard ``KxK`` conv (M -> N) and depthwise ``KxK`` (M) + pointwise 1x1 (M -> N).

    Args:
        in_channels: M. out_channels: N. kernel: K. size: input feature map F (or (H, W)).
        stride: stride of the standard and of the depthwise convolution.
        padding: zero padding (default ``(K - 1) // 2``, "same" for odd K at stride 1).
        bias: give every convolution a bias.
        batch: batch size.

    Example:
        >>> c = compare_conv(512, 512, 3, 14)
        >>> c.standard.macs, c.separable.macs   # 3*3*512*512*14*14, (3*3*512 + 512*512)*14*14
        (462422016, 52283392)
    """
    import torch

    for label, value, low in (("--cin", in_channels, 1), ("--cout", out_channels, 1), ("--k", kernel, 1),
                              ("--stride", stride, 1), ("--batch", batch, 1)):
        if not isinstance(value, int) or value < low:
            raise SpecError(f"{label} must be an integer >= {low} (got {value!r})")
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise SpecError(f"--size must be >= 1 (got {h}x{w})")
    pad = (kernel - 1) // 2 if padding is None else padding
    if pad < 0:
        raise SpecError(f"--padding must be >= 0 (got {pad})")
    if h + 2 * pad < kernel or w + 2 * pad < kernel:
        raise SpecError(f"a {kernel}x{kernel} kernel does not fit a {h}x{w} input with padding {pad}")
    with torch.device("meta"):
        standard, separable = conv_pair(in_channels, out_channels, kernel, stride, pad, bias)
    return ConvComparison(
        in_channels=in_channels, out_channels=out_channels, kernel=kernel, size=(h, w), stride=stride,
        padding=pad, bias=bias, batch=batch,
        standard=analyze(standard, (h, w), batch, in_channels=in_channels, name="standard"),
        separable=analyze(separable, (h, w), batch, in_channels=in_channels, name="separable"),
    )
