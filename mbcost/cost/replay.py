"""A walk's layer and block calls: replayed from their programs (``mbcost.cost.programs``), or traced
and recorded into one. ``Replays`` is the part of ``mbcost.cost.walk.Walk`` that does it; every op it
replays is recorded by ``Walk.put`` or ``Walk.run_op``, as a traced op is."""

from __future__ import annotations

from typing import Any

from mbcost.cost.answers import SCALARS, op_info, tensors_in
from mbcost.cost.capture import Capture
from mbcost.cost.programs import BLOCK, PROGRAMS, Mark, Program, fill, met, remember_program, weights_of
from mbcost.cost.shadow import Frame
from mbcost.cost.torch_internals import dispatch_paused

__all__ = ["Replays"]


class Replays:
    """Layer and block calls of a walk (a mixin of ``Walk``, whose attributes it uses)."""

    def layer(self, copy: Any, key: tuple, args: tuple) -> Any:
        """Call a pure torch.nn layer, or a block (``programs.block_key``): replay its program for these
        inputs, or trace it and record one. The arguments are held to the call's end
        (``Lifetimes.hold``) unless the program's last call read them all anyway."""
        sig: list[Any] = [self.context, key]
        weight_ids, strided = self.weight_ids, self.strided
        for a in args:
            if isinstance(a, self.tensor_type) and a.layout is strided:
                sig.append((a.shape, a.stride(), a.dtype, a.is_meta, id(a) in weight_ids))
            elif type(a) in SCALARS:
                sig.append((type(a), a))
            else:
                return self._traced(copy, args, None)
        if len(args) > 1:  # which arguments are the same tensor
            ids = [id(a) for a in args]
            sig.append(tuple(map(ids.index, ids)))
        copies = users = None
        if key[0] is BLOCK:  # its modules (the walk's copies, the user's) and weights follow its key
            copies, users, weights = key[2:]
            sig[1] = key[:2]
        else:
            weights = weights_of(copy)
        full = tuple(sig)
        try:
            program = PROGRAMS[full]
        except KeyError:  # not recorded yet: trace it, and keep what it did if it was met before
            if key[0] is not BLOCK and not met(full):  # a block's hint was met (``programs.met_before``)
                return self._traced(copy, args, None)
            capture = Capture(users, None if copies is None else self.shadow.copies_of(copies))
            result = self._traced(copy, args, capture)
            remember_program(full, capture.program(weights, args, result, self.tensor_type, op_info, self.float_bytes))
            return result
        except TypeError:  # a setting rebound to something unhashable (``conv.padding = [1, 1]``)
            return self._traced(copy, args, None)
        if program is None:  # not replayable
            return self._traced(copy, args, None)
        with dispatch_paused():  # as inside the mode: ops made here are not recorded
            result = self.replay_program(program, args, weights, users)
        if not program.holds and args:
            self.hold(tensors_in(args, [], self.tensor_type))
        return result

    def _traced(self, copy: Any, args: tuple, capture: Capture | None) -> Any:
        """A layer's forward, run under the dispatch mode (its hooks, if any, run as usual), its calls
        recorded into ``capture`` too."""
        if capture is not None:
            self.captures.append(capture)
        try:
            result = self.call_impl(copy, *args)
        finally:
            if capture is not None:
                self.captures.pop()
        if args:
            self.hold(tensors_in(args, [], self.tensor_type))
        return result

    def enter(self, mod: Any) -> None:
        """A module call starts (``mod``: the user's module, whose name its records get)."""
        self.stack.append(Frame(mod))
        self.entered = mod
        self.op = ""
        for c in self.captures:
            c.calls.append(Mark(mod))

    def leave(self) -> None:
        self.stack.pop()
        for c in self.captures:
            c.calls.append(Mark())

    def hold(self, tensors: list[Any]) -> None:
        """A module call returns: its arguments, ``tensors``, lived until now (``Lifetimes.hold``)."""
        if self.lifetimes is not None and tensors:
            self.lifetimes.hold(tensors)
            for c in self.captures:
                c.calls.append(Mark(None, tuple(tensors)))

    def replay_program(self, program: Program, inputs: tuple, weights: list[Any], mods: list[Any] | None = None) -> Any:
        """Run a layer's program with this call's tensors (``mods``: a block's modules, in its key's
        order): on an inference walk, from its plan (``_replay_plan``); else (training, a block around it
        being recorded, no plan) each step through ``run_op`` with its memoised answer. A block's module
        calls start and end as traced ones do."""
        vals = [*inputs, *weights]
        captures, stack = self.captures, self.stack
        if not self.train and self.lifetimes is not None and not captures and program.plan is not None:
            external = self.lifetimes.external(program.plan.external, vals)
            if external is not None:  # else an input the lifetimes have not seen (``Lifetimes.external``)
                return self._replay_plan(program, vals, external, mods)
        for step in program.steps:
            if type(step) is Mark:
                if step.hold is not None:
                    self.hold([vals[i] for i in step.hold])
                elif captures:  # a block around this one is being recorded: the calls are its too
                    self.enter(mods[step.enter]) if step.enter is not None else self.leave()
                elif step.enter is not None:
                    stack.append(Frame(mods[step.enter]))
                else:
                    stack.pop()
                continue
            args, kwargs = fill(step, vals)
            out = self.run_op(step.func, step.info, args, kwargs, [vals[i] for i in step.tensors], step.answer)
            if step.outs == 1:
                vals.append(out)
            else:
                vals.extend(out)
        return program.result_with(vals)

    def _replay_plan(self, program: Program, vals: list[Any], external: list[tuple[int, int]],
                     mods: list[Any] | None) -> Any:
        """Replay a program from its plan (``Plan``): its records, made as a traced op's are (``record``), its
        lifetimes in one go, and the tensors its result needs. The called module's frame is new (``enter``)
        and left right after: its records' ``first`` flags are the plan's."""
        plan, own, book = program.plan, self.stack[-1], self.book
        base, record = len(book.records), self.record
        for m, first, info, priced, sizes in plan.records:
            record(own.mod if m < 0 else mods[m], first, info, priced, sizes, True)
        vals.extend([None] * (plan.slots - len(vals)))
        empty, device = self.empty_strided, self.meta_device
        for slot, b, *layout in plan.make:
            if not layout:
                vals[slot] = vals[b]
            elif b is None:
                vals[slot] = empty(layout[0], layout[1], dtype=layout[2], device=device)
            else:
                t = vals[b]
                vals[slot] = t.as_strided(layout[0], layout[1], t.storage_offset() + layout[3])
        self.lifetimes.replayed(plan, external, vals, [
            (own.mod if m < 0 else mods[m], name, None if r is None else base + r) for m, name, r in plan.ops])
        return program.result_with(vals)
