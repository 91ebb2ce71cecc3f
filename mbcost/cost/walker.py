"""Shape walker: run a model's forward pass on the meta device and record every op it issues.

Nothing is allocated or computed: tensors on the meta device carry only shapes and dtypes,
so analysing VGG16 at 2048x2048 with batch 64 costs the same as at 224. A user's model is
never changed: its parameters and buffers are swapped for meta stand-ins through
``torch.func.functional_call`` for the duration of the call, the forward hooks used to know
which module issued an op are removed in ``finally``, and train/eval flags are restored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mbcost.cost.ops import OP_ADAPTERS, is_inplace, op_name
from mbcost.cost.records import RecordBook, Trace
from mbcost.errors import AnalysisError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def _nbytes(t: Any) -> int:
    return int(t.numel()) * t.element_size()


def trace_model(model: torch.nn.Module, x: torch.Tensor) -> Trace:
    """Walk ``model`` with input ``x`` (a meta tensor) and return its per-op records.

    If the model's parameters are not on the meta device, meta stand-ins (same shapes and
    dtypes) are passed through ``functional_call``; the model itself is left as it was.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    book = RecordBook(model)
    on_meta = all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    stand_ins: dict[str, torch.Tensor] = {}
    if not on_meta:
        for key, t in [*model.named_parameters(remove_duplicate=False),
                       *model.named_buffers(remove_duplicate=False)]:
            stand_ins[key] = torch.empty_like(t, device="meta")
    weight_ids: set[int] = set()
    keep_alive: list[Any] = []  # ids are only stable while the objects live
    stack: list[tuple[torch.nn.Module, list[bool]]] = []

    def pre_hook(mod: torch.nn.Module, _args: Any) -> None:
        stack.append((mod, [True]))

    def post_hook(mod: torch.nn.Module, _args: Any, _out: Any) -> None:
        if stack and stack[-1][0] is mod:
            stack.pop()

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            name = op_name(func)
            mod, first = stack[-1] if stack else (model, [True])
            adapter = OP_ADAPTERS.get(name)
            if adapter is None:
                book.add_uncounted(name, mod)
                return out
            arg_tensors = [a for a in _flat(args, kwargs) if isinstance(a, torch.Tensor)]
            call = adapter(args, kwargs, out)
            if call.kind == "free":
                if any(id(a) in weight_ids for a in arg_tensors):
                    for o in _flat((out,), {}):
                        if isinstance(o, torch.Tensor):
                            weight_ids.add(id(o))
                            keep_alive.append(o)
                return out
            weights = [a for a in arg_tensors if id(a) in weight_ids]
            acts = [a for a in arg_tensors if id(a) not in weight_ids and a.dim() > 0]
            outs = [o for o in _flat((out,), {}) if isinstance(o, torch.Tensor)]
            book.add(mod, first_in_call=first[0], op=name, call=call,
                     input_bytes=sum(_nbytes(a) for a in acts[:2]),
                     output_bytes=_nbytes(outs[0]) if outs else 0,
                     weight_bytes=sum(_nbytes(w) for w in weights),
                     inplace=is_inplace(func))
            first[0] = False
            return out

    handles = []
    training = {m: m.training for m in book.names}
    try:
        for m in book.names:
            handles.append(m.register_forward_pre_hook(pre_hook))
            handles.append(m.register_forward_hook(post_hook, always_call=True))
        model.eval()
        with torch.no_grad():
            if on_meta:
                weight_ids.update(id(t) for t in [*model.parameters(), *model.buffers()])
                with Recorder():
                    model(x)
            else:
                weight_ids.update(id(t) for t in stand_ins.values())
                with Recorder():
                    torch.func.functional_call(model, stand_ins, (x,), strict=False)
    except (RuntimeError, ValueError, IndexError, TypeError, NotImplementedError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalysisError(f"the forward pass failed for input {tuple(x.shape)}: {first_line}") from exc
    finally:
        for h in handles:
            h.remove()
        for m, flag in training.items():
            m.training = flag

    trace = book.finish()
    if trace.uncounted:
        log.info("ops without a cost formula: %s", ", ".join(sorted({u.op for u in trace.uncounted})))
    return trace


def _flat(args: Any, kwargs: dict[str, Any]) -> list[Any]:
    out: list[Any] = []

    def walk(v: Any) -> None:
        if isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        else:
            out.append(v)

    walk(args)
    walk(list(kwargs.values()))
    return out
