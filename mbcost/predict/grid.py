"""The micro-benchmark grid: one point per op to time, drawn from ranges shaped like CNN and transformer layers.

A ``GridPoint`` is a kind (``kinds.model_kind``'s names) and its shape parameters; ``build_point`` makes the module
that runs it (for a fusing runtime, a convolution as conv + BatchNorm + ReLU); ``sample_point`` draws a fresh
point, ``mutate`` a neighbour of one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from mbcost.predict.kinds import ACTIVATIONS, ELEMENTWISE

__all__ = ["CONV_KINDS", "GRID_KINDS", "GridPoint", "build_point", "mutate", "sample_point"]

CONV_KINDS = ("conv", "pwconv", "dwconv", "grouped_conv")
#: Every kind the grid measures, with its share of the first round of samples. Scaled dot-product attention is
#: not one: the analysis records it as its math (products, softmax, scaling), which the grid covers.
GRID_KINDS: dict[str, int] = {
    "conv": 4, "pwconv": 4, "dwconv": 4, "grouped_conv": 2, "matmul": 3, "batchnorm": 2, "norm": 2,
    **{f"activation.{a}": 1 for a in ACTIVATIONS}, **{f"elementwise.{e}": 2 for e in ELEMENTWISE},
    "pool": 1, "global_pool": 1, "softmax": 1,
}

CHANNELS = (8, 16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 512, 640, 768, 960, 1024, 1280)
SIZES = (7, 14, 28, 56, 112)
TOKENS = (1, 49, 50, 196, 197, 785)
WIDTHS = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072)
#: Points above this many MACs are redrawn: one sample stays a few milliseconds at one thread.
MAX_MACS = 400_000_000
MAX_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class GridPoint:
    """One op to time: its kind and shape parameters (``params`` as sorted (name, value) pairs)."""

    kind: str
    params: tuple[tuple[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridPoint:
        return cls(data["kind"], tuple(sorted((k, v) for k, v in data.items() if k != "kind")))


def _point(kind: str, **params: Any) -> GridPoint:
    return GridPoint(kind, tuple(sorted(params.items())))


def _conv_macs(p: dict[str, Any]) -> int:
    out = -(-p["hw"] // p["stride"])
    return out * out * p["cout"] * (p["cin"] // p["groups"]) * p["k"] * p["k"]


def _draw(kind: str, rng: random.Random) -> dict[str, Any]:
    c = rng.choice
    if kind in CONV_KINDS:
        hw = c(SIZES)
        stride = c((1, 1, 2))
        if kind == "conv":
            return dict(cin=c((3, *CHANNELS[:14])), cout=c(CHANNELS[:16]), k=c((3, 3, 5, 7)), stride=stride, hw=hw,
                        groups=1)
        if kind == "pwconv":
            return dict(cin=c(CHANNELS), cout=c(CHANNELS), k=1, stride=c((1, 1, 1, 2)), hw=hw, groups=1)
        if kind == "dwconv":
            ch = c(CHANNELS + (1152, 1536))  # no channel multiplier: CNNs have none, and it takes a slow path
            return dict(cin=ch, cout=ch, k=c((3, 3, 5, 7)), stride=stride, hw=hw, groups=ch)
        per = c((2, 4, 8, 16, 32, 64))
        groups = c((2, 4, 8, 16, 32, 64))
        return dict(cin=per * groups, cout=per * groups * c((1, 2)), k=c((1, 3, 3, 5)), stride=stride, hw=hw,
                    groups=groups)
    if kind == "matmul":
        if rng.random() < 0.25:  # a batched product: attention maps (heads x tokens x dim)
            return dict(batch=c((1, 3, 4, 6, 8, 12)), m=c(TOKENS[1:]), k=c((32, 64, 197, 196)), n=c(TOKENS[1:]))
        return dict(batch=0, m=c(TOKENS), k=c(WIDTHS), n=c(WIDTHS))
    if kind == "attention":
        return dict(heads=c((1, 2, 3, 4, 6, 8, 12)), tokens=c(TOKENS[1:]), dim=c((32, 64)))
    if kind == "norm":
        return dict(tokens=c(TOKENS[1:] + (3136,)), width=c(WIDTHS[:9]))
    if kind in ("softmax",):
        return dict(heads=c((1, 3, 4, 6, 8, 12)), tokens=c(TOKENS[1:]))
    if kind == "pool":
        return dict(c=c(CHANNELS[:14]), hw=c((14, 28, 56, 112)), k=c((2, 3)), op=c(("max", "avg")))
    if kind == "global_pool":
        return dict(c=c(CHANNELS + (1536, 2048)), hw=c((7, 14, 28)))
    if kind == "elementwise.mul" and rng.random() < 0.4:  # squeeze-excite: (1, C, H, W) x (1, C, 1, 1)
        return dict(c=c(CHANNELS), hw=c(SIZES), broadcast=1)
    if kind.startswith(("activation.", "elementwise.")) and rng.random() < 0.25:
        return dict(tokens=c(TOKENS[1:]), width=c(WIDTHS[:10]))
    return dict(c=c(CHANNELS), hw=c(SIZES))


def _size_ok(kind: str, p: dict[str, Any]) -> bool:
    if kind in CONV_KINDS:
        return _conv_macs(p) <= MAX_MACS and p["cin"] * p["hw"] ** 2 <= MAX_ELEMENTS
    if kind == "matmul":
        return max(p["batch"], 1) * p["m"] * p["k"] * p["n"] <= MAX_MACS
    if "hw" in p and "c" in p:
        return p["c"] * p["hw"] ** 2 <= MAX_ELEMENTS
    if "tokens" in p and "width" in p:
        return p["tokens"] * p["width"] <= MAX_ELEMENTS
    return True


def sample_point(kind: str, rng: random.Random) -> GridPoint:
    """A random point of ``kind`` (redrawn until it is at most ``MAX_MACS`` and ``MAX_ELEMENTS``)."""
    if kind not in GRID_KINDS:
        raise ValueError(f"no grid for kind {kind!r}")
    for _ in range(100):
        p = _draw(kind, rng)
        if _size_ok(kind, p):
            return _point(kind, **p)
    raise RuntimeError(f"could not draw a small enough {kind} point")


def mutate(point: GridPoint, rng: random.Random) -> GridPoint:
    """A neighbour of ``point``: one parameter redrawn from a fresh point of the same kind."""
    for _ in range(20):
        fresh = dict(sample_point(point.kind, rng).params)
        params = dict(point.params)
        if set(fresh) != set(params):
            return _point(point.kind, **fresh)
        name = rng.choice(sorted(fresh))
        params[name] = fresh[name]
        if point.kind in ("dwconv", "grouped_conv") and name in ("cin", "cout", "groups"):
            params.update(cin=fresh["cin"], cout=fresh["cout"], groups=fresh["groups"])  # they go together
        if _size_ok(point.kind, params):
            return _point(point.kind, **params)
    return sample_point(point.kind, rng)


def build_point(point: GridPoint, *, fused: bool = False) -> tuple[Any, tuple[tuple[int, ...], ...]]:
    """The module that runs ``point`` (eval mode, random weights) and its input shapes.

    ``fused``: convolutions as conv + BatchNorm + ReLU (what a fusing runtime runs as one kernel)."""
    import torch
    from torch import nn

    p = dict(point.params)
    kind = point.kind
    if kind in CONV_KINDS:
        conv = nn.Conv2d(p["cin"], p["cout"], p["k"], p["stride"], p["k"] // 2, groups=p["groups"], bias=not fused)
        module: nn.Module = nn.Sequential(conv, nn.BatchNorm2d(p["cout"]), nn.ReLU()) if fused else conv
        return module.eval(), ((1, p["cin"], p["hw"], p["hw"]),)
    if kind == "matmul":
        if p["batch"]:
            return _Fn(torch.bmm).eval(), ((p["batch"], p["m"], p["k"]), (p["batch"], p["k"], p["n"]))
        return nn.Linear(p["k"], p["n"]).eval(), ((1, p["m"], p["k"]),)
    if kind == "attention":
        shape = (1, p["heads"], p["tokens"], p["dim"])
        return _Fn(torch.nn.functional.scaled_dot_product_attention).eval(), (shape, shape, shape)
    if kind == "norm":
        return nn.LayerNorm(p["width"]).eval(), ((1, p["tokens"], p["width"]),)
    if kind == "softmax":
        return nn.Softmax(dim=-1).eval(), ((1, p["heads"], p["tokens"], p["tokens"]),)
    if kind == "pool":
        pool = nn.MaxPool2d(p["k"], 2, p["k"] // 2) if p["op"] == "max" else nn.AvgPool2d(p["k"], 2)
        return pool.eval(), ((1, p["c"], p["hw"], p["hw"]),)
    if kind == "global_pool":
        return nn.AdaptiveAvgPool2d(1).eval(), ((1, p["c"], p["hw"], p["hw"]),)
    shape = (1, p["tokens"], p["width"]) if "tokens" in p else (1, p["c"], p["hw"], p["hw"])
    if kind == "batchnorm":
        return nn.BatchNorm2d(p["c"]).eval(), (shape,)
    if kind.startswith("activation."):
        name = kind.partition(".")[2]
        act = {"relu": nn.ReLU(), "hardtanh": nn.ReLU6(), "hardswish": nn.Hardswish(), "silu": nn.SiLU(),
               "gelu": nn.GELU(), "sigmoid": nn.Sigmoid()}[name]
        return act.eval(), (shape,)
    if kind.startswith("elementwise."):
        fn = {"add": torch.add, "mul": torch.mul}[kind.partition(".")[2]]
        other = (1, p["c"], 1, 1) if p.get("broadcast") else shape
        return _Fn(fn).eval(), (shape, other)
    raise ValueError(f"no builder for kind {kind!r}")


class _Fn:
    """A module calling one function on its inputs (built lazily: torch is imported by ``build_point``)."""

    def __new__(cls, fn: Any) -> Any:
        from torch import nn

        class Call(nn.Module):
            def forward(self, *xs: Any) -> Any:
                return fn(*xs)

        return Call()
