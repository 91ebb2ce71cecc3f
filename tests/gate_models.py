"""Toy user models for the gate tests, importable as ``gate_models:toy`` (tests/ is put on sys.path).

``toy()`` builds the model ``VARIANT`` names, so one spec string yields the base model or its
drifted version; a test switches with ``monkeypatch.setattr(gate_models, "VARIANT", "drifted")``.

At 8x8 input (ground truth for the tests; bias adds are not MACs):
    stem  Conv2d(3, 8, 3, pad 1, no bias)  params 3*8*9 = 216          MACs 216*8*8 = 13,824
    bn    BatchNorm2d(8)                   params 2*8 = 16             MACs 0
    body  Conv2d(8, 8, 3, pad 1)           params 8*8*9 + 8 = 584      MACs 576*8*8 = 36,864  (removed)
    extra Conv2d(8, 8, 1)                  params 8*8 + 8 = 72         MACs 64*8*8 = 4,096    (added)
    head  Linear(8, 10) -> Linear(8, 12)   params 90 -> 108            MACs 80 -> 96          (widened)
"""

from __future__ import annotations

from collections import OrderedDict

VARIANT = "base"


def toy():  # noqa: ANN201
    from torch import nn

    layers: list[tuple[str, nn.Module]] = [
        ("stem", nn.Conv2d(3, 8, 3, padding=1, bias=False)),
        ("bn", nn.BatchNorm2d(8)),
        ("act", nn.ReLU()),
    ]
    if VARIANT in ("base", "upsampled"):
        layers.append(("body", nn.Conv2d(8, 8, 3, padding=1)))
    else:
        layers.append(("extra", nn.Conv2d(8, 8, 1)))
    if VARIANT == "upsampled":  # same params and MACs, 16x the activation before the pool
        layers.append(("up", nn.Upsample(scale_factor=4)))
    layers += [
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flat", nn.Flatten(1)),
        ("head", nn.Linear(8, 10 if VARIANT in ("base", "upsampled") else 12)),
    ]
    return nn.Sequential(OrderedDict(layers))


def with_spare():  # noqa: ANN201
    """A model with a module its forward never calls: its parameters are ``(unattributed)``."""
    from torch import nn

    class WithSpare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(3, 4)
            self.spare = nn.Linear(5, 6)  # 5*6 + 6 = 36 parameters, never run

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.used(x.mean((2, 3)))

    return WithSpare()


def video():  # noqa: ANN201
    """A 5-D input (``1x3x4x16x16``): Conv3d(3, 2, 3, padding 1), MACs = 2*4*16*16 x 3*27 per clip."""
    from torch import nn

    return nn.Sequential(nn.Conv3d(3, 2, 3, padding=1, bias=False))
