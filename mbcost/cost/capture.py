"""Recording a layer program (``mbcost.cost.programs``): the calls one layer or block call made while
traced (``Capture``), turned into the steps a later call with the same key replays."""

from __future__ import annotations

from typing import Any

from mbcost.cost.lifetimes import storage_bytes
from mbcost.cost.programs import SETTING_TYPES, Mark, Plan, Program, Slot, Step

__all__ = ["Capture"]


def _slots(template: Any, out: list[int]) -> list[int]:
    """The slots in a template, in the order the walk lists an op's tensors."""
    t = type(template)
    if t is Slot:
        out.append(template.i)
    elif t is tuple or t is list:
        for v in template:
            _slots(v, out)
    elif t is dict:
        for v in template.values():
            _slots(v, out)
    return out


class Capture:
    """The calls a layer's forward makes while traced, turned into a ``Program`` afterwards."""

    def __init__(self, mods: list[Any] | None = None, copies: list[Any] | None = None) -> None:
        self.calls: list[Any] = []
        self.mods = mods  # a block's modules (the user's), in ``subtree`` order
        self.copies = copies  # and the walk's copies of them, which its forward runs on
        self.state = None if copies is None else [_state(m) for m in copies]

    def add(self, func: Any, args: tuple, kwargs: dict, out: Any, answer: Any, recorded: Any = None,
            free: bool = False) -> None:
        """One call: its arguments, result, memoised answer, the record it made (or ``None``), and
        whether it is free and reads no weight (``Step.free``)."""
        self.calls.append((func, args, kwargs, out, answer, recorded, free))

    def program(self, weights: list[Any], inputs: tuple, result: Any, tensor: type, op_info: Any,
                float_bytes: int | None = None) -> Program | None:
        """The program of these calls (``op_info(func)``: what the walk keeps of an op; ``float_bytes``: the
        walk's, for its plan's storages), or ``None``
        when a tensor in them is not the layer's own, or a block's forward rebound something on one
        of its modules, or returned something else than tensors and numbers."""
        if self.copies is not None and not all(map(_same, map(_state, self.copies), self.state)):
            return None
        slots: dict[int, int] = {}
        n = 0
        for t in inputs:
            slots.setdefault(id(t), n)
            n += 1
        own = set()  # the layer's weights' slots
        for t in weights:
            if id(t) not in slots:
                slots[id(t)] = n
                own.add(n)
            n += 1

        steps: list[Any] = []
        place = {} if self.mods is None else {id(m): i for i, m in enumerate(self.mods)}
        try:
            for call in self.calls:
                if type(call) is Mark:  # enter: the module; hold: the tensors
                    steps.append(call if call.hold is None and call.enter is None else Mark(
                        None if call.enter is None else place[id(call.enter)],
                        None if call.hold is None else tuple(slots[id(t)] for t in call.hold)))
                    continue
                func, args, kwargs, out, answer, record, free = call
                if func.namespace != "aten":  # a user's op: its formula may come and go (``op_info``)
                    return None
                targs, tkwargs = _template(args, slots, tensor), _template(kwargs, slots, tensor)
                top = tuple((pos, a.i) for pos, a in enumerate(targs) if type(a) is Slot)
                if tkwargs and _slots(tkwargs, []) or len(_slots(targs, [])) != len(top):
                    top = None
                results = (out,) if isinstance(out, tensor) else out
                if type(results) not in (tuple, list) or not all(isinstance(o, tensor) for o in results):
                    return None
                tensors = tuple(_slots(tkwargs, _slots(targs, [])))
                alias = None
                sizes = None if record is None else (record.input_bytes, record.output_bytes, record.weight_bytes)
                if answer is not None and answer.alias is not None:
                    returned = targs[answer.alias]
                    if type(returned) is Slot:
                        alias = returned.i
                    else:
                        sizes = None
                free = free and (answer.alias is None or alias is not None)
                steps.append(Step(
                    func, op_info(func), targs, tkwargs, top, tensors, answer,
                    1 if isinstance(out, tensor) else len(results), sizes,
                    tuple(i for i in tensors if i not in own), alias, free,
                    answer is not None and (sizes is not None or free)))
                for o in results:
                    slots.setdefault(id(o), n)
                    n += 1
            given = {slots[id(t)] for t in inputs if isinstance(t, tensor)}
            for leaf in _leaves(result, []):
                if not isinstance(leaf, (tensor, *SETTING_TYPES)):
                    return None
            steps = _pruned(steps)
            returned = _template(result, slots, tensor)
            return Program(tuple(steps), returned, bool(steps) and type(steps[-1]) is Step
                           and given <= set(steps[-1].reads), plan_of(steps, len(inputs) + len(weights), returned,
                                                                     float_bytes))
        except LookupError:
            return None


def _template(v: Any, slots: dict[int, int], tensor: type) -> Any:
    """``v`` with its tensors replaced by their ``Slot``s (``LookupError``: a tensor without one). A module
    function: a nested one that calls itself would be a reference cycle left for the collector by each recording."""
    if isinstance(v, tensor):
        i = slots.get(id(v))
        if i is None:
            raise LookupError
        return Slot(i)
    if type(v) in (tuple, list):
        return type(v)(_template(x, slots, tensor) for x in v)
    if type(v) is dict:
        return {k: _template(x, slots, tensor) for k, x in v.items()}
    return v


def _pruned(steps: list[Any]) -> list[Any]:
    """A program's steps without what changes nothing: a hold of tensors that a later step reads or holds
    again (that step keeps them alive as long), and a module call that issues no op in between."""
    later: set[int] = set()
    kept: list[Any] = []
    for step in reversed(steps):
        if type(step) is Step:
            later.update(step.tensors)
        elif step.hold is not None:
            hold = tuple(i for i in step.hold if i not in later)
            if not hold:
                continue
            later.update(hold)
            step = Mark(None, hold)
        kept.append(step)
    out: list[Any] = []
    for step in reversed(kept):
        if type(step) is Mark and step.enter is None and step.hold is None and out and type(out[-1]) is Mark \
                and out[-1].enter is not None:
            out.pop()  # entered and left, nothing done
        else:
            out.append(step)
    return out


def _state(m: Any) -> tuple:
    """What a block's forward could rebind on one of its modules: its attributes and its weights and children."""
    d = m.__dict__
    return (*d.items(), *d["_parameters"].items(), *d["_buffers"].items(), *d["_modules"].items())


def _same(after: tuple, before: tuple) -> bool:
    return len(after) == len(before) and all(a[0] == b[0] and a[1] is b[1] for a, b in zip(after, before, strict=True))


def _leaves(v: Any, out: list[Any]) -> list[Any]:
    if type(v) in (tuple, list):
        for x in v:
            _leaves(x, out)
    elif type(v) is dict:
        _leaves(tuple(v.values()), out)
    else:
        out.append(v)
    return out


def plan_of(steps: list[Any], external: int, result: Any, float_bytes: int | None) -> Plan | None:
    """A program's ``Plan`` (``external``: its inputs' and weights' slots; ``result``: its template), or
    ``None`` when a step has no memoised answer, one that is not replayed from it (``Step.fast``) makes a
    record, works in place or has no formula, or an output's storage is not known from its answer, or
    the result needs an output such a step makes."""
    ext = {i: i for i in range(external)}  # slot -> the input or weight whose storage it lies in
    store: dict[int, int] = {}  # slot -> the storage, made by the program, it lies in
    storages: list[list[int]] = []  # first op, last op, bytes
    last_ext: dict[int, int] = {}
    ops, records, scratch, make, replayed = [], [], [], {}, set()
    frames, seen, n, op, calls = [(-1, 0)], set(), external, 0, 0

    def touch(slot: int, at: int) -> None:
        if slot in store:
            s = storages[store[slot]]
            s[1] = max(s[1], at)
        else:
            last_ext[ext[slot]] = max(last_ext.get(ext[slot], at), at)

    for step in steps:
        if type(step) is Mark:
            if step.hold is not None:
                for i in step.hold:
                    touch(i, op - 1)
            elif step.enter is not None:
                calls += 1
                frames.append((step.enter, calls))
            else:
                frames.pop()
            continue
        answer, info = step.answer, step.info
        if answer is None or not step.fast and (answer.priced is not None or info.inplace or info.adapter is None):
            return None
        for i in step.reads if step.fast else step.tensors:
            touch(i, op)
        if answer.alias is not None:
            if step.alias is None:
                return None
            outs = [(n, step.alias, None)]
        else:
            outs = []
            for k, (shape, strides, dtype, base, offset) in enumerate(answer.outs):
                if base is not None and type(step.args[base]) is not Slot:
                    return None
                outs.append((n + k, None if base is None else step.args[base].i, (shape, strides, dtype, offset)))
        for slot, base, layout in outs:
            if base is not None:
                (store if base in store else ext)[slot] = (store if base in store else ext)[base]
            else:
                shape, strides, dtype, _ = layout  # the bytes of ``empty_strided``'s storage
                nbytes = 0 if 0 in shape else dtype.itemsize * (1 + sum(map(lambda d, s: (d - 1) * s, shape, strides)))
                size = storage_bytes(nbytes, dtype, float_bytes)
                store[slot] = len(storages)
                storages.append([op, op, size])
            touch(slot, op)
            make[slot] = (slot, base) if layout is None else (slot, base, *layout)
            if step.fast:
                replayed.add(slot)
        record = None
        if step.fast and step.recorded is not None and answer.priced is not None:
            record = len(records)
            records.append((frames[-1][0], frames[-1] not in seen, info, answer.priced, step.recorded))
            seen.add(frames[-1])
            if info.name == "convolution" and answer.scratch:
                scratch.append((op, answer.scratch))
        ops.append((frames[-1][0], info.name, record))
        op += 1
        n += step.outs
    needed: set[int] = set()
    wanted = [i for i in _slots(result, []) if i >= external]
    while wanted:  # the outputs the result is, and those they are views of
        slot = wanted.pop()
        if slot not in replayed:
            return None
        needed.add(slot)
        if make[slot][1] is not None and make[slot][1] >= external:
            wanted.append(make[slot][1])
    made = {store[i]: i for i in sorted(needed, reverse=True) if len(make[i]) > 2 and make[i][1] is None}
    return Plan(tuple(ops), tuple(records), tuple(scratch), tuple(last_ext.items()),
                tuple(tuple(s) for k, s in enumerate(storages) if k not in made),
                tuple((i, *storages[k]) for k, i in made.items()), tuple(make[i] for i in sorted(needed)), n)
