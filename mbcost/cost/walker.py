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
  linear...) is traced once per settings, weights' layouts and inputs' layouts, and replayed
  after that (``mbcost.cost.programs``): the same records, without its Python forward or torch's
  dispatcher.
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
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, Any

from mbcost.cost.lifetimes import Lifetimes
from mbcost.cost.ops import SHORTCUTS, adapter_of, is_inplace, op_name
from mbcost.cost.programs import PROGRAMS, Capture, Program, fill, layer_key, remember_program, weights_of
from mbcost.cost.records import Priced, RecordBook, Structure, Trace, price
from mbcost.cost.shadow import shadow_tree
from mbcost.cost.shortcuts import meta_like
from mbcost.cost.training import BIAS_FIRST, COPIES_INPUT_IN_PLACE, SAVED
from mbcost.cost.workspace import conv_workspace
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


def _tensors(args: Any, out: list[Any], tensor: type) -> list[Any]:
    """The tensors among an op's arguments, lists of tensors (``cat``) included."""
    for a in args:
        if isinstance(a, tensor):
            out.append(a)
        elif type(a) in (list, tuple) and a and not isinstance(a[0], int):
            _tensors(a, out, tensor)
    return out


@dataclass(frozen=True)
class _OpInfo:
    """What the walker needs to know of one ATen overload, looked up once per overload."""

    packet: str
    name: str
    inplace: bool
    shortcut: Any
    adapter: Any
    memoised: bool  # whether its shortcut's answer may be memoised (``_signature``)


_OP_INFO: dict[Any, _OpInfo] = {}
#: Ops whose shortcut also reads global state: true division of integers gives the default dtype.
_NOT_MEMOISED = frozenset({"div", "div_"})


def _op_info(func: Any) -> _OpInfo:
    info = _OP_INFO.get(func)
    if info is None:
        name = op_name(func)
        packet = func.overloadpacket.__name__ if func.namespace == "aten" else name
        info = _OpInfo(packet, name, is_inplace(func), SHORTCUTS.get(packet), adapter_of(name),
                       packet not in _NOT_MEMOISED)
        if func.namespace == "aten":  # a user's op is looked up on each call: its formula may come and go
            _OP_INFO[func] = info
    return info


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one shortcut op call gave, for any later call with the same signature (``_signature``):
    its outputs' layouts (or which argument it returns, in place), its priced record and its scratch.
    Shortcuts and adapters read only shapes, strides, dtypes and scalars, so the answer is a pure
    function of the signature, like the cache of ``FakeTensorMode``'s dispatch."""

    outs: tuple[tuple[Any, tuple[int, ...], Any], ...]  # (shape, strides, dtype) of each new output
    alias: int  # the argument returned (an in-place op), or -1 for new outputs
    single: bool  # one tensor, not a tuple
    priced: Priced | None  # None: the op has no adapter; FREE: its adapter said "free"
    scratch: int

    def replay(self, args: tuple, empty_strided: Any) -> Any:
        if self.alias >= 0:
            return args[self.alias]
        if self.single:
            shape, strides, dtype = self.outs[0]
            return empty_strided(shape, strides, dtype=dtype, device=_META)
        return tuple(empty_strided(shape, strides, dtype=dtype, device=_META) for shape, strides, dtype in self.outs)


#: Answers by signature, shared by all walks (bounded: cleared when full).
_ANSWERS: dict[tuple, _Answer] = {}
_MAX_ANSWERS = 16384
_SCALARS = (int, float, bool, str, type(None))
_UNSEEN = object()
_CALL_IMPL: Any = None  # torch.nn.Module._call_impl, set on the first walk (importing torch is lazy)
_META: Any = "meta"  # torch.device("meta") from the first walk on (an object is quicker to pass than a string)
_STRIDED: Any = None  # torch.strided: only dense inputs have the strides a layer program is keyed by


def _signature(func: Any, args: tuple, kwargs: dict, tensor: type) -> tuple | None:
    """The op and everything its shortcut and adapter read: each tensor's shape, strides, dtype and
    whether it is on meta, and the other arguments with their types; ``None`` when not memoisable
    (lists of tensors, 0-dim tensors, whose type promotion depends on more than their dtype)."""
    key: list[Any] = [func]
    for a in (*args, *kwargs.items()) if kwargs else args:
        if isinstance(a, tensor):
            shape = a.shape
            if not shape:
                return None
            key.append((shape, a.stride(), a.dtype, a.is_meta))
        elif type(a) in _SCALARS:
            key.append((type(a), a))
        elif type(a) in (list, tuple):
            if any(not isinstance(v, _SCALARS) for v in a):
                return None
            key.append((type(a), tuple((type(v), v) for v in a)))
        else:
            return None  # a dtype, memory format, device...: let the shortcut answer each time
    return tuple(key)


#: ``_Answer.priced`` of an op its adapter calls free (a view, a copy): nothing to record.
FREE: Any = ()


def _answer_of(args: tuple, out: Any, tensor: type, priced: Priced | None, scratch: int) -> _Answer | None:
    """The answer an op call gave, for later calls with its signature; ``None`` when its outputs are
    not new meta tensors nor one of its arguments."""
    for i, a in enumerate(args):
        if out is a:
            return _Answer((), i, True, priced, scratch)
    outs = (out,) if isinstance(out, tensor) else out
    if type(outs) not in (tuple, list) or not all(isinstance(o, tensor) and o.is_meta for o in outs) \
            or any(o is a for o in outs for a in args):
        return None
    return _Answer(tuple((o.shape, o.stride(), o.dtype) for o in outs), -1, isinstance(out, tensor), priced, scratch)


def _remember(key: tuple, answer: _Answer | None) -> _Answer | None:
    if answer is not None:
        if len(_ANSWERS) >= _MAX_ANSWERS:
            _ANSWERS.clear()
        _ANSWERS[key] = answer
    return answer


class _Call:
    """What ``Module.__call__`` runs for one module of a walk's copy of the tree (``shadow.py``):
    the ops inside are ``mod``'s, its arguments live until it returns, and a pure torch.nn layer
    replays its program (``Walk.layer``). A small object rather than a closure: the walk makes one
    per module, and each is one object for Python's collector to scan, not nine."""

    __slots__ = ("copy", "mod", "walk")

    def __init__(self, walk: _Walk, mod: Any, copy: Any) -> None:
        self.walk, self.mod, self.copy = walk, mod, copy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        walk, mod, copy = self.walk, self.mod, self.copy
        walk.stack.append((mod, [True]))
        walk.entered = mod
        walk.op = ""
        held = False
        try:
            if walk.replay and not kwargs:
                key = layer_key(copy)
                if key is not None:
                    held = True
                    return walk.layer(copy, key, args)  # holds the arguments itself
            d = copy.__dict__
            if walk.plain and not (d["_forward_pre_hooks"] or d["_forward_hooks"] or d["_backward_pre_hooks"]
                                   or d["_backward_hooks"]):
                return copy.forward(*args, **kwargs)  # what Module._call_impl does without hooks
            return _CALL_IMPL(copy, *args, **kwargs)  # hooks, then forward, as Module.__call__ runs them
        finally:
            walk.stack.pop()
            if walk.lifetimes is not None and args and not held:
                walk.lifetimes.hold(_tensors(args, [], walk.tensor_type))


class _Walk:
    """One forward pass of ``model`` under a dispatch mode that records each op into ``book``."""

    def __init__(self, model: nn.Module, book: RecordBook, *, meta: bool, train: bool = False,
                 replay: bool = True, float_bytes: int | None = None) -> None:
        import torch

        global _CALL_IMPL, _META, _STRIDED
        _CALL_IMPL, _META, _STRIDED = torch.nn.Module._call_impl, torch.device("meta"), torch.strided
        from torch.nn.modules import module as nn_module

        # no global module hooks (another tool's) nor TorchScript tracing: a module without hooks of its
        # own runs just its forward
        self.plain = not (nn_module._global_forward_pre_hooks or nn_module._global_forward_hooks
                          or nn_module._global_backward_pre_hooks or nn_module._global_backward_hooks
                          or torch._C._get_tracing_state())

        self.torch = torch
        self.tensor_type = torch.Tensor
        self.empty_strided = torch.empty_strided
        self.model = model
        self.book = book
        self.meta = meta
        # layer programs (``mbcost.cost.programs``): replayed on the meta run unless turned off, or
        # unless another tool's global module hooks must see every call
        self.replay = replay and meta and self.plain
        self.capture: Capture | None = None  # the layer call being recorded into a program
        # bytes per element of every floating-point tensor when not its own (the int8 analysis: 1)
        self.float_bytes = float_bytes
        self.context = (train, torch.get_default_dtype(), float_bytes)  # what else a layer's calls depend on
        self.weight_ids: set[int] = set(book.weight_ids)
        self.stand_ins: dict[int, Any] = {}
        self.keep_alive: list[Any] = []  # ids are only stable while the objects live
        self.stack: list[tuple[Any, list[bool]]] = []
        self.op = ""
        self.failed_at: str | None = None  # where an op raised, before the hooks unwound the stack
        self.entered: Any = None  # the module entered last: where a Python-level check failed
        self.lifetimes = Lifetimes(set(book.weight_storages), book.weight_keys, float_bytes) if meta else None
        # training: the tensors that carry a gradient (trainable weights and what depends on them)
        self.train = train
        self.grad_ids: set[int] = {id(p) for p in model.parameters() if p.requires_grad} if train else set()

    # -- module attribution (each call of the walk's copy of the tree, ``shadow.py``) ---------

    def wrap(self, mod: Any, copy: Any) -> _Call:
        """The call of ``copy``, the walk's copy of ``mod`` (``_Call``). On the meta run, a recurrent
        layer's copy (nn.LSTM, nn.GRU, nn.RNN) gets meta stand-ins in the weight list it hands to
        torch: torch checks that list's devices against the input's before any op is issued, where
        the walk could give stand-ins as it does for every other weight."""
        if self.meta:
            flat = copy.__dict__.get("_flat_weights")
            if type(flat) is list and any(isinstance(w, self.tensor_type) and not w.is_meta for w in flat):
                copy.__dict__["_flat_weights"] = [w if not isinstance(w, self.tensor_type) or w.is_meta
                                                  else self._stand_in(w) for w in flat]
        return _Call(self, mod, copy)

    def layer(self, copy: Any, key: tuple, args: tuple) -> Any:
        """Call a pure torch.nn layer: replay its program for these inputs, or trace it and record one.
        The arguments are held to the call's end (``Lifetimes.hold``) unless the program's last call
        read them all anyway."""
        sig: list[Any] = [self.context, key]
        weight_ids = self.weight_ids
        for a in args:
            if isinstance(a, self.tensor_type) and a.layout is _STRIDED:
                sig.append((a.shape, a.stride(), a.dtype, a.is_meta, id(a) in weight_ids))
            elif type(a) in _SCALARS:
                sig.append((type(a), a))
            else:
                return self._traced(copy, args)
        full = tuple(sig)
        try:
            program = PROGRAMS.get(full, _UNSEEN)
        except TypeError:  # a setting rebound to something unhashable (``conv.padding = [1, 1]``)
            return self._traced(copy, args)
        if program is None:
            return self._traced(copy, args)
        if program is _UNSEEN:
            self.capture = capture = Capture()
            try:
                result = self._traced(copy, args)
            finally:
                self.capture = None
            remember_program(full, capture.program(copy, args, result, self.tensor_type, _op_info))
            return result
        with self.torch._C._DisableTorchDispatch():  # as inside the mode: ops made here are not recorded
            result = self.replay_program(program, args, weights_of(copy))
        if not program.holds and self.lifetimes is not None and args:
            self.lifetimes.hold(_tensors(args, [], self.tensor_type))
        return result

    def _traced(self, copy: Any, args: tuple) -> Any:
        """A layer's forward, run under the dispatch mode (its hooks, if any, run as usual)."""
        result = _CALL_IMPL(copy, *args)
        if self.lifetimes is not None and args:
            self.lifetimes.hold(_tensors(args, [], self.tensor_type))
        return result

    def replay_program(self, program: Program, inputs: tuple, weights: list[Any]) -> Any:
        """Run a layer's program with this call's tensors. A recorded step with a memoised answer is
        recorded from what the program kept (its bytes; which of its tensors may be activations); any
        other step, and every step of a training walk, goes through ``run_op``."""
        vals = [*inputs, *weights]
        fast = not self.train and self.lifetimes is not None
        book, lifetimes = self.book, self.lifetimes
        for step in program.steps:
            answer, recorded = step.answer, step.recorded
            if fast and recorded is not None and answer is not None and step.alias != -2:
                info = step.info
                self.op = info.packet
                out = vals[step.alias] if step.alias >= 0 else answer.replay((), self.empty_strided)
                mod, first = self.stack[-1]
                index = len(book.records)
                book.add(mod, first_in_call=first[0], op=info.name, priced=answer.priced, input_bytes=recorded[0],
                         output_bytes=recorded[1], weight_bytes=recorded[2], inplace=info.inplace)
                first[0] = False
                lifetimes.op([vals[i] for i in step.reads], [out] if step.outs == 1 else list(out),
                             (mod, info.name, index), answer.scratch if info.name == "convolution" else 0)
            else:
                args, kwargs = fill(step, vals)
                out = self.run_op(step.func, step.info, args, kwargs, [vals[i] for i in step.tensors], answer)
            if step.outs == 1:
                vals.append(out)
            else:
                vals.extend(out)
        return program.result_with(vals)

    def where(self, in_op: bool = True) -> str:
        """The module (and, for a failing op, the op) the forward is in; after a failure outside any
        op (a Python check in a forward), the module entered last."""
        if self.failed_at:
            return self.failed_at
        mod = self.stack[-1][0] if self.stack else (self.entered or self.model)
        name = self.book.names.get(mod, "") or "(root)"
        op = self.op if "::" in self.op else f"aten.{self.op}"  # a user's op by its qualified name
        return f"module {name} ({type(mod).__name__})" + (f", op {op}" if self.op and in_op else "")

    # -- running one op -------------------------------------------------------------------

    def _stand_in(self, t: Any) -> Any:
        s = self.stand_ins.get(id(t))
        if s is None:
            s = meta_like(t)
            self.stand_ins[id(t)] = s
            self.keep_alive.append(t)
            if id(t) in self.grad_ids:
                self.grad_ids.add(id(s))
            if id(t) in self.weight_ids:
                self.weight_ids.add(id(s))
                if self.lifetimes is not None:
                    self.lifetimes.weight_storages.add(s.untyped_storage()._cdata)
        return s

    def run_meta(self, func: Any, args: tuple, kwargs: dict, tensors: list[Any]) -> Any:
        """Run ``func`` on the meta device; tensors elsewhere (the user's weights) get stand-ins."""
        for t in tensors:
            if not t.is_meta:
                break
        else:
            return func(*args, **kwargs)
        from torch.utils._pytree import tree_map_only

        to_meta = (lambda t: t if t.is_meta else self._stand_in(t))  # noqa: E731
        args, kwargs = tree_map_only(self.tensor_type, to_meta, (args, kwargs))
        return func(*args, **kwargs)

    def _on_meta(self, tensors: list[Any]) -> bool:
        """Whether an op belongs to the meta run: any meta tensor or weight among its arguments."""
        weight_ids = self.weight_ids
        for t in tensors:
            if t.is_meta or id(t) in weight_ids:
                return True
        return False

    def dispatch(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """One op the forward issued (through the dispatch mode)."""
        tensors = _tensors(args, [], self.tensor_type)
        if kwargs:
            _tensors(kwargs.values(), tensors, self.tensor_type)
        return self.run_op(func, _OP_INFO.get(func) or _op_info(func), args, kwargs, tensors, None)

    def run_op(self, func: Any, info: _OpInfo, args: tuple, kwargs: dict, tensors: list[Any],
               known: _Answer | None) -> Any:
        """Answer one op (``known``: its memoised answer, from a layer program) and record it."""
        self.op = info.packet
        # On the meta run, ops on tensors the forward made itself on the CPU (an ``arange`` of
        # positions), none of them a weight, run as they are: index arithmetic later code may read.
        key = answer = None
        try:
            if known is not None:
                out = known.replay(args, self.empty_strided)
                answer = known
            elif self.meta and tensors and self._on_meta(tensors):
                out = None
                if info.shortcut is not None and "out" not in kwargs:
                    key = _signature(func, args, kwargs, self.tensor_type) if info.memoised else None
                    if key is not None and self.float_bytes:  # its scratch bytes depend on the element size
                        key = (self.float_bytes, key)
                    answer = _ANSWERS.get(key) if key is not None else None
                    if answer is not None:
                        out = answer.replay(args, self.empty_strided)
                    else:
                        out = info.shortcut(args, kwargs)
                if out is None:
                    key = None
                    out = self.run_meta(func, args, kwargs, tensors)
            else:
                out = func(*args, **kwargs)
        except Exception:
            self.failed_at = self.failed_at or self.where()
            raise
        if info.inplace and tensors and all(id(t) in self.weight_ids for t in tensors):
            if self.capture is not None:
                self.capture.add(func, args, kwargs, out, answer)
            return out  # a state update (BatchNorm's num_batches_tracked += 1 in training): bookkeeping
        before = len(self.book.records)
        priced = None
        if info.adapter is None:
            mod = self.stack[-1][0] if self.stack else self.model
            self.book.add_uncounted(info.name, mod)
        else:
            # a priced call kept by a memoised answer or a program is met again: its record may be reused
            reuse = answer is not None or key is not None or self.capture is not None
            try:  # its formula is a user's for a custom op (mbcost.cost.custom): it may fail
                priced = self.record(info, args, kwargs, out, tensors, answer.priced if answer is not None else None,
                                     reuse)
            except Exception:
                self.failed_at = self.failed_at or self.where()
                raise
        recorded = len(self.book.records) > before
        scratch = 0
        if recorded and info.name == "convolution" and self.lifetimes is not None:
            scratch = answer.scratch if answer is not None else self._scratch(self.book.records[-1])
        if answer is None and (key is not None or self.capture is not None and not tensors and self.meta):
            # a new answer: memoised by signature, or kept by a layer program (a factory call such as
            # BatchNorm's empty reserve tensor, which depends on its constant arguments only)
            answer = _answer_of(args, out, self.tensor_type, FREE if priced is None and info.adapter else priced,
                                scratch)
            if key is not None:
                _remember(key, answer)
        if self.capture is not None:
            self.capture.add(func, args, kwargs, out, answer, self.book.records[-1] if recorded else None)
        writes = None
        if self.lifetimes is not None:
            writes = [out] if isinstance(out, self.tensor_type) else _tensors((out,), [], self.tensor_type)
            mod = self.stack[-1][0] if self.stack else self.model
            self.lifetimes.op(tensors, writes, (mod, info.name, before if recorded else None), scratch)
        if self.train:
            self.backward_of(info, tensors, out, writes, len(self.book.records) > before)
        return out

    def _scratch(self, layer: Any) -> int:
        """A convolution's scratch memory on the CPU (``mbcost.cost.workspace``)."""
        if layer.weight_shape is None or layer.stride is None or isinstance(layer.padding, str):
            return 0
        e = layer.output_bytes // max(1, prod(layer.output_shape))
        return conv_workspace(layer.input_shape, layer.weight_shape, layer.output_shape, layer.stride,
                              layer.padding, layer.dilation or (1,) * len(layer.stride), layer.groups or 1, e)

    def backward_of(self, info: _OpInfo, tensors: list[Any], out: Any, writes: list[Any] | None,
                    recorded: bool) -> None:
        """Training: gradient flow, what the op saves for backward and its backward cost."""
        grad_ids = self.grad_ids
        needing = [t for t in tensors if id(t) in grad_ids]
        if not needing:
            return
        if writes is None:
            writes = [out] if isinstance(out, self.tensor_type) else _tensors((out,), [], self.tensor_type)
        for o in writes:
            grad_ids.add(id(o))
            self.keep_alive.append(o)
        weight_ids = self.weight_ids
        acts = [t for t in tensors if id(t) not in weight_ids]
        if recorded:
            layer = self.book.records[-1]
            operands = tensors[1:3] if info.name in BIAS_FIRST else tensors[:2]
            products = sum(1 for t in operands if id(t) in grad_ids) if layer.macs else 0
            self.book.set_backward(layer.macs * products, 2 * layer.elementwise_ops)
        if self.lifetimes is not None:
            rule = SAVED.get(info.name, ())
            saved = [*(acts[:1] if "in" in rule else []), *(acts if "ins" in rule else []),
                     *(writes[:1] if "out" in rule else []), *(writes[1:] if "extra" in rule else [])]
            grad_bytes = sum(t.numel() * t.element_size() for t in writes[:1])
            grad_bytes += sum(t.numel() * t.element_size() for t in acts if id(t) in grad_ids)
            copies = 0
            if info.inplace and info.name in COPIES_INPUT_IN_PLACE and acts:
                copies, saved = acts[0].numel() * acts[0].element_size(), []
            self.lifetimes.save(saved, grad_bytes, copies)

    def train_peak(self) -> tuple[int | None, str | None]:
        """Training: activation bytes at the step's worst point and the op there (``None`` unless training)."""
        if self.lifetimes is None or not self.train:
            return None, None
        return self._named(self.lifetimes.train_peak())

    def peak(self) -> tuple[int | None, str | None]:
        """Live activation bytes at the worst point and the op there (``None`` without lifetimes)."""
        if self.lifetimes is None:
            return None, None
        return self._named(self.lifetimes.peak())

    def _named(self, peak: Any) -> tuple[int, str]:
        if peak.where is None:
            return peak.activation_bytes, "(inputs)"
        mod, op, record = peak.where
        if record is not None:
            return peak.activation_bytes, self.book.records[record].name
        return peak.activation_bytes, f"{self.book.names.get(mod, '') or '(root)'}:{op}"

    def record(self, info: _OpInfo, args: tuple, kwargs: dict, out: Any, tensors: list[Any],
               priced: Priced | None, reuse: bool = False) -> Priced | None:
        """Record the op (``priced``: its call, cost and category when known from an earlier call with
        the same signature; ``reuse``: they will be met again, so the record may be shared with later
        walks); returns them, or ``None`` for an op that is free (a view, a copy)."""
        mod, first = self.stack[-1] if self.stack else (self.model, [True])
        if priced is None:
            call = info.adapter(args, kwargs, out)
            if call.kind != "free":
                priced = price(call)
        elif priced is FREE:
            priced = None
        weight_ids = self.weight_ids
        if priced is None:  # free: what a weight's view or copy gives is a weight too
            for a in tensors:
                if id(a) in weight_ids:
                    for o in _tensors((out,), [], self.tensor_type):
                        weight_ids.add(id(o))
                        self.keep_alive.append(o)
                    break
            return None
        weight_bytes = input_bytes = n_acts = 0
        fb = self.float_bytes
        for a in tensors:
            if id(a) in weight_ids:
                weight_bytes += a.numel() * (fb if fb and a.is_floating_point() else a.element_size())
            elif n_acts < 2 and a.dim() > 0:
                input_bytes += a.numel() * (fb if fb and a.is_floating_point() else a.element_size())
                n_acts += 1
        o = out[0] if isinstance(out, (tuple, list)) else out
        output_bytes = (o.numel() * (fb if fb and o.is_floating_point() else o.element_size())
                        if isinstance(o, self.tensor_type) else 0)
        self.book.add(mod, first_in_call=first[0], op=info.name, priced=priced, input_bytes=input_bytes,
                      output_bytes=output_bytes, weight_bytes=weight_bytes, inplace=info.inplace, reuse=reuse)
        first[0] = False
        return priced

    # -- the forward ----------------------------------------------------------------------

    def forward(self, args: tuple, kwargs: dict) -> None:
        Recorder = _recorder_class()
        torch = self.torch
        try:
            # the walk's own copy of the tree: what the forward rebinds, and the train/eval flags, touch
            # only the copy; the flags are set on the copies directly unless a class has its own train()
            names = self.book.names
            module_train = torch.nn.Module.train
            own_train = any(type(m).train is not module_train for m in names)
            with shadow_tree(self.model, self.wrap, training=None if own_train else self.train) as root:
                if own_train and (self.train or any(m.training for m in names)):
                    root.train(self.train)
                inputs = _tensors((args, tuple(kwargs.values())), [], self.tensor_type)
                if self.lifetimes is not None:
                    self.lifetimes.inputs(inputs)
                if self.train:  # an input that requires grad gets its gradient computed (not data alone)
                    self.grad_ids.update(id(t) for t in inputs if t.requires_grad)
                with torch.no_grad(), _composite_attention(torch), Recorder(self), \
                        (contextlib.nullcontext() if self.meta else _generic_recurrent_class()()):
                    result = root(*args, **kwargs)
            if self.lifetimes is not None:
                from torch.utils._pytree import tree_leaves

                self.lifetimes.outputs([t for t in tree_leaves(result) if isinstance(t, self.tensor_type)])
        except Exception as exc:  # any failure of the user's forward: say where, keep the reason
            raise ForwardFailed(self.where(in_op=False), _first_line(exc)) from exc


@functools.cache
def _recorder_class() -> type:
    """The dispatch mode of a walk (made once, on first use, so that importing this module stays light)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self, walk: _Walk) -> None:
            super().__init__()
            self.walk = walk

        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            # torch wraps a mode's __torch_dispatch__ in a dynamo-disabling shim (two extra Python
            # frames per op); the walk never runs under torch.compile, so it needs none.
            return False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            return self.walk.dispatch(func, args, kwargs or {})

    return Recorder


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
    structure: Structure | None = None,
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
        structure: the model's module structure when the caller has it cached.
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
    book = RecordBook(model, structure)
    walk = _Walk(model, book, meta=True, train=train, replay=replay, float_bytes=float_bytes)
    try:
        with _collector_paused():
            walk.forward(*_meta_inputs(inputs, train))
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
    book = RecordBook(real_model)
    walk = _Walk(real_model, book, meta=False, train=train, float_bytes=float_bytes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            walk.forward(*_real_inputs(inputs, train))
        except ForwardFailed as failed:
            before = (f"on the meta device ({meta_failure.where}: {meta_failure.reason}) and then "
                      if meta_failure else "")
            raise AnalysisError(f"the forward pass failed for input {inputs.label} {before}on the CPU, in "
                                f"{failed.where}: {failed.reason}") from None
    reason = (f"the meta run stopped in {meta_failure.where}: {meta_failure.reason}" if meta_failure
              else "asked for (--execute real)")
    if meta_failure:
        log.warning("ran the real forward on the CPU: %s", reason)
    return _finish(book, "real", reason, (None, None), (None, None))


def _finish(book: RecordBook, execution: str, reason: str | None, peak: tuple[int | None, str | None],
            train_peak: tuple[int | None, str | None]) -> Trace:
    trace = book.finish()
    trace.execution, trace.fallback_reason = execution, reason
    trace.peak_activation_bytes, trace.peak_op = peak
    trace.train_peak_activation_bytes, trace.train_peak_op = train_peak
    if trace.uncounted:
        log.info("ops without a cost formula: %s", ", ".join(sorted({u.op for u in trace.uncounted})))
    return trace
