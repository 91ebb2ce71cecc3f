"""Analysis precision: the bytes a model takes in the number format a deployment runtime runs it in.

``float32`` (the default) counts every tensor at its own dtype (the model's ``dtype``).

``int8`` is static post-training quantization as the deployment runtimes apply it: int8 weights
with one scale per output channel, int8 activations with one scale per tensor, int32
accumulators. The byte rule, applied by ``int8_weight_bytes`` and by the cost engine
(``trace_model(float_bytes=INT8_FLOAT_BYTES)``):

* **Convolution and linear weights** (the ``weight`` of ``nn.Conv*``, ``nn.ConvTranspose*`` and
  ``nn.Linear`` modules, subclasses included): 1 byte per element (int8, symmetric), plus per
  output channel a float32 scale and an int8 zero point, 5 bytes. The output-channel axis is a
  weight's axis 0, and axis 1 of a transposed convolution's ``[in, out / groups, *k]`` weight.
  This is the per-axis ``QuantizeLinear``/``DequantizeLinear`` layout of the ONNX operator
  specification (the zero point has the quantized type, so it is stored although it is 0), which
  ONNX Runtime's ``quantize_static(..., per_channel=True)`` writes; the scheme (8 bit,
  symmetric, per channel) is also NNCF's first choice for CPU weights (``q8_w_sym`` in
  ``nncf/common/hardware/qspaces.py``) and that of ExecuTorch's XNNPACK quantizer with
  ``get_symmetric_quantization_config(is_per_channel=True)``. ONNX Runtime's own default is one
  scale per tensor (``per_channel=False``): 5 bytes per layer instead of per channel.
* **Biases of those layers**: int32, 4 bytes per element (the accumulator type; its scale is the
  input's scale times the weight's, derived: ONNX Runtime stores it and an int32 zero point, 8
  more bytes per bias element, which are not counted here).
* **Every other parameter** (BatchNorm and LayerNorm affine, embeddings) **and every buffer**:
  float32, 4 bytes per element. Runtimes fold BatchNorm into the convolution before them when
  they quantize; the fold is not modelled, so these bytes are an upper bound.
* **Activations**: every floating-point tensor the forward reads or writes, the model's inputs
  included (the runtime's first node quantizes them), at 1 byte per element. Their per-tensor
  scales and zero points (5 bytes per tensor) are not counted, nor is the float32 buffer the
  caller passes in (``ModelCost.input_bytes``). Integer tensors (indices, token ids) keep their
  dtype. A layer's bytes moved count the weights it reads at 1 byte per element too
  (``LayerCost.weight_bytes``: the scales and the int32 biases are in the model's total only).
* **MACs** are unchanged: int8 x int8 products accumulated in int32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["INT8_FLOAT_BYTES", "INT8_RULE", "PRECISIONS", "int8_weight_bytes"]

#: The analysis precisions, ``float32`` first (the default).
PRECISIONS: tuple[str, ...] = ("float32", "int8")
#: Bytes per element of a floating-point tensor at int8.
INT8_FLOAT_BYTES = 1
#: Bytes per output channel of a quantized weight: a float32 scale and an int8 zero point.
_CHANNEL_PARAMS_BYTES = 4 + 1
#: Bytes per element of a quantized layer's bias (int32) and of every parameter left in float32.
_BIAS_BYTES = _FLOAT_BYTES = 4

#: The rule in one line, for tables and help texts.
INT8_RULE = ("int8: conv and linear weights 1 byte each + a float32 scale and an int8 zero point per output "
             "channel (per-channel symmetric, the ONNX QDQ layout), their biases int32, other parameters and "
             "buffers float32 (BatchNorm not folded); activations 1 byte per element (integer tensors keep their "
             "dtype); MACs are int8 MACs (int32 accumulation)")


def int8_weight_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s parameters quantized to int8 under the module docstring's rule (each
    shared tensor once). ``model`` may live on the meta device.

    Example:
        >>> from torch import nn                                  # doctest: +SKIP
        >>> int8_weight_bytes(nn.Conv2d(3, 8, 3))  # 216 int8 + 8 x (4 + 1) + 8 int32 biases = 288
        288
    """
    from torch import nn

    sizes: dict[int, int] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and isinstance(weight, nn.Parameter):
            axis = 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0
            sizes.setdefault(id(weight), weight.numel() + weight.shape[axis] * _CHANNEL_PARAMS_BYTES)
            bias = getattr(module, "bias", None)
            if isinstance(bias, nn.Parameter):
                sizes.setdefault(id(bias), bias.numel() * _BIAS_BYTES)
    for p in model.parameters():
        sizes.setdefault(id(p), p.numel() * _FLOAT_BYTES)
    return sum(sizes.values())
