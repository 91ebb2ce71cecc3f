"""Small user models for the CLI edge-case tests, importable as ``cli_models:NAME`` (tests/ is on sys.path).

Counts by hand (batch 1, bias excluded from MACs):
    tiny    Conv2d(3, 8, 3) on 3x16x16 -> 8x14x14:    params 3*8*9 + 8 = 224, MACs 8*14*14 * 27 = 42,336
    frozen  Conv2d(3, 8, 3) frozen + Conv2d(8, 8, 3):  params 224 + (8*8*9 + 8) = 808, trainable 584
    tokens  Embedding(100, 16) + Linear(16, 4):        params 1,600 + 68 = 1,668; on 1 x T ids MACs T * 16 * 4
    noparams  a ReLU: no parameters, no MACs
"""

from __future__ import annotations


def tiny():  # noqa: ANN201
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())


def frozen():  # noqa: ANN201
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
    for p in model[0].parameters():
        p.requires_grad_(False)
    return model


def tokens():  # noqa: ANN201
    from torch import nn

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(100, 16)
            self.fc = nn.Linear(16, 4)

        def forward(self, ids):  # noqa: ANN001, ANN202
            return self.fc(self.emb(ids))

    return Tokens()


def noparams():  # noqa: ANN201
    from torch import nn

    return nn.ReLU()
