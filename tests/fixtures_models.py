"""A user's model for the counter tests, importable as ``fixtures_models:factory`` (tests/ is on sys.path).

Its ``forward`` mixes modules with functional calls each counter treats differently:
``F.relu`` (fvcore ignores it), ``torch.cat`` (free), ``x * 2`` and ``+`` (no counter counts
them), ``nn.Hardswish`` (thop has no rule), ``F.adaptive_avg_pool2d`` (fvcore counts it, thop does
not see it), ``@`` (every counter counts the product) and ``nn.Embedding`` (no formula in the
engine: listed as uncounted with its calls).

At a 3x16x16 input, batch 1 (analytic MACs, bias excluded):
    conv  Conv2d(3, 8, 3, pad 1)             8*16*16 * 3*9   = 55,296
    dw    Conv2d(8, 8, 3, pad 1, groups 8)   8*16*16 * 1*9   = 18,432
    pw    Conv2d(16, 16, 1)                  16*16*16 * 16   = 65,536
    @     (1, 16) @ (16, 16)                 16 * 16         = 256
    fc    Linear(16, 10)                     10 * 16         = 160
    total                                                     139,680
"""

from __future__ import annotations

EXPECTED_MACS_16 = 55_296 + 18_432 + 65_536 + 256 + 160


def factory():  # noqa: ANN201
    import torch
    import torch.nn.functional as F
    from torch import nn

    class UserNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
            self.act = nn.Hardswish()
            self.pw = nn.Conv2d(16, 16, 1)
            self.proj = nn.Parameter(torch.ones(16, 16) / 16)
            self.emb = nn.Embedding(4, 16)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):  # noqa: ANN001, ANN202
            y = F.relu(self.bn(self.conv(x)))
            y = torch.cat([y, self.act(self.dw(y)) * 2], dim=1)
            y = self.pw(y)
            y = F.adaptive_avg_pool2d(y, 1).flatten(1)
            y = y @ self.proj
            y = y + self.emb(torch.zeros(y.shape[0], dtype=torch.long, device=y.device))
            return self.fc(y)

    return UserNet()


def two_images():  # noqa: ANN201
    """Two positional images, fused: ``--input 1x3x16x16 --input 1x3x16x16``."""
    import torch
    from torch import nn

    class TwoImages(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.fuse = nn.Conv2d(8, 2, 1)

        def forward(self, a, b):  # noqa: ANN001, ANN202
            return self.fuse(torch.cat([self.stem(a), self.stem(b)], dim=1))

    return TwoImages()


def token_classifier():  # noqa: ANN201
    """int64 token ids and an optional keyword mask: ``--input 2x10:int64 --input mask=2x10:int64``."""
    from torch import nn

    class TokenClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.fc = nn.Linear(8, 4)

        def forward(self, ids, mask=None):  # noqa: ANN001, ANN202
            x = self.embed(ids)
            if mask is not None:
                x = x * mask.unsqueeze(-1)
            return self.fc(x)

    return TokenClassifier()


def data_dependent():  # noqa: ANN201
    """A forward that reads a value (``if y.sum() > 0``): the meta device cannot run it."""
    from torch import nn

    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):  # noqa: ANN001, ANN202
            y = self.conv(x)
            return y * 2 if y.sum() > 0 else y

    return DataDependent()


def tiny_convnet():  # noqa: ANN201
    """A MobileNet in miniature for the runtime tests (fast to export, quantize and lower everywhere):
    conv 3x3 + BatchNorm + ReLU, depthwise 3x3 + BatchNorm + ReLU, pointwise 1x1 + BatchNorm + ReLU, global
    average pool, linear to 10 classes. Input 1x3x16x16."""
    from torch import nn

    def block(cin: int, cout: int, k: int, groups: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(3, 8, 3), *block(8, 8, 3, groups=8), *block(8, 16, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
