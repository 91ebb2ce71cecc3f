"""Output shapes of ATen ops, answered without running the op.

On the meta device most ops still run a kernel to learn their output's shape, and for many of
them that kernel is a Python decomposition: an eval ``batch_norm`` costs about 1 ms, a
``hardtanh`` (ReLU6) 1.6 ms, a ``layer_norm`` 1.5 ms, an upsampling 20 ms, a convolution 75 us. The walker asks this
table first: each entry takes the op's arguments and returns meta tensors of the right shape and
dtype (or ``None`` when it cannot say for sure, and the op then runs on the meta device as
usual). In-place ops return their first argument. Invalid arguments that the real op would
reject (a convolution's channel mismatch, a window larger than its input, shapes that do not
broadcast) raise ``RuntimeError`` as the real op would.

Nothing here counts cost, nor says which op each function answers: the op table (``mbcost.cost.ops``)
does, row by row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import ceil, floor
from typing import Any

from mbcost.cost.readers import arg as _arg
from mbcost.cost.readers import ints as _ints
from mbcost.cost.torch_internals import channels_last

__all__ = ["Shortcut", "adaptive_pool", "addmm", "baddbmm", "batch_norm", "binary", "bmm", "broadcast", "cat", "clone",
           "constant_pad", "contiguous", "convolution", "group_norm", "inplace", "layer_norm", "masked_fill", "mean",
           "meta_like", "mm", "pool", "same", "suggested", "window_out"]

#: ``shortcut(args, kwargs)``: the op's output (meta tensors), or ``None`` when it cannot say for sure.
Shortcut = Callable[[Sequence[Any], dict[str, Any]], Any]


def _empty(shape: Sequence[int], like: Any) -> Any:
    """A new meta tensor of ``shape`` with ``like``'s dtype: channels-last when ATen suggests it for a 4-D
    ``like`` (convolution and pooling keep that layout), else contiguous."""
    import torch

    if like.dim() == 4 and len(shape) == 4 and not like.is_contiguous() and channels_last(like):
        return torch.empty(tuple(shape), dtype=like.dtype, device="meta", memory_format=torch.channels_last)
    return torch.empty(tuple(shape), dtype=like.dtype, device="meta")


def _dense(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether ``strides`` lay ``shape`` out without gaps or overlaps (size-1 dimensions aside)."""
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(shape, strides, strict=True) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def meta_like(x: Any, dtype: Any = None) -> Any:
    """A meta tensor with ``x``'s shape, as ``empty_like`` lays it out: ``x``'s strides when they are
    dense (a transposed or channels-last ``x``), else contiguous (an expanded ``x``). On meta,
    ``empty_like`` runs a Python decomposition costing about 0.5 ms; this costs 3 us."""
    import torch

    shape = x.shape
    dtype = dtype or x.dtype
    if x.is_contiguous():
        return torch.empty(shape, dtype=dtype, device="meta")
    strides = x.stride()
    if _dense(shape, strides):
        return torch.empty_strided(shape, strides, dtype=dtype, device="meta")
    return torch.empty(shape, dtype=dtype, device="meta")


def _in_order(shape: Sequence[int], x: Any, dtype: Any = None, any_order: bool = False) -> Any:
    """A new meta tensor of ``shape`` laid out in the order of ``x``'s strides when ``x`` is dense
    (a cropped channels-last or transposed tensor keeps its layout) or, with ``any_order``, has no
    broadcast dimension (TensorIterator follows its first operand's order); else contiguous."""
    import torch

    dtype = dtype or x.dtype
    if x.is_contiguous() or not (any_order or _dense(x.shape, x.stride())):
        return torch.empty(tuple(shape), dtype=dtype, device="meta")
    strides = x.stride()
    order = sorted(range(len(shape)), key=lambda d: (strides[d], -d))  # fastest-moving first
    dense = [0] * len(shape)
    step = 1
    for d in order:
        dense[d] = step
        step *= max(shape[d], 1)
    return torch.empty_strided(tuple(shape), dense, dtype=dtype, device="meta")


def contiguous(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Same shape, contiguous whatever the input's layout (softmax, roll, group norm)."""
    import torch

    x = args[0]
    return torch.empty(x.shape, dtype=x.dtype, device="meta")


def window_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool = False) -> int:
    """Output length of a sliding window (convolution or pooling), as ATen computes it."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (ceil(span / s) if ceil_mode else floor(span / s)) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def broadcast(*shapes: Sequence[int]) -> tuple[int, ...]:
    """NumPy broadcasting of ``shapes``; ``RuntimeError`` when they do not broadcast."""
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for shape in shapes:
        for i, d in enumerate(shape, ndim - len(shape)):
            if d != 1:
                if out[i] not in (1, d):
                    raise RuntimeError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast")
                out[i] = d
    return tuple(out)


def same(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    return meta_like(args[0])


def inplace(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    return args[0] if args[0].is_meta else None


def suggested(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Same shape; channels-last for a channels-last input, else contiguous (the layout ATen's
    ``suggest_memory_format`` picks: roll, batch norm, masked_fill)."""
    return _empty(args[0].shape, args[0])


def clone(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    import torch

    fmt = kwargs.get("memory_format", torch.preserve_format)
    if fmt is torch.preserve_format:
        return meta_like(args[0])
    if fmt is torch.contiguous_format:
        return torch.empty(args[0].shape, dtype=args[0].dtype, device="meta")
    return None


def batch_norm(training_index: int | None) -> Shortcut:
    """Batch norm: the output has the input's shape. In eval the saved statistics are empty; in
    training they are one per channel (the running statistics' update writes nothing on meta)."""

    def answer(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        x = args[0]
        if x.dim() < 2 or (args[1] is not None and args[1].shape[0] != x.shape[1]):
            return None
        training = training_index is not None and _arg(args, kwargs, training_index, "training")
        stats = (x.shape[1],) if training else (0,)
        return _empty(x.shape, x), _empty(stats, x), _empty(stats, x)

    return answer


def layer_norm(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    x, normalized = args[0], tuple(args[1])
    axis = x.dim() - len(normalized)
    if axis < 0 or tuple(x.shape[axis:]) != normalized:
        return None
    stats = (*x.shape[:axis], *([1] * len(normalized)))
    import torch

    mean = torch.empty(stats, dtype=x.dtype, device="meta")  # the CPU kernel keeps the input's dtype
    return torch.empty(x.shape, dtype=x.dtype, device="meta"), mean, meta_like(mean)


def group_norm(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    x, n, group = args[0], int(args[3]), int(args[6])
    import torch

    mean = torch.empty((n, group), dtype=x.dtype, device="meta")
    return _empty(x.shape, x), mean, meta_like(mean)


def binary(inplace: bool, true_division: bool = False) -> Shortcut:
    """Elementwise ``a op b`` with broadcasting and type promotion. The output takes the layout of
    the first operand of the full output shape (TensorIterator lets the first operand decide);
    true division of integers gives the default float dtype. Left to run: ``div`` with a rounding
    mode, and scalars with integer tensors (their promotion depends on the op)."""

    def answer(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        import torch

        a, b = args[0], args[1]
        if not isinstance(a, torch.Tensor) or (true_division and kwargs.get("rounding_mode") is not None):
            return None
        if a.dtype == torch.bool or (isinstance(b, torch.Tensor) and b.dtype == torch.bool):
            return None  # bool arithmetic has op-specific rules (sub refuses it): let the op decide
        if inplace:
            if not a.is_meta:
                return None
            if isinstance(b, torch.Tensor) and broadcast(a.shape, b.shape) != tuple(a.shape):
                raise RuntimeError(f"output with shape {tuple(a.shape)} doesn't match the broadcast shape")
            return a
        if isinstance(b, torch.Tensor):
            shape = broadcast(a.shape, b.shape)
            dtype = torch.result_type(a, b)
            if true_division and not (dtype.is_floating_point or dtype.is_complex):
                dtype = torch.get_default_dtype()
            for like in (a, b):  # the first operand of the full shape decides (unless it is expanded)
                if tuple(like.shape) == shape and (like.is_contiguous() or 0 not in like.stride()):
                    return _in_order(shape, like, dtype, any_order=True)
            return torch.empty(shape, dtype=dtype, device="meta")
        if isinstance(b, (int, float)) and not isinstance(b, bool) and a.is_floating_point():
            return meta_like(a)
        return None

    return answer


def masked_fill(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    x, mask = args[0], args[1]
    if broadcast(x.shape, mask.shape) != tuple(x.shape):
        return None
    return contiguous(args, kwargs)  # whatever x's layout


def cat(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    import torch

    tensors = [t for t in args[0] if not (t.dim() == 1 and t.shape[0] == 0)]  # legacy empty tensors are skipped
    if not tensors:
        return None
    dim = int(_arg(args, kwargs, 1, "dim", 0))
    first = tensors[0]
    dim = dim % first.dim()
    total = 0
    for t in tensors:
        if t.dim() != first.dim() or any(t.shape[i] != first.shape[i] for i in range(first.dim()) if i != dim):
            raise RuntimeError(f"cat: sizes of tensors must match except in dimension {dim}")
        total += t.shape[dim]
    dtype = first.dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    shape = list(first.shape)
    shape[dim] = total
    if all(t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
           for t in tensors):  # channels-last inputs give a channels-last result
        return torch.empty(shape, dtype=dtype, device="meta", memory_format=torch.channels_last)
    return torch.empty(shape, dtype=dtype, device="meta")


def convolution(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups)``."""
    x, w = args[0], args[1]
    n = w.dim() - 2
    stride, padding, dilation = _ints(args[3], n), _ints(args[4], n), _ints(args[5], n)
    transposed, output_padding, groups = bool(args[6]), _ints(args[7], n), int(args[8])
    if x.dim() != n + 2:
        return None
    if x.dtype != w.dtype:
        raise RuntimeError(f"Input type ({x.dtype}) and weight type ({w.dtype}) should be the same")
    if min(padding) < 0:
        raise RuntimeError(f"negative padding is not supported (got {padding})")
    if transposed and any(output_padding[i] >= max(stride[i], dilation[i]) for i in range(n)):
        raise RuntimeError(f"output padding {output_padding} must be smaller than either stride {stride} or "
                           f"dilation {dilation}")
    if transposed:
        if x.shape[1] != w.shape[0]:
            raise RuntimeError(f"expected input {tuple(x.shape)} to have {w.shape[0]} channels, "
                               f"but got {x.shape[1]} channels instead")
        spatial = [(x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (w.shape[2 + i] - 1)
                   + output_padding[i] + 1 for i in range(n)]
        channels = w.shape[1] * groups
    else:
        if x.shape[1] != w.shape[1] * groups:
            raise RuntimeError(f"expected input {tuple(x.shape)} to have {w.shape[1] * groups} channels, "
                               f"but got {x.shape[1]} channels instead")
        spatial = [window_out(x.shape[2 + i], w.shape[2 + i], stride[i], padding[i], dilation[i]) for i in range(n)]
        channels = w.shape[0]
    if min(spatial, default=1) < 1:
        raise RuntimeError(f"calculated output size {tuple(spatial)} is too small for input {tuple(x.shape)} "
                           f"and kernel {tuple(w.shape[2:])}")
    return _empty((x.shape[0], channels, *spatial), x)


def mm(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    a, b = args[0], args[1]
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        return None
    if a.dtype != b.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {a.dtype} != {b.dtype}")
    return _empty((a.shape[0], b.shape[1]), a)


def addmm(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    out = mm(args[1:], kwargs)
    if out is not None and broadcast(args[0].shape, out.shape) != tuple(out.shape):
        raise RuntimeError(f"bias of shape {tuple(args[0].shape)} does not expand to {tuple(out.shape)}")
    return out


def bmm(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    a, b = args[0], args[1]
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        return None
    return _empty((a.shape[0], a.shape[1], b.shape[2]), a)


def baddbmm(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    return bmm(args[1:], kwargs)


def pool(with_indices: bool) -> Shortcut:
    """``max_pool2d_with_indices(x, k, stride, padding, dilation, ceil_mode)`` and
    ``avg_pool2d(x, k, stride, padding, ceil_mode, count_include_pad, divisor)``."""

    def answer(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        import torch

        x = args[0]
        n = 2
        if x.dim() not in (3, 4):
            return None
        k = _ints(_arg(args, kwargs, 1, "kernel_size"), n)
        s = _ints(_arg(args, kwargs, 2, "stride") or k, n)
        p = _ints(_arg(args, kwargs, 3, "padding", 0), n)
        if with_indices:
            d = _ints(_arg(args, kwargs, 4, "dilation", 1), n)
            ceil_mode = bool(_arg(args, kwargs, 5, "ceil_mode", False))
        else:
            d, ceil_mode = (1, 1), bool(_arg(args, kwargs, 4, "ceil_mode", False))
        if any(2 * p[i] > k[i] for i in range(n)):
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={p}, kernel={k}")
        lead = x.shape[:-2]
        spatial = [window_out(x.shape[-2 + i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(n)]
        if min(spatial) < 1:
            raise RuntimeError(f"pooling output size {tuple(spatial)} is too small for input {tuple(x.shape)}")
        out = _empty((*lead, *spatial), x)
        if with_indices:
            return out, torch.empty_strided(out.shape, out.stride(), dtype=torch.int64, device="meta")
        return out

    return answer


def adaptive_pool(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    x, size = args[0], args[1]
    size = _ints(size, x.dim() - 2 if x.dim() > 3 else 2)
    if x.dim() not in (3, 4, 5) or len(size) > x.dim() - 1:
        return None
    return _empty((*x.shape[: x.dim() - len(size)], *size), x)


def mean(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``mean.dim(x, dim, keepdim=False, dtype=None)``; other overloads run."""
    import torch

    x = args[0]
    dims = _arg(args, kwargs, 1, "dim")
    if dims is None or _arg(args, kwargs, 3, "dtype") is not None or not x.is_floating_point():
        return None
    nd = x.dim()
    dims = {int(d) % nd for d in ([dims] if isinstance(dims, int) else dims)} if nd else set()
    if not dims:
        return None
    keep = bool(_arg(args, kwargs, 2, "keepdim", False))
    shape = [1 if i in dims else s for i, s in enumerate(x.shape)] if keep else [
        s for i, s in enumerate(x.shape) if i not in dims]
    return torch.empty(shape, dtype=x.dtype, device="meta")


def upsample(dims: int) -> Shortcut:
    """``upsample_*(x, output_size, ...)`` of ``dims`` spatial dimensions: ``x``'s batch and channels at
    ``output_size``, contiguous, then channels-last for a channels-last 4-D input, as ATen's kernels make it. A call
    they may refuse (an empty input or output, scale factors too), or an input laid out both ways, runs its kernel."""

    def answer(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        import torch

        x, size = args[0], _arg(args, kwargs, 1, "output_size")
        last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
        if size is None or x.dim() != dims + 2 or len(size) != dims or min(x.shape[1:]) < 1 or min(size) < 1 \
                or any(type(a) in (list, tuple) for a in (*args[2:], *kwargs.values())) \
                or (last is not None and x.is_contiguous(memory_format=last)) == x.is_contiguous() \
                or x.dim() == 5 and not x.is_contiguous():  # 3-D kernels differ on a channels-last 1x1x1 output
            return None
        out = torch.empty((*x.shape[:2], *map(int, size)), dtype=x.dtype, device="meta")
        return out.contiguous(memory_format=torch.contiguous_format if x.is_contiguous() else last)  # as they do

    return answer


def constant_pad(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    x, pad = args[0], list(args[1])
    shape = list(x.shape)
    for i in range(len(pad) // 2):
        dim = len(shape) - 1 - i
        shape[dim] += int(pad[2 * i]) + int(pad[2 * i + 1])
        if shape[dim] < 0:
            return None
    if all(int(p) >= 0 for p in pad):  # padding allocates in the suggested layout; a crop keeps x's
        return _empty(shape, x)
    return _in_order(shape, x)


