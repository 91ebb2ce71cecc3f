"""One walk: a model's forward under a dispatch mode that records each op (``mbcost.cost.walker`` runs it).

Every op call, traced through the dispatch mode or replayed from a layer program
(``mbcost.cost.programs``), is recorded by one method, ``Walk.put``: its record, then its tensors'
lifetimes with its scratch memory. Everything a walk needs of torch is held by the walk itself,
made when it starts; nothing at module level changes per walk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mbcost.cost.answers import Answer, OpInfo, answer_of, op_info, recall, remember, signature, tensors_in
from mbcost.cost.capture import Capture
from mbcost.cost.lifetimes import Lifetimes
from mbcost.cost.records import Priced, RecordBook, price
from mbcost.cost.replay import Replays
from mbcost.cost.shadow import Frame, Shadow
from mbcost.cost.shortcuts import meta_like
from mbcost.cost.torch_internals import (
    call_impl,
    flat_weights,
    others_watch_modules,
    set_flat_weights,
    storage_key,
)
from mbcost.cost.training import BIAS_FIRST, saved_for_backward
from mbcost.cost.workspace import conv_scratch

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Walk"]


class Walk(Replays):
    """One forward pass of ``model`` on the walk's copy of its tree (``shadow``), recording each op into
    ``book`` (``meta``: on the meta device); its layer and block calls replay their programs (``Replays``)."""

    def __init__(self, model: nn.Module, *, meta: bool, train: bool = False, replay: bool = True,
                 float_bytes: int | None = None) -> None:
        import torch

        self.shadow = Shadow(model, self, train)
        self.book = RecordBook(model, self.shadow)

        self.torch = torch
        self.tensor_type = torch.Tensor
        self.empty_strided = torch.empty_strided
        self.call_impl = call_impl()
        self.meta_device = torch.device("meta")  # an object is quicker to pass than a string
        self.strided = torch.strided  # only dense inputs have the strides a layer program is keyed by
        self.settings = (torch.dtype, torch.memory_format)  # hashable arguments an answer may be keyed by
        # no global module hooks (another tool's) nor TorchScript tracing: a module without hooks of its
        # own runs just its forward
        self.plain = not others_watch_modules()
        self.model = model
        self.meta = meta
        # layer programs (``mbcost.cost.programs``): replayed on the meta run unless turned off, or
        # unless another tool's global module hooks must see every call
        self.replay = replay and meta and self.plain
        self.captures: list[Capture] = []  # the layer and block calls being recorded into programs
        # blocks of any class are replayed too (``block_key``), once met twice before (``met_before``)
        self.blocks = self.shadow if self.replay and not train else None
        # bytes per element of every floating-point tensor when not its own (the int8 analysis: 1)
        self.float_bytes = float_bytes
        self.context = (train, torch.get_default_dtype(), float_bytes)  # what else a layer's calls depend on
        self.weight_ids: set[int] = set(self.shadow.weight_ids)
        self.stand_ins: dict[int, Any] = {}
        self.keep_alive: list[Any] = []  # ids are only stable while the objects live
        self.stack: list[Frame] = []
        self.op = ""
        self.failed_at: str | None = None  # where an op raised, before the hooks unwound the stack
        self.entered: Any = None  # the module entered last: where a Python-level check failed
        self.lifetimes = Lifetimes(set(self.shadow.keys.values()), self.shadow.keys, float_bytes) if meta else None
        # training: the tensors that carry a gradient (trainable weights and what depends on them)
        self.train = train
        self.grad_ids: set[int] = {id(p) for p in model.parameters() if p.requires_grad} if train else set()

    # -- module attribution (each call of the walk's copy of the tree, ``shadow.py``) ---------

    def recurrent_copy(self, copy: Any) -> None:
        """On the meta run, a recurrent layer's copy (nn.LSTM, nn.GRU, nn.RNN; ``Shadow.copy``) gets meta
        stand-ins in the weight list it hands to torch: torch checks that list's devices against the input's
        before any op is issued, where the walk could give stand-ins as it does for every other weight."""
        tensor = self.tensor_type
        flat = flat_weights(copy)
        if self.meta and any(isinstance(w, tensor) and not w.is_meta for w in flat):
            set_flat_weights(copy, [w if not isinstance(w, tensor) or w.is_meta else self._stand_in(w) for w in flat])

    def frame(self) -> Frame:
        """The module call the forward is in (the model's, outside every call)."""
        return self.stack[-1] if self.stack else Frame(self.model)

    def where(self, in_op: bool = True) -> str:
        """The module (and, for a failing op, the op) the forward is in; after a failure outside any
        op (a Python check in a forward), the module entered last."""
        if self.failed_at:
            return self.failed_at
        mod = self.stack[-1].mod if self.stack else (self.entered or self.model)
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
                    self.lifetimes.weight_storages.add(storage_key(s))
        return s

    def _to_meta(self, v: Any) -> Any:
        """``v`` (an op's argument: a tensor, or lists, tuples and dicts of them) with meta stand-ins."""
        t = type(v)
        if isinstance(v, self.tensor_type):
            return v if v.is_meta else self._stand_in(v)
        if t is tuple or t is list:
            return t(self._to_meta(x) for x in v)
        if t is dict:
            return {k: self._to_meta(x) for k, x in v.items()}
        return v

    def run_meta(self, func: Any, args: tuple, kwargs: dict, tensors: list[Any]) -> Any:
        """Run ``func`` on the meta device; tensors elsewhere (the user's weights) get stand-ins."""
        for t in tensors:
            if not t.is_meta:
                return func(*self._to_meta(args), **self._to_meta(kwargs))
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
        tensors = tensors_in(args, [], self.tensor_type)
        if kwargs:
            tensors_in(kwargs.values(), tensors, self.tensor_type)
        return self.run_op(func, op_info(func), args, kwargs, tensors, None)

    def _answer(self, func: Any, info: OpInfo, args: tuple, kwargs: dict, tensors: list[Any],
                known: Answer | None) -> tuple[Any, Answer | None, tuple | None]:
        """Run one op: its output, its memoised answer when one gave it, and its signature when a new
        answer may be memoised. On the meta run, ops on tensors the forward made itself on the CPU
        (an ``arange`` of positions), none of them a weight, run as they are."""
        if known is not None:
            return self._replayed(known, args, tensors), known, None
        if not (self.meta and tensors and self._on_meta(tensors)):
            return func(*args, **kwargs), None, None
        key = None
        if info.memoised and "out" not in kwargs:
            key = signature(func, args, kwargs, self.tensor_type, self.settings)
            if key is not None and self.float_bytes:  # its scratch bytes depend on the element size
                key = (self.float_bytes, key)
            answer = recall(key) if key is not None else None
            if answer is not None:
                return self._replayed(answer, args, tensors), answer, key
        if info.shortcut is not None and "out" not in kwargs:
            out = info.shortcut(args, kwargs)
            if out is not None:
                return out, None, key
        out = self.run_meta(func, args, kwargs, tensors)
        # the meta kernel's answer is memoised too, unless the op works in place (``unsqueeze_`` changes
        # its argument's shape) or an output shares a storage other than a view's of its argument's
        # (``answer_of``): the walk's lifetimes follow storages
        memoised = key is not None and not info.inplace and self._new_storages(out, args, tensors)
        return out, None, key if memoised else None

    def _replayed(self, answer: Answer, args: tuple, tensors: list[Any]) -> Any:
        """A memoised answer's result; a view of a weight is a view of its meta stand-in, as when run."""
        if answer.views and not all(t.is_meta for t in tensors):
            args = self._to_meta(args)
        return answer.replay(args, self.empty_strided, self.meta_device)

    def _new_storages(self, out: Any, args: tuple, tensors: list[Any]) -> bool:
        """Whether each output of a meta run has a storage of its own, none of its arguments' (or their
        stand-ins'), or is a view of one of its positional arguments (or stand-ins: ``answer_of``)."""
        outs = [out] if isinstance(out, self.tensor_type) else tensors_in((out,), [], self.tensor_type)
        stand_ins = self.stand_ins
        bases = {storage_key(a if a.is_meta else stand_ins[id(a)]) for a in args
                 if isinstance(a, self.tensor_type) and (a.is_meta or id(a) in stand_ins)}
        seen = set()
        for o in outs:
            key = storage_key(o)
            if key in seen:
                return False
            if key not in bases:
                seen.add(key)
        for t in tensors:
            if storage_key(t) in seen or id(t) in stand_ins and storage_key(stand_ins[id(t)]) in seen:
                return False
        return True

    def run_op(self, func: Any, info: OpInfo, args: tuple, kwargs: dict, tensors: list[Any],
               known: Answer | None) -> Any:
        """Answer one op (``known``: its memoised answer, from a layer program) and record it."""
        self.op = info.packet
        try:
            out, answer, key = self._answer(func, info, args, kwargs, tensors, known)
        except Exception:
            self.failed_at = self.failed_at or self.where()
            raise
        if info.inplace and tensors and all(id(t) in self.weight_ids for t in tensors):
            for c in self.captures:
                c.add(func, args, kwargs, out, answer)
            return out  # a state update (BatchNorm's num_batches_tracked += 1 in training): bookkeeping
        frame = self.frame()
        priced: Priced | None = None
        sizes = None
        if info.adapter is None:
            self.book.add_uncounted(info.name, frame.mod)
        else:
            if answer is not None:
                priced = answer.priced
            else:
                try:  # a user's formula for a custom op (mbcost.cost.custom) may fail
                    call = info.adapter(args, kwargs, out)
                    priced = None if call.kind == "free" else price(call)
                except Exception:
                    self.failed_at = self.failed_at or self.where()
                    raise
            if priced is None:
                self._weight_views(tensors, out)
            else:
                sizes = self._sizes(tensors, out)
        writes = None
        if self.lifetimes is not None or self.train:
            writes = [out] if isinstance(out, self.tensor_type) else tensors_in((out,), [], self.tensor_type)
        # a priced call kept by a memoised answer or a program is met again: its record may be reused
        reuse = answer is not None or key is not None or bool(self.captures)
        index, scratch = self.put(frame, info, priced, sizes, reuse, tensors, writes, answer)
        if answer is None and (key is not None or self.captures and not tensors and self.meta):
            # a new answer: memoised by signature, or kept by a layer program (a factory call such as
            # BatchNorm's empty reserve tensor, which depends on its constant arguments only)
            stand_ins = self.stand_ins  # a view of a weight's stand-in is one of the stand-in
            answer = answer_of(tuple(stand_ins.get(id(a), a) for a in args) if stand_ins else args, out,
                               self.tensor_type, priced, scratch)
            if key is not None:
                remember(key, answer)
        if self.captures:  # a free call (a view) of activations only may be replayed without ``run_op``
            free = answer is not None and priced is None and info.adapter is not None and not info.inplace \
                and not any(id(t) in self.weight_ids for t in tensors)
            for c in self.captures:
                c.add(func, args, kwargs, out, answer, None if index is None else self.book.records[index], free)
        if self.train:
            self.backward_of(info, tensors, writes, index is not None)
        return out

    def put(self, frame: Frame, info: OpInfo, priced: Priced | None, sizes: tuple[int, int, int] | None,
            reuse: bool, reads: list[Any], writes: list[Any] | None, answer: Answer | None) -> tuple[int | None, int]:
        """The one record path of an op call, traced or replayed: its record when it is priced
        (``sizes``: its input, output and weight bytes; ``reuse``: an earlier walk's record of the same
        call may be reused), then the lifetimes of what it reads and writes, with its scratch memory.
        Returns the record's index (``None``: no record) and the scratch bytes."""
        book = self.book
        index = None
        if priced is not None and sizes is not None:
            index = len(book.records)
            self.record(frame.mod, frame.first, info, priced, sizes, reuse)
            frame.first = False
        scratch = 0
        if self.lifetimes is not None:
            if index is not None and info.name == "convolution":  # a convolution's scratch memory on the CPU
                scratch = answer.scratch if answer is not None else conv_scratch(book.records[index])
            self.lifetimes.op(reads, writes or [], (frame.mod, info.name, index), scratch)
        return index, scratch

    def record(self, mod: Any, first: bool, info: OpInfo, priced: Priced, sizes: tuple[int, int, int],
               reuse: bool) -> None:
        """The record of a priced op call, traced or replayed (``put``, ``Replays._replay_plan``)."""
        self.book.add(mod, first_in_call=first, op=info.name, priced=priced, input_bytes=sizes[0],
                      output_bytes=sizes[1], weight_bytes=sizes[2], inplace=info.inplace, reuse=reuse)

    def _weight_views(self, tensors: list[Any], out: Any) -> None:
        """A free op (a view, a copy) of a weight gives a weight too."""
        weight_ids = self.weight_ids
        for a in tensors:
            if id(a) in weight_ids:
                for o in tensors_in((out,), [], self.tensor_type):
                    weight_ids.add(id(o))
                    self.keep_alive.append(o)
                return

    def _sizes(self, tensors: list[Any], out: Any) -> tuple[int, int, int]:
        """An op's input activation bytes (its first two), output bytes and weight bytes."""
        weight_bytes = input_bytes = n_acts = 0
        fb, weight_ids = self.float_bytes, self.weight_ids
        for a in tensors:
            if id(a) in weight_ids:
                weight_bytes += a.numel() * (fb if fb and a.is_floating_point() else a.element_size())
            elif n_acts < 2 and a.dim() > 0:
                input_bytes += a.numel() * (fb if fb and a.is_floating_point() else a.element_size())
                n_acts += 1
        o = out[0] if isinstance(out, (tuple, list)) else out
        output_bytes = (o.numel() * (fb if fb and o.is_floating_point() else o.element_size())
                        if isinstance(o, self.tensor_type) else 0)
        return input_bytes, output_bytes, weight_bytes

    def backward_of(self, info: OpInfo, tensors: list[Any], writes: list[Any], recorded: bool) -> None:
        """Training: gradient flow, what the op saves for backward and its backward cost."""
        grad_ids = self.grad_ids
        needing = [t for t in tensors if id(t) in grad_ids]
        if not needing:
            return
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
            saved, copies = saved_for_backward(info.name, tensors, writes, weights=weight_ids, grads=grad_ids,
                                               inplace=info.inplace)
            grad_bytes = sum(t.numel() * t.element_size() for t in writes[:1])
            grad_bytes += sum(t.numel() * t.element_size() for t in acts if id(t) in grad_ids)
            trained = [t for t in tensors if id(t) in weight_ids and id(t) in grad_ids]
            self.lifetimes.save(saved, grad_bytes, copies, trained, needing)

    def train_peak(self) -> tuple[int | None, str | None, int | None]:
        """Training: activation bytes at the step's worst point, the op there and the parameters' gradients
        alive there (``None`` unless training)."""
        if self.lifetimes is None or not self.train:
            return None, None, None
        peak = self.lifetimes.train_peak()
        return (*self._named(peak), peak.grad_bytes)

    def peak(self) -> tuple[int | None, str | None]:
        """Live activation bytes at the worst point and the op there (``None`` without lifetimes)."""
        if self.lifetimes is None:
            return None, None
        return self._named(self.lifetimes.peak(self.book.records))

    def _named(self, peak: Any) -> tuple[int, str]:
        if peak.where is None:
            return peak.activation_bytes, "(inputs)"
        mod, op, record = peak.where
        if record is not None:
            return peak.activation_bytes, self.book.records[record].name
        return peak.activation_bytes, f"{self.book.names.get(mod, '') or '(root)'}:{op}"
