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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Lifetimes", "Peak"]


@dataclass(frozen=True)
class Peak:
    """The worst point of a schedule: live activation bytes and the op it happens at."""

    activation_bytes: int
    step: int
    where: Any


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
        self.held: set[int] = set()  # storages the caller holds through the call (the inputs)
        self.scratch: dict[int, int] = {}  # op step -> bytes it allocates and frees inside itself

    def _key(self, t: Any) -> int:
        """The storage id of ``t``, remembered per tensor (every tensor seen is kept alive, so its id
        stays its own)."""
        key = self.keys.get(id(t))
        if key is None:
            key = self.keys[id(t)] = t.untyped_storage()._cdata
            self.keep.append(t)
        return key

    def _create(self, t: Any, step: int) -> None:
        key = self._key(t)
        if key in self.weight_storages:
            return
        if key not in self.created:
            self.created[key] = step
            size = t.untyped_storage().nbytes()
            if self.float_bytes and t.is_floating_point():
                size = size // t.element_size() * self.float_bytes
            self.size[key] = size
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
        last, weights, key_of = self.last, self.weight_storages, self._key
        for t in reads:
            key = key_of(t)
            if key not in weights:
                last[key] = step
        for t in writes:
            self._create(t, step)

    def hold(self, tensors: list[Any]) -> None:
        """A module call returns: the tensors passed to it were referenced until now."""
        step = len(self.where) - 1
        last = self.last
        for t in tensors:
            key = self._key(t)
            if key in last and last[key] < step:
                last[key] = step

    def save(self, tensors: list[Any], grad_bytes: int, copies: int = 0) -> None:
        """Training: the op just recorded saves ``tensors`` for its backward (and ``copies`` bytes it
        copies to save them), which handles ``grad_bytes`` of gradients (its output's and its input's)."""
        step = len(self.where) - 1
        if copies:
            key = -1 - len(self.size)  # a storage of autograd's own, made by this op
            self.created[key], self.size[key], self.last[key], self.saved[key] = step, copies, step, step
        for t in tensors:
            key = self._key(t)
            if key in self.created and key not in self.saved:
                self.saved[key] = step
        self.grads.extend([0] * (step - len(self.grads)))
        self.grads.append(grad_bytes)

    def outputs(self, tensors: list[Any]) -> None:
        """The model's outputs: alive to the end."""
        end = len(self.where)
        for t in tensors:
            key = self._key(t)
            if key in self.created:
                self.last[key] = end

    def peak(self) -> Peak:
        """The largest sum of live storages over the ops (an op's inputs and outputs live together)."""
        steps = len(self.where)
        delta = [0] * (steps + 3)
        for key, size in self.size.items():
            delta[self.created[key] + 1] += size
            delta[(steps if key in self.held else min(self.last[key], steps)) + 2] -= size
        best, best_step, live = 0, -1, 0
        scratch = self.scratch
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
        saved = sum(self.size[key] for key in self.saved)
        grads = self.grads + [0] * (steps - len(self.grads))
        for step in range(steps - 1, -1, -1):
            if saved + grads[step] > best:
                best, best_step = saved + grads[step], step
            saved -= freed.get(step, 0)
        return Peak(best, best_step, self.where[best_step] if 0 <= best_step < steps else None)
