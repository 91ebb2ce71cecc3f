"""Tensor lifetimes over one traced forward: which activation memory is alive at each op.

Memory is counted per storage, so views and in-place ops share the bytes of what they alias. A
storage lives from the op that creates it to the last op that reads it, or until the last module
call it was passed to returns (the call holds its arguments: a block's input lives through the
block); the model's inputs live from the start to the end (the caller holds them through the
call), its outputs to the end. An op's own scratch memory (``mbcost.cost.workspace``) counts at
that op.
Weights (parameters and buffers, and views of them) are not activations and are left out;
``peak_memory_bytes`` adds them back.

This is the inference schedule an eager runtime follows when each tensor is freed right after its
last use. Counted on the meta device, where every storage is kept alive by the walk, so a storage
id never changes meaning.

Training: what each op saves for backward (``mbcost.cost.training.saved_for_backward``) stays alive until the
backward has passed the op; a convolution's backward adds its own scratch at its step
(``mbcost.cost.workspace.conv_backward_workspace``).

``F.scaled_dot_product_attention``, which the meta device runs as its math path, makes and saves what the CPU's
fused kernel does (``mbcost.cost.attention``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mbcost.cost.attention import Fused, MathAttention, fused_spans
from mbcost.cost.torch_internals import storage_key, storage_of
from mbcost.cost.workspace import conv_backward_workspace

__all__ = ["Lifetimes", "Peak", "storage_bytes"]


def storage_bytes(nbytes: int, dtype: Any, float_bytes: int | None) -> int:
    """A storage's ``nbytes`` of ``dtype`` elements, floating-point ones counted at ``float_bytes`` each when
    given (the int8 analysis: 1)."""
    return nbytes // dtype.itemsize * float_bytes if float_bytes and dtype.is_floating_point else nbytes


@dataclass(frozen=True)
class Peak:
    """The worst point of a schedule: live activation bytes and the op it happens at; in training, the
    parameters' gradients alive there too (``grad_bytes``)."""

    activation_bytes: int
    step: int
    where: Any
    grad_bytes: int = 0


class Lifetimes:
    """Collects creation and last use of every activation storage, op by op."""

    def __init__(self, weight_storages: set[int], weight_keys: dict[int, int] | None = None,
                 float_bytes: int | None = None) -> None:
        """``weight_keys``: the storage id of each weight by the tensor's id, when already read (the
        weights stay alive through the walk, so their ids keep their meaning). ``float_bytes``: the
        bytes per element of a floating-point storage when not its dtype's (the int8 analysis: 1)."""
        self.weight_storages = weight_storages
        self.float_bytes = float_bytes
        self.created: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.size: dict[int, int] = {}
        self.where: list[Any] = []
        self.keep: list[Any] = []  # storages must outlive the walk, or their ids could be reused
        self.keys: dict[int, int] = dict(weight_keys or {})  # id of a tensor seen -> its storage id
        # training: storage -> the earliest op that saved it for backward (it is freed once the
        # backward, running ops in reverse, has passed that op); per op, its gradients' bytes
        self.saved: dict[int, int] = {}
        self.grads: list[int] = []
        self.param_grads: dict[int, int] = {}  # trainable weight storage -> its last reader
        self.weight_bytes: dict[int, int] = {}
        self.weight_of: dict[int, int] = {}  # the storage of a weight's view or copy -> the weight's
        self.held: set[int] = set()  # storages the caller holds through the call (the inputs)
        self.scratch: dict[int, int] = {}  # op step -> bytes it allocates and frees inside itself
        self.back_scratch: dict[int, int] = {}  # op step -> the same, in its backward
        self.attention = MathAttention()
        self.made = 0  # the last key given to a storage that is never made (``replayed``, ``_own``): -1, -2...
        self._last: tuple[list[Any], list[Any]] = ([], [])  # the last op's reads and writes

    def _key(self, t: Any) -> int:
        """The storage id of ``t``, remembered per tensor (every tensor seen is kept alive, so its id
        stays its own)."""
        key = self.keys.get(id(t))
        if key is None:
            key = self.keys[id(t)] = storage_key(t)
            self.keep.append(t)
        return key

    def _create(self, t: Any, step: int) -> None:
        key = self._key(t)
        if key in self.weight_storages:
            return
        if key not in self.created:
            self.created[key] = step
            self.size[key] = storage_bytes(t.untyped_storage().nbytes(), t.dtype, self.float_bytes)
        last = self.last.get(key, step)
        self.last[key] = step if step > last else last

    def inputs(self, tensors: list[Any]) -> None:
        """The model's inputs: alive before the first op and, held by the caller, until the end."""
        for t in tensors:
            self._create(t, -1)
            key = self._key(t)
            if key in self.created:
                self.held.add(key)

    def op(self, reads: list[Any], writes: list[Any], where: Any, scratch: int = 0) -> None:
        """One op: it reads ``reads`` (their storages live at least until now), writes ``writes`` and
        needs ``scratch`` bytes of its own while it runs (``mbcost.cost.workspace``)."""
        step = len(self.where)
        if scratch:
            self.scratch[step] = scratch
        self.where.append(where)
        self._last = (reads, writes)
        last, weights, key_of, keys = self.last, self.weight_storages, self._key, self.keys
        for t in reads:
            key = keys.get(id(t))
            if key is None:
                key = key_of(t)
            if key not in weights:
                last[key] = step
        created = self.created
        for t in writes:
            key = keys.get(id(t))
            nbytes = None
            if key is None:  # a new tensor
                key, nbytes = storage_of(t)
                keys[id(t)] = key
                self.keep.append(t)
            if key not in weights:
                if key not in created:
                    created[key] = step
                    self.size[key] = storage_bytes(t.untyped_storage().nbytes() if nbytes is None else nbytes,
                                                   t.dtype, self.float_bytes)
                last[key] = step  # no step recorded yet is later than this one
            elif reads:  # a weight's view or copy: its gradient is the weight's
                base = next((r for r in reads if key_of(r) in weights and key_of(r) != key), None)
                if base is not None:
                    root = key_of(base)
                    if root not in self.weight_of:
                        self.weight_bytes.setdefault(root, base.untyped_storage().nbytes())
                    self.weight_of[key] = self.weight_of.get(root, root)

    def external(self, slots: tuple[tuple[int, int], ...], vals: list[Any]) -> list[tuple[int, int]] | None:
        """The storages of a plan's inputs and weights (``Plan.external``: slots and last ops) that are
        activations, with their last ops; ``None`` when one was never seen (it is then replayed op by op)."""
        keys, weights, created, out = self.keys, self.weight_storages, self.created, []
        for slot, at in slots:
            t = vals[slot]
            key = keys.get(id(t))
            if key is None:
                key = self._key(t)
            if key not in weights:
                if key not in created:
                    return None
                out.append((key, at))
        return out

    def replayed(self, plan: Any, external: list[tuple[int, int]], vals: list[Any], where: list[Any]) -> None:
        """A program replayed from its plan (``Plan``): its ops (``where``), what they read of ``external``
        (``external``), the storages they make (those of its result in ``vals``) and their scratch."""
        step = len(self.where)
        self.where.extend(where)
        created, last, size = self.created, self.last, self.size
        for key, at in external:
            if last[key] < step + at:
                last[key] = step + at
        for at, nbytes in plan.scratch:
            self.scratch[step + at] = nbytes
        for first, end, nbytes in plan.storages:
            self.made -= 1
            created[self.made], last[self.made], size[self.made] = step + first, step + end, nbytes
        for slot, first, end, nbytes in plan.returned:
            t = vals[slot]
            key = self.keys[id(t)] = storage_key(t)
            self.keep.append(t)
            created[key], last[key], size[key] = step + first, step + end, nbytes

    def hold(self, tensors: list[Any]) -> None:
        """A module call returns: the tensors passed to it were referenced until now."""
        step = len(self.where) - 1
        last, keys = self.last, self.keys
        for t in tensors:
            key = keys.get(id(t))
            if key is None:
                key = self._key(t)
            if key in last and last[key] < step:
                last[key] = step

    def save(self, tensors: list[Any], grad_bytes: int, copies: int = 0, trained: Sequence[Any] = (),
             needing: Sequence[Any] = ()) -> None:
        """Training: the op just recorded saves ``tensors`` for its backward (and ``copies`` bytes it
        copies to save them), which handles ``grad_bytes`` of gradients (its output's and its input's);
        it reads the trainable weights ``trained`` (views included), whose gradients exist from the
        backward of their last reader on, among the tensors that need a gradient, ``needing``."""
        step = len(self.where) - 1
        for t in trained:
            key = self._key(t)
            key = self.weight_of.get(key, key)
            self.param_grads[key] = step
            if key not in self.weight_bytes:
                self.weight_bytes[key] = t.untyped_storage().nbytes()
        if copies:
            self._own(copies, step)
        for t in tensors:
            key = self._key(t)
            if key in self.created and key not in self.saved:
                self.saved[key] = step
        self.grads.extend([0] * (step - len(self.grads)))
        self.grads.append(grad_bytes)
        where = self.where[step]
        if isinstance(where, tuple) and where[1] == "convolution":
            self._conv_backward(step, trained)
        fused = self.attention.see(where[1] if isinstance(where, tuple) else None, *self._last, self._key, step,
                                   needing)
        if fused is not None:
            self._fuse(fused, step)

    def _conv_backward(self, step: int, trained: Sequence[Any]) -> None:
        """The scratch a convolution's backward allocates (``conv_backward_workspace``), from its input's
        layout and shape and its weight's: it runs with the op's gradients alive."""
        reads = self._last[0]
        if len(reads) < 2 or reads[0].dim() != 4 or reads[1].dim() != 4:
            return
        x, w = reads[0], reads[1]
        strides = x.stride()
        channels_last = x.shape[1] > 1 and strides[1] == 1 and strides[3] == x.shape[1]
        scratch = conv_backward_workspace(tuple(x.shape), tuple(w.shape), x.shape[1] // max(1, w.shape[1]),
                                          x.element_size(), channels_last=channels_last,
                                          weight_grad=bool(trained))
        if scratch:
            self.back_scratch[step] = scratch

    def _own(self, nbytes: int, step: int) -> None:
        """A storage of autograd's own (a copy, a kernel's statistics), made and saved by op ``step``."""
        key = self.made = self.made - 1
        self.created[key], self.size[key], self.last[key], self.saved[key] = step, nbytes, step, step

    def _fuse(self, fused: Fused, step: int) -> None:
        """A math-path attention ended (or its output was copied): it saves what the fused kernel saves."""
        for key in fused.dropped:
            self.saved.pop(key, None)
        for key in fused.kept:
            if key in self.created and key not in self.saved:
                self.saved[key] = fused.first
        if fused.own_bytes:
            self._own(fused.own_bytes, step)

    def outputs(self, tensors: list[Any]) -> None:
        """The model's outputs: alive to the end."""
        end = len(self.where)
        for t in tensors:
            key = self._key(t)
            if key in self.created:
                self.last[key] = end

    def peak(self, records: Sequence[Any] = ()) -> Peak:
        """The largest sum of live storages over the ops (an op's inputs and outputs live together); an
        attention's math path as the CPU's fused kernel runs it (``fused_spans`` of the walk's ``records``)."""
        steps = len(self.where)
        delta = [0] * (steps + 3)
        spans = fused_spans(self.where, records) if records else ()
        scratch, fused = dict(self.scratch) if spans else self.scratch, {}  # fused: an attention's op -> its last
        for start, end, nbytes in spans:
            for step in range(start, end):
                scratch.pop(step, None)
                fused[step] = end
            scratch[end] = scratch.get(end, 0) + nbytes
        for key, size in self.size.items():
            first, last = self.created[key], self.last[key]
            if fused.get(first, first) > first:  # made by the math path, not by the fused kernel
                continue
            delta[first + 1] += size
            delta[(steps if key in self.held else min(fused.get(last, last), steps)) + 2] -= size
        best, best_step, live = 0, -1, 0
        for i in range(steps + 1):  # index i is step i - 1 (the inputs live at step -1)
            live += delta[i]
            now = live + scratch.get(i - 1, 0)
            if now > best:
                best, best_step = now, i - 1
        return Peak(best, best_step, self.where[best_step] if 0 <= best_step < steps else None)

    def train_peak(self) -> Peak:
        """The worst point of a training step: in the forward, the live tensors plus everything
        saved for backward so far; in the backward (ops in reverse), what is still saved plus the
        gradients the op handles."""
        steps = len(self.where)
        end = steps + 1
        delta = [0] * (steps + 3)
        for key, size in self.size.items():
            last = end if key in self.saved or key in self.held else self.last[key]
            delta[self.created[key] + 1] += size
            delta[min(last, steps) + 2] -= size
        best, best_step, live = 0, -1, 0
        for i in range(steps + 1):
            live += delta[i]
            now = live + self.scratch.get(i - 1, 0)
            if now > best:
                best, best_step = now, i - 1
        freed: dict[int, int] = {}
        for key, step in self.saved.items():
            freed[step] = freed.get(step, 0) + self.size[key]
        made: dict[int, int] = {}  # step -> bytes of the parameters' gradients its backward makes
        for key, step in self.param_grads.items():
            made[step] = made.get(step, 0) + self.weight_bytes[key]
        saved = sum(self.size[key] for key in self.saved)
        grads = self.grads + [0] * (steps - len(self.grads))
        best_grads = params = 0
        for step in range(steps - 1, -1, -1):
            params += made.get(step, 0)
            now = saved + grads[step] + self.back_scratch.get(step, 0)
            if now + params > best + best_grads:
                best, best_grads, best_step = now, params, step
            saved -= freed.get(step, 0)
        held = sum(self.size[key] for key in self.held)
        if held + params > best + best_grads:  # the optimizer's update: every gradient, no activation
            best, best_grads, best_step = held, params, -1
        return Peak(best, best_step, self.where[best_step] if 0 <= best_step < steps else None, best_grads)
