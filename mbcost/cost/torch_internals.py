"""The engine's one home for torch's private APIs: each is used here only, where torch has no public one.

Every other module of the engine goes through these functions, so a torch upgrade that moves one of
them breaks one place. Why each is needed (no public API does it):

* ``torch.utils._python_dispatch.TorchDispatchMode``: the only way to see every ATen op a forward
  issues, below autograd, on any device (``FlopCounterMode`` subclasses it too); ``_should_skip_dynamo``
  is overridden so that torch does not wrap each op in a dynamo-disabling shim (the walk never runs
  under ``torch.compile``).
* ``torch._C._DisableTorchDispatch``: runs the ops of a replayed layer program without the dispatch
  mode, as they would run inside the mode's own handler.
* ``torch.nn.modules.module``'s ``_global_forward_pre_hooks``, ``_global_forward_hooks``,
  ``_global_backward_pre_hooks`` and ``_global_backward_hooks``: torch offers functions to register
  global module hooks but none to ask whether any are registered; another tool's global hooks must
  see every module call.
* ``torch.nn.Module._call_impl`` (and the ``_call_impl`` / ``_compiled_call_impl`` attributes): what
  ``Module.__call__`` runs. A walk's copy of a module replaces it on the instance (``shadow.py``) to
  see every module call without global hooks, and calls the class's own to run hooks and forward.
* ``UntypedStorage._cdata``: the identity of a tensor's storage. ``data_ptr()`` is 0 for every meta
  storage and a storage's Python object is not guaranteed to be the same each time it is asked for.
* ``torch.utils._pytree.tree_leaves``: a model's output may be any container torch knows (a Hugging
  Face ``ModelOutput`` registers itself there); there is no public pytree module.
* ``torch._prims_common.suggest_memory_format``: the layout ATen gives a convolution's or a pooling's output
  (``Tensor.suggest_memory_format`` has no Python binding; ``is_contiguous(memory_format=torch.channels_last)``
  ignores the strides of size-1 dims, which it does not: a transposed ``(1, n, c)`` viewed as ``(1, c, h, w)``).
* The ``_flat_weights`` list of torch's recurrent layers: the weights ``nn.LSTM`` hands to ``_VF.lstm``,
  whose devices torch checks against the input's before issuing any op.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["CALL_ATTRS", "call_impl", "channels_last", "dispatch_paused", "flat_weights", "others_watch_modules",
           "output_leaves", "recorder_class", "set_flat_weights", "storage_key", "storage_of"]

#: The attributes of a module instance that hold what ``Module.__call__`` runs.
CALL_ATTRS = ("_call_impl", "_compiled_call_impl")


def call_impl() -> Any:
    """``torch.nn.Module._call_impl``: hooks, then forward, as ``Module.__call__`` runs them."""
    import torch

    return torch.nn.Module._call_impl


def storage_key(t: Any) -> int:
    """The identity of ``t``'s storage (views share it), stable while the storage lives."""
    return t.untyped_storage()._cdata


def storage_of(t: Any) -> tuple[int, int]:
    """``storage_key(t)`` and its storage's bytes."""
    storage = t.untyped_storage()
    return storage._cdata, storage.nbytes()


def others_watch_modules() -> bool:
    """Whether global module hooks (another tool's) are registered, or TorchScript is tracing: then
    every module call must go through ``Module.__call__``."""
    import torch
    from torch.nn.modules import module as nn_module

    return bool(nn_module._global_forward_pre_hooks or nn_module._global_forward_hooks
                or nn_module._global_backward_pre_hooks or nn_module._global_backward_hooks
                or torch.jit.is_tracing())


def dispatch_paused() -> Any:
    """A context in which ops skip the dispatch mode (as inside the mode's own handler)."""
    import torch

    return torch._C._DisableTorchDispatch()


def output_leaves(result: Any) -> list[Any]:
    """The leaves of a forward's result, in any container torch knows."""
    from torch.utils._pytree import tree_leaves

    return tree_leaves(result)


def channels_last(t: Any) -> bool:
    """Whether ATen lays a new tensor out channels-last after 4-D ``t`` (``suggest_memory_format``)."""
    import torch
    from torch._prims_common import suggest_memory_format

    return suggest_memory_format(t) is torch.channels_last


def flat_weights(module: Any) -> Any:
    """The weight list a recurrent layer hands to torch (``None`` for other modules)."""
    return module.__dict__.get("_flat_weights")


def set_flat_weights(module: Any, weights: list[Any]) -> None:
    module.__dict__["_flat_weights"] = weights


@functools.cache
def recorder_class() -> type:
    """The dispatch mode of a walk: each op goes to ``walk.dispatch(func, args, kwargs)`` (made once,
    on first use, so that importing the engine stays light)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self, walk: Any) -> None:
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
