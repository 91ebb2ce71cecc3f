"""Pure-shape interpreter: the fast path of the cost engine.

For models made of ``nn.Sequential`` containers, standard layers and blocks that register a
rule here (the zoo's inverted residual), output shapes follow from closed-form rules, so
analysis touches no tensor at all: a few milliseconds per model at any input size or batch.
Anything it does not understand (a custom ``forward``, hooks, an unknown layer) raises
``Unsupported`` and the caller falls back to the meta-device tracer (``walker``), which runs
the real ``forward``. Tests assert that both paths give identical records on every zoo model.
"""

from __future__ import annotations

from collections.abc import Callable
from math import ceil, floor, prod
from typing import TYPE_CHECKING, Any

from mbcost.cost.ops import OpCall
from mbcost.cost.records import RecordBook, Structure, Trace

if TYPE_CHECKING:
    from torch import nn

Shape = tuple[int, ...]


class Unsupported(Exception):
    """The interpreter cannot follow this module; use the meta-device tracer."""


#: Block rules registered by model files: ``rule(interp, module, x_shape) -> out_shape``.
BLOCK_RULES: dict[type, Callable[[ShapeInterpreter, Any, Shape], Shape]] = {}


def register_block_rule(cls: type) -> Callable[[Callable[..., Shape]], Callable[..., Shape]]:
    def decorator(fn: Callable[..., Shape]) -> Callable[..., Shape]:
        if cls in BLOCK_RULES:
            raise ValueError(f"a block rule for {cls.__name__} is already registered")
        BLOCK_RULES[cls] = fn
        return fn

    return decorator


def _pair(v: Any, n: int) -> tuple[int, ...]:
    return (int(v),) * n if isinstance(v, int) else tuple(int(x) for x in v)


def _window_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (ceil(span / s) if ceil_mode else floor(span / s)) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


class ShapeInterpreter:
    """Walks a module tree with shapes only, writing records into a ``RecordBook``."""

    def __init__(self, model: nn.Module, dtype_bytes: int, structure: Structure | None = None) -> None:
        import torch
        from torch import nn

        self.nn = nn
        self.torch = torch
        self.book = RecordBook(model, structure)
        self.b = dtype_bytes
        self._leaf_rules: list[tuple[type, Callable[..., Shape]]] = [
            (nn.Conv1d, self._conv), (nn.Conv2d, self._conv), (nn.Conv3d, self._conv),
            (nn.Linear, self._linear),
            (nn.BatchNorm1d, self._batchnorm), (nn.BatchNorm2d, self._batchnorm), (nn.BatchNorm3d, self._batchnorm),
            (nn.ReLU, self._act("relu")), (nn.ReLU6, self._act("hardtanh")), (nn.Hardtanh, self._act("hardtanh")),
            (nn.Hardswish, self._act("hardswish")), (nn.SiLU, self._act("silu")), (nn.Sigmoid, self._act("sigmoid")),
            (nn.Tanh, self._act("tanh")), (nn.GELU, self._act("gelu")), (nn.LeakyReLU, self._act("leaky_relu")),
            (nn.MaxPool2d, self._pool("max_pool2d_with_indices")), (nn.AvgPool2d, self._pool("avg_pool2d")),
            (nn.AdaptiveAvgPool2d, self._adaptive_avg),
            (nn.Dropout, self._identity), (nn.Identity, self._identity), (nn.Flatten, self._flatten),
        ]

    # -- entry point ---------------------------------------------------------------------

    def run(self, module: nn.Module, x: Shape) -> Shape:
        if module._forward_hooks or module._forward_pre_hooks:
            raise Unsupported(f"{type(module).__name__} has forward hooks")
        cls = type(module)
        if cls in BLOCK_RULES:
            return BLOCK_RULES[cls](self, module, x)
        if isinstance(module, self.nn.Sequential) and cls.forward is self.nn.Sequential.forward:
            for child in module:
                x = self.run(child, x)
            return x
        for base, rule in self._leaf_rules:
            if isinstance(module, base) and cls.forward is base.forward:
                return rule(module, x)
        raise Unsupported(f"no shape rule for {cls.__name__}")

    def add(self, module: nn.Module, first: bool, op: str, call: OpCall, *, input_bytes: int,
            output_bytes: int, weight_bytes: int = 0, inplace: bool = False) -> None:
        self.book.add(module, first_in_call=first, op=op, call=call, input_bytes=input_bytes,
                      output_bytes=output_bytes, weight_bytes=weight_bytes, inplace=inplace)

    def elementwise(self, module: nn.Module, op: str, a: Shape, b: Shape) -> Shape:
        """A binary elementwise op (``add``...) issued by a block's own ``forward``."""
        if a != b:
            raise Unsupported(f"broadcasting {op} {a} and {b}")
        self.add(module, False, op, OpCall(kind="elementwise", formula_args={"out_shape": a},
                                           input_shape=a, output_shape=a),
                 input_bytes=2 * prod(a) * self.b, output_bytes=prod(a) * self.b)
        return a

    # -- leaf rules ----------------------------------------------------------------------

    def _nbytes(self, shape: Shape) -> int:
        return prod(shape) * self.b

    def _params_bytes(self, *tensors: Any) -> int:
        return sum(t.numel() for t in tensors if t is not None) * self.b

    def _conv(self, m: Any, x: Shape) -> Shape:
        n = len(m.kernel_size)
        if m.padding_mode != "zeros" or isinstance(m.padding, str) or len(x) != n + 2 or x[1] != m.in_channels:
            raise Unsupported("conv with string padding, non-zero padding mode or unexpected input")
        k, s, p, d = m.kernel_size, m.stride, m.padding, m.dilation
        spatial = tuple(_window_out(x[2 + i], k[i], s[i], p[i], d[i], False) for i in range(n))
        if min(spatial) < 1:
            raise Unsupported("conv output would be empty")
        out = (x[0], m.out_channels, *spatial)
        w_shape = tuple(m.weight.shape)
        call = OpCall(kind="conv", formula_args={"x_shape": x, "w_shape": w_shape, "out_shape": out,
                                                 "transposed": False, "has_bias": m.bias is not None},
                      input_shape=x, output_shape=out, weight_shape=w_shape, kernel=tuple(k), stride=tuple(s),
                      padding=tuple(p), dilation=tuple(d), groups=m.groups)
        self.add(m, True, "convolution", call, input_bytes=self._nbytes(x), output_bytes=self._nbytes(out),
                 weight_bytes=self._params_bytes(m.weight, m.bias))
        return out

    def _linear(self, m: Any, x: Shape) -> Shape:
        if len(x) != 2 or x[1] != m.in_features:
            raise Unsupported("linear on a non-2D input")
        out = (x[0], m.out_features)
        b_shape = (m.in_features, m.out_features)
        call = OpCall(kind="matmul", formula_args={"a_shape": x, "b_shape": b_shape, "out_shape": out,
                                                   "has_bias": m.bias is not None},
                      input_shape=x, output_shape=out, weight_shape=b_shape)
        self.add(m, True, "addmm" if m.bias is not None else "mm", call, input_bytes=self._nbytes(x),
                 output_bytes=self._nbytes(out), weight_bytes=self._params_bytes(m.weight, m.bias))
        return out

    def _batchnorm(self, m: Any, x: Shape) -> Shape:
        if not m.track_running_stats or len(x) < 2 or x[1] != m.num_features:
            raise Unsupported("batchnorm without running stats")
        call = OpCall(kind="batchnorm", formula_args={"x_shape": x}, input_shape=x, output_shape=x,
                      affine=bool(m.affine))
        self.add(m, True, "native_batch_norm", call, input_bytes=self._nbytes(x), output_bytes=self._nbytes(x),
                 weight_bytes=self._params_bytes(m.weight, m.bias, m.running_mean, m.running_var))
        return x

    def _act(self, op: str) -> Callable[[Any, Shape], Shape]:
        def rule(m: Any, x: Shape) -> Shape:
            call = OpCall(kind="activation", formula_args={"out_shape": x}, input_shape=x, output_shape=x)
            self.add(m, True, op, call, input_bytes=self._nbytes(x), output_bytes=self._nbytes(x),
                     inplace=bool(getattr(m, "inplace", False)))
            return x

        return rule

    def _pool(self, op: str) -> Callable[[Any, Shape], Shape]:
        def rule(m: Any, x: Shape) -> Shape:
            if len(x) != 4:
                raise Unsupported("2d pooling on a non-4D input")
            k = _pair(m.kernel_size, 2)
            s = _pair(m.stride if m.stride is not None else m.kernel_size, 2)
            p = _pair(m.padding, 2)
            d = _pair(getattr(m, "dilation", 1), 2)
            spatial = tuple(_window_out(x[2 + i], k[i], s[i], p[i], d[i], m.ceil_mode) for i in range(2))
            if min(spatial) < 1:
                raise Unsupported("pool output would be empty")
            out = (x[0], x[1], *spatial)
            include_pad = getattr(m, "count_include_pad", None)  # average pooling only
            call = OpCall(kind="pool", formula_args={"out_shape": out, "kernel": k}, input_shape=x,
                          output_shape=out, kernel=k, stride=s, padding=p,
                          count_include_pad=None if include_pad is None else bool(include_pad))
            self.add(m, True, op, call, input_bytes=self._nbytes(x), output_bytes=self._nbytes(out))
            return out

        return rule

    def _adaptive_avg(self, m: Any, x: Shape) -> Shape:
        if len(x) != 4:
            raise Unsupported("adaptive pooling on a non-4D input")
        size = _pair(m.output_size, 2) if not isinstance(m.output_size, (tuple, list)) else tuple(
            x[2 + i] if v is None else int(v) for i, v in enumerate(m.output_size))
        out = (x[0], x[1], *size)
        call = OpCall(kind="global_pool", formula_args={"x_shape": x}, input_shape=x, output_shape=out)
        op = "mean" if size == (1, 1) else "_adaptive_avg_pool2d"
        self.add(m, True, op, call, input_bytes=self._nbytes(x), output_bytes=self._nbytes(out))
        return out

    def _identity(self, m: Any, x: Shape) -> Shape:
        return x

    def _flatten(self, m: Any, x: Shape) -> Shape:
        start = m.start_dim % len(x)
        end = m.end_dim % len(x)
        return (*x[:start], prod(x[start:end + 1]), *x[end + 1:])


def interpret_model(model: nn.Module, x_shape: Shape, dtype_bytes: int, structure: Structure | None = None) -> Trace:
    """Shape-only walk of ``model``; raises ``Unsupported`` when it cannot follow it."""
    interp = ShapeInterpreter(model, dtype_bytes, structure)
    interp.run(model, x_shape)
    return interp.book.finish()
