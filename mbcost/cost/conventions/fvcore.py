"""``fvcore``: ``FlopCountAnalysis`` (fvcore 0.1.5 ``fvcore/nn/flop_count.py``, ``jit_handles.py``).

fvcore traces the module with ``torch.jit`` and counts ops by handle: one "flop" per MAC of
``aten::_convolution``, ``addmm``, ``linear``, ``matmul``, ``mm``, ``bmm`` (bias ignored); eval
``batch_norm`` 1 per input element, 2 with an affine scale, and in training (batch statistics: a
module in train mode, ``mode="train"``, or one without running statistics) 4, 5 with affine, as
``layer_norm``/``group_norm``/``instance_norm`` 4 per element, 5 with affine; ``adaptive_avg_pool2d``
1 per input element; ``upsample_nearest2d`` 1 and ``upsample_bilinear2d`` 4 per output element;
``grid_sampler`` 4 per output element whatever its mode (fvcore assumes bilinear). ``relu`` and
``clamp`` are ignored; every other op (``hardtanh_`` = ReLU6, ``add``, ``max_pool2d``, ``mean``,
``baddbmm``, 1-D/3-D and bicubic upsampling...) has no handle and counts 0 (fvcore lists it as
unsupported), ``aten::scaled_dot_product_attention`` included: its products count 0 (:mod:`.attention`), and
torch's recurrent layers, each traced as one op (``aten::lstm``, ``gru``, ``rnn_tanh``): 0.
``nn.MultiheadAttention`` in eval without grad takes its fused fast path,
``aten::_native_multi_head_attention``, which fvcore has no handle for: all its work counts 0.
The fast path is assumed for every ``nn.MultiheadAttention`` (the engine's records, traced on the meta
device, do not show which path the real forward takes): right for torchvision's ViT (self-attention,
``batch_first``, with bias); a module on the slow path (``batch_first=False``, ``bias=False``, cross-
attention, an odd number of heads) leaves an unexplained remainder, which reconcile shows loudly.
"""

from __future__ import annotations

from mbcost.cost.conventions.attention import CPU_SDPA, CUDA_SDPA, SDPA, SDPA_MATH, sdpa_uncounted
from mbcost.cost.conventions.base import (
    Charge,
    Convention,
    Handler,
    Unit,
    elementwise,
    macs,
    norm,
    numel,
    unsupported,
)
from mbcost.cost.ops import family
from mbcost.cost.result import LayerCost

__all__ = ["FVCORE", "MHA_FAST_PATH", "RECURRENT", "cpu_fuses_lstm", "fast_path_lookup", "is_adaptive_avg_pool2d",
           "multi_head_attention_fast_path", "recurrent"]

#: The table key of every record issued by an ``nn.MultiheadAttention``: the op the real forward runs.
MHA_FAST_PATH = "_native_multi_head_attention"


def fast_path_lookup(layer: LayerCost) -> str:
    """The table key of a record for op-keyed counters that run the real module in eval without grad:
    work issued by ``nn.MultiheadAttention`` runs there as one fused op, ``_native_multi_head_attention``
    (the engine traces its unfused path on the meta device); so does ``nn.LSTM``'s on the CPU (``RECURRENT``);
    everything else by its ATen op."""
    bases = layer.facts.torch_bases
    return MHA_FAST_PATH if "MultiheadAttention" in bases else RECURRENT if "LSTM" in bases else layer.op


#: The table key of the work of torch's recurrent layers, which the meta walk traces step by step.
RECURRENT = "recurrent layer"


def cpu_fuses_lstm() -> bool:
    """Whether ``nn.LSTM`` runs on the CPU as one oneDNN op, ``aten::mkldnn_rnn_layer`` (in float32, oneDNN built
    and enabled; an LSTM with ``proj_size`` is not told apart)."""
    import torch

    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def recurrent(library: str, ops: dict[str, Handler | None] | None = None, default: Handler | None = None) -> Handler:
    """Nothing for the work of a recurrent layer the library sees as one op; with ``ops``, its table (a library
    that sees ATen ops, keyed by ``RECURRENT`` for ``nn.LSTM`` only), the ops themselves unless the CPU fuses them."""
    def handle(layer: LayerCost) -> Charge:
        if ops is not None and not cpu_fuses_lstm():
            handler = ops.get(layer.op if layer.op in ops else family(layer.op), default)
            return handler(layer) if handler else Charge(counted=False, reason=f"{library} ignores {layer.op}")
        seen = "aten::mkldnn_rnn_layer on the CPU" if ops is not None else "one aten::lstm / gru / rnn_* op"
        return Charge(counted=False, component="recurrent", reason=f"{layer.module_type} runs as {seen}, which "
                                                                   f"{library} does not count")
    return handle


def multi_head_attention_fast_path(library: str) -> Handler:
    """Nothing counted for work inside ``nn.MultiheadAttention``: the counter sees one fused op it has no rule for."""
    def handle(layer: LayerCost) -> Charge:
        return Charge(counted=False, component="multi_head_attention", reason=(
            f"nn.MultiheadAttention in eval runs its fast path, aten::{MHA_FAST_PATH}, "
            f"which {library} does not count"))
    return handle


def is_adaptive_avg_pool2d(layer: LayerCost) -> bool:
    """Whether the traced graph holds ``aten::adaptive_avg_pool2d`` for this record.

    An ``nn.AdaptiveAvgPool2d`` does; other pooling modules (1d/3d, max) do not. A functional
    call shows up in the records as ``_adaptive_avg_pool2d`` or, for a 1x1 output, as the ``mean``
    it dispatches to: over dims ``(-1, -2)``, keeping the rank. A ``mean`` the model calls itself
    (a squeeze-excite's ``x.mean((2, 3), keepdim=True)``) is traced as ``aten::mean``: no handle.
    """
    if "AdaptiveAvgPool2d" in layer.facts.torch_bases:
        return True
    facts = layer.facts
    if facts.module_is_leaf and any(b.startswith(("AdaptiveAvgPool", "AdaptiveMaxPool")) for b in facts.torch_bases):
        return False
    x, y = layer.input_shape, layer.output_shape
    if layer.op == "_adaptive_avg_pool2d":
        return True
    return layer.op == "mean" and facts.dims == (-1, -2) and len(x) == len(y) in (3, 4)


_no_handle = unsupported("fvcore")
_instance_norm = norm(4, 5, "instance_norm")
_eval_batch_norm = norm(1, 2, "eval batch_norm")
_training_batch_norm = norm(4, 5, "batch_norm in training (batch statistics)")


def _batch_norm(layer: LayerCost) -> Charge:
    """InstanceNorm dispatches to ``batch_norm`` too; fvcore sees ``aten::instance_norm`` for it."""
    if "_InstanceNorm" in layer.facts.torch_bases:
        return _instance_norm(layer)
    return (_training_batch_norm if layer.facts.training else _eval_batch_norm)(layer)


def _adaptive_pool(layer: LayerCost) -> Charge:
    if is_adaptive_avg_pool2d(layer):
        return Charge(ops=numel(layer.input_shape), reason="adaptive_avg_pool2d: 1 per input element")
    return _no_handle(layer)


_products = macs("1 flop per MAC, bias ignored")
_sdpa = sdpa_uncounted("fvcore traces aten::scaled_dot_product_attention, which it has no handle for: 0")

FVCORE = Convention(
    name="fvcore", unit=Unit.MAC, library_unit="MACs + counted elementwise ops (fvcore calls them flops)",
    summary="fvcore FlopCountAnalysis: conv/linear MACs + BatchNorm (eval 2/elem with affine, training 5) + "
            "adaptive_avg_pool2d (1/input elem) + bilinear/nearest upsampling (4/1 per output elem); ReLU6, adds, "
            "max pool, attention (SDPA, fused MHA) uncounted",
    table={
        **dict.fromkeys(("conv", "products", "biased_products", "linear"), _products),
        "baddbmm": _no_handle,
        "batchnorm": _batch_norm,
        "norms": norm(4, 5, "layer/group/instance norm"),
        **dict.fromkeys(("adaptive_pool", "reduction"), _adaptive_pool),
        "upsample_nearest2d": elementwise(1, "upsample_nearest2d: 1 per output element", of="output"),
        "upsample_bilinear2d": elementwise(4, "upsample_bilinear2d: 4 per output element", of="output"),
        "grid_sampler": elementwise(4, "grid_sampler: 4 per output element (fvcore assumes bilinear)", of="output"),
        **dict.fromkeys((SDPA, SDPA_MATH, CPU_SDPA, *CUDA_SDPA), _sdpa),
        "relu": None, "clamp": None,  # fvcore's _IGNORED_OPS: counted as nothing, not listed
        MHA_FAST_PATH: multi_head_attention_fast_path("fvcore"),
        RECURRENT: recurrent("fvcore"),
    },
    default=_no_handle, ignored_reason="fvcore ignores this op",
    lookup=lambda layer: RECURRENT if "RNNBase" in layer.facts.torch_bases else fast_path_lookup(layer),
)
