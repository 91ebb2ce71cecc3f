"""Recording a layer program (``mbcost.cost.programs``): the calls one layer or block call made while
traced (``Capture``), turned into the steps a later call with the same key replays."""

from __future__ import annotations

from typing import Any

from mbcost.cost.programs import SETTING_TYPES, Mark, Program, Slot, Step

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

    def program(self, weights: list[Any], inputs: tuple, result: Any, tensor: type, op_info: Any) -> Program | None:
        """The program of these calls (``op_info(func)``: what the walk keeps of an op), or ``None``
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

        def template(v: Any) -> Any:
            if isinstance(v, tensor):
                i = slots.get(id(v))
                if i is None:
                    raise LookupError
                return Slot(i)
            if type(v) in (tuple, list):
                return type(v)(template(x) for x in v)
            if type(v) is dict:
                return {k: template(x) for k, x in v.items()}
            return v

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
                targs, tkwargs = template(args), template(kwargs)
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
                new = None  # its one output: a new tensor, or a view of an argument that is a slot
                if answer is not None and answer.alias is None and answer.single:
                    shape, strides, dtype, base, offset = answer.outs[0]
                    if base is None or type(targs[base]) is Slot:
                        new = (None if base is None else targs[base].i, shape, strides, dtype, offset)
                steps.append(Step(
                    func, op_info(func), targs, tkwargs, top, tensors, answer,
                    1 if isinstance(out, tensor) else len(results), sizes,
                    tuple(i for i in tensors if i not in own), alias, free,
                    answer is not None and (sizes is not None or free), new))
                for o in results:
                    slots.setdefault(id(o), n)
                    n += 1
            given = {slots[id(t)] for t in inputs if isinstance(t, tensor)}
            for leaf in _leaves(result, []):
                if not isinstance(leaf, (tensor, *SETTING_TYPES)):
                    return None
            steps = _pruned(steps)
            return Program(tuple(steps), template(result),
                           bool(steps) and type(steps[-1]) is Step and given <= set(steps[-1].reads))
        except LookupError:
            return None


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
