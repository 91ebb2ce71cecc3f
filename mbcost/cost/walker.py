"""The one walker: run a model's ``forward`` and record every ATen op it issues.

How it runs (``execute``):

* ``meta``: the forward runs on the meta device, so nothing is allocated or computed; analysing
  VGG16 at 2048x2048 with batch 64 costs the same as at 224. Ops whose output shape is known
  are answered by ``mbcost.cost.shortcuts`` without running their meta kernel, and each answer
  (output layouts, priced record) is memoised by the call's signature (shapes, strides, dtypes,
  scalars), so a repeated block or a second analysis reuses it; the rest run on the meta device.
  The user's parameters stay where they are: an op that only needs their shapes reads the
  shapes, and one that must run gets meta stand-ins for them, made once per tensor. So tied
  (shared) parameters need nothing special, and a module called twice is recorded twice.
  A layer of one of torch.nn's own pure classes (convolution, norm, activation, pooling,
  linear...), or a block met as often, is traced the first times it is met with the same settings,
  weights' layouts and inputs' layouts, recorded the third, and replayed after that
  (``mbcost.cost.programs``): the same records, without its Python forward or torch's dispatcher.
* ``real``: the forward runs on the CPU with random inputs (seeded), in eval mode, without
  grad, on a copy of the model: for data-dependent models (detection's ``nonzero``, an
  ``if x.sum() > 0``). Its counts then depend on the data (the number of region proposals...).
  A run that would not fit in memory is refused beforehand, with the estimate. Recurrent layers run
  with oneDNN off (``_generic_recurrent_class``), so that they issue the same ops as on meta.
* ``auto``: ``meta``, and ``real`` when the meta run fails; the result says which ran and why.

On the meta run the walk also follows every storage's lifetime (``mbcost.cost.lifetimes``) for
the peak activation memory, and with ``train=True`` it runs the forward in train mode and costs
the backward (``mbcost.cost.training``): gradient flow, what each op saves, gradient products.

The user's model is never changed: the forward runs on the walk's own shallow copy of the module
tree (``mbcost.cost.shadow``), whose module calls say which module issued each op; train/eval
flags and whatever the forward rebinds land on the copy. No global hook is registered.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from math import prod
from typing import TYPE_CHECKING, Any

from mbcost.cost.answers import tensors_in
from mbcost.cost.records import RecordBook, Trace
from mbcost.cost.torch_internals import output_leaves, recorder_class
from mbcost.cost.walk import Walk
from mbcost.errors import AnalysisError, SpecError
from mbcost.inputs import Inputs

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ForwardFailed", "trace_model"]

log = logging.getLogger(__name__)

EXECUTE_MODES = ("auto", "meta", "real")


class ForwardFailed(Exception):
    """A forward pass failed; ``where`` names the module and op, ``reason`` the first line."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, cut at its first sentence when it runs long."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    if len(line) > 160 and ". " in line[:300]:
        line = line[: line.index(". ") + 1]
    return line


def _forward(walk: Walk, args: tuple, kwargs: dict) -> None:
    """Run ``walk``'s forward on ``args`` and ``kwargs``; any failure of the forward is a ``ForwardFailed``."""
    Recorder = recorder_class()
    torch = walk.torch
    try:
        # the walk's own copy of the tree: what the forward rebinds, and the train/eval flags, touch
        # only the copy
        with walk.shadow.calls() as root:
            inputs = tensors_in((args, tuple(kwargs.values())), [], walk.tensor_type)
            if walk.lifetimes is not None:
                walk.lifetimes.inputs(inputs)
            if walk.train:  # an input that requires grad gets its gradient computed (not data alone)
                walk.grad_ids.update(id(t) for t in inputs if t.requires_grad)
            with torch.no_grad(), _composite_attention(torch), Recorder(walk), \
                    (contextlib.nullcontext() if walk.meta else _generic_recurrent_class()()):
                result = root(*args, **kwargs)
        if walk.lifetimes is not None:
            walk.lifetimes.outputs([t for t in output_leaves(result) if isinstance(t, walk.tensor_type)])
    except Exception as exc:  # any failure of the user's forward: say where, keep the reason
        raise ForwardFailed(walk.where(in_op=False), _first_line(exc)) from exc


@contextlib.contextmanager
def _composite_attention(torch: Any) -> Iterator[None]:
    """Turn off nn.MultiheadAttention's and nn.TransformerEncoderLayer's fused eval fast path for the
    walk (restored afterwards), so that their projections and products are seen op by op. The meta
    device never takes it; a real CPU forward would, hiding the work inside one fused kernel."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


#: torch's recurrent layers (``_VF.lstm`` and its kin, what nn.LSTM, nn.GRU and nn.RNN call).
_RECURRENT = ("lstm", "gru", "rnn_tanh", "rnn_relu")


@functools.cache
def _generic_recurrent_class() -> type:
    """A function mode for the real CPU forward: torch's recurrent layers run with oneDNN off, so that
    they issue the same ops as on the meta device (per time step: ``addmm``, gates, cell update).
    With oneDNN on, an LSTM on the CPU runs as one fused ``mkldnn_rnn_layer`` per layer and
    direction, an op with no formula whose products would go uncounted (as they do in
    ``FlopCounterMode``). oneDNN's global switch is the only one torch reads for that choice, so it
    is turned off for the call of the recurrent layer alone: convolutions keep their fast kernels."""
    import torch
    from torch.overrides import TorchFunctionMode

    recurrent = frozenset(id(getattr(torch, name)) for name in _RECURRENT)
    mkldnn = torch.backends.mkldnn

    class GenericRecurrent(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            if id(func) not in recurrent or not mkldnn.enabled:
                return func(*args, **(kwargs or {}))
            mkldnn.enabled = False
            try:
                return func(*args, **(kwargs or {}))
            finally:
                mkldnn.enabled = True

    return GenericRecurrent


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a walk (as ``timeit`` does), resuming it after.
    The walk keeps every tensor and record it makes alive until it ends, so a collection during it
    frees nothing, and the first full collection of a fresh process (torch's and the model's objects)
    costs several times the walk itself: about 170 ms against 40 ms for densenet121."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _meta_inputs(inputs: Inputs, train: bool = False) -> tuple[tuple, dict]:
    """Meta tensors for ``inputs``; in training, those given with ``requires_grad`` require it."""
    import torch

    def make(spec: Any) -> Any:
        layout = torch.channels_last if spec.channels_last else torch.contiguous_format
        return torch.empty(spec.shape, dtype=getattr(torch, spec.dtype), device="meta", memory_format=layout,
                           requires_grad=train and spec.requires_grad)

    return tuple(make(s) for s in inputs.args), {s.name: make(s) for s in inputs.kwargs}


def _real_inputs(inputs: Inputs, train: bool = False) -> tuple[tuple, dict]:
    """Random CPU tensors for ``inputs`` (seeded by the caller), as ``_meta_inputs``."""
    import torch

    def make(spec: Any) -> Any:
        dtype = getattr(torch, spec.dtype)
        if dtype.is_floating_point:
            x = torch.randn(spec.shape, dtype=dtype)
            x = x.contiguous(memory_format=torch.channels_last) if spec.channels_last else x
            return x.requires_grad_(train and spec.requires_grad)
        if dtype == torch.bool:
            return torch.randint(0, 2, spec.shape).bool()
        return torch.randint(0, 2, spec.shape, dtype=dtype)  # token ids 0/1: valid for any vocabulary

    return tuple(make(s) for s in inputs.args), {s.name: make(s) for s in inputs.kwargs}


def _cpu_copy(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` with real weights: meta tensors are materialised and re-initialised."""
    import copy

    clone = copy.deepcopy(model)
    if any(t.is_meta for t in [*clone.parameters(), *clone.buffers()]):
        clone = clone.to_empty(device="cpu")
        for m in clone.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
    return clone.to("cpu")


def _float_size(model: nn.Module) -> int:
    """Bytes per element of ``model``'s floating-point weights (4 when it has none)."""
    return next((t.element_size() for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()), 4)


def _check_real_fits(model: nn.Module, inputs: Inputs, activation_bytes: int, where: str) -> None:
    """Refuse a real CPU forward whose estimate exceeds the available memory, before anything is allocated.

    The estimate is the measuring commands' (``mbcost.bench.devices.estimate_memory``): weights, inputs
    and twice the activations (workspace, allocator rounding), plus a copy of the weights (the real run
    works on its own model). ``activation_bytes`` is the meta walk's activation peak, or, when the meta
    walk stopped early, every activation it traced before it stopped (``where`` says which).
    """
    from mbcost.host import MEMORY_HEADROOM, available_cpu_memory
    from mbcost.units import nbytes

    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    estimate = 2 * weights + inputs.nbytes + 2 * activation_bytes
    available = available_cpu_memory()
    if available is not None and estimate > MEMORY_HEADROOM * available:
        raise AnalysisError(
            f"a real CPU forward would need about {nbytes(estimate)} (weights {nbytes(weights)} and a copy, inputs "
            f"{nbytes(inputs.nbytes)}, 2 x activations {nbytes(activation_bytes)} {where}) but only "
            f"{nbytes(available)} is available; lower the batch or input size")


def trace_model(
    model: nn.Module,
    inputs: Inputs,
    *,
    execute: str = "auto",
    materialize: Callable[[], nn.Module] | None = None,
    train: bool = False,
    replay: bool = True,
    float_bytes: int | None = None,
) -> Trace:
    """Walk ``model`` on ``inputs`` and return its per-op records.

    Args:
        model: any module; it is read, never changed.
        inputs: shapes and dtypes of the forward's arguments.
        execute: ``auto``, ``meta`` or ``real`` (see the module docstring).
        materialize: builds a CPU model with real weights for the real run (default: a copy).
        train: walk a training step's forward (train mode) and cost its backward (``training.py``).
        replay: replay pure torch.nn layers' recorded calls (``programs.py``); off, every layer is
            traced (the same records, slower: for tests).
        float_bytes: count every floating-point tensor (activations, inputs, the weights an op reads) at
            this many bytes per element instead of its dtype's: 1 for the int8 analysis
            (``mbcost.cost.precision``); integer tensors keep their dtype.

    Raises:
        AnalysisError: the forward failed (on meta, and on the CPU when it was tried), or the
            real run would not fit in memory.
    """
    if execute not in EXECUTE_MODES:
        raise SpecError(f"unknown execution mode {execute!r}; choose one of {', '.join(EXECUTE_MODES)}")
    meta_failure: ForwardFailed | None = None
    # every real forward is guarded by a memory estimate made on the meta device first (nothing allocated)
    try:
        with _collector_paused():  # the walk's copy of the tree is made here too
            walk = Walk(model, meta=True, train=train, replay=replay, float_bytes=float_bytes)
            book = walk.book
            _forward(walk, *_meta_inputs(inputs, train))
        if execute != "real":
            return _finish(book, "meta", None, walk.peak(), walk.train_peak())
        activation_bytes, where = walk.peak()[0] or 0, "at their peak, estimated on the meta device"
        if float_bytes:  # the real forward runs at the model's own float dtype, not at the analysed size
            activation_bytes = activation_bytes * _float_size(model) // float_bytes
    except ForwardFailed as failed:
        if execute == "meta":
            raise AnalysisError(f"the forward pass failed on the meta device for input {inputs.label}, in "
                                f"{failed.where}: {failed.reason} (try --execute real)") from None
        meta_failure = failed if execute == "auto" else None
        activation_bytes = sum(r.output_bytes for r in book.records)
        if float_bytes:
            activation_bytes = sum(prod(r.output_shape) for r in book.records) * _float_size(model)
        where = "traced before the data-dependent op"
    _check_real_fits(model, inputs, activation_bytes, where)
    import torch

    real_model = materialize() if materialize is not None else _cpu_copy(model)
    walk = Walk(real_model, meta=False, train=train, float_bytes=float_bytes)
    book = walk.book
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            _forward(walk, *_real_inputs(inputs, train))
        except ForwardFailed as failed:
            before = (f"on the meta device ({meta_failure.where}: {meta_failure.reason}) and then "
                      if meta_failure else "")
            raise AnalysisError(f"the forward pass failed for input {inputs.label} {before}on the CPU, in "
                                f"{failed.where}: {failed.reason}") from None
    reason = (f"the meta run stopped in {meta_failure.where}: {meta_failure.reason}" if meta_failure
              else "asked for (--execute real)")
    if meta_failure:
        log.warning("ran the real forward on the CPU: %s", reason)
    return _finish(book, "real", reason, (None, None), (None, None, None))


def _finish(book: RecordBook, execution: str, reason: str | None, peak: tuple[int | None, str | None],
            train_peak: tuple[int | None, str | None, int | None]) -> Trace:
    trace = book.finish()
    trace.execution, trace.fallback_reason = execution, reason
    trace.peak_activation_bytes, trace.peak_op = peak
    trace.train_peak_activation_bytes, trace.train_peak_op, trace.train_peak_grad_bytes = train_peak
    if trace.uncounted:
        log.info("ops without a cost formula: %s", ", ".join(sorted({u.op for u in trace.uncounted})))
    return trace
