"""ATen op names (as the engine records them: overload packet, in-place ``_`` removed) by family.

They mirror the op table of :mod:`mbcost.cost.ops`; the convention tables are keyed by them.
"""

from __future__ import annotations

__all__ = ["ADAPTIVE_POOL_OPS", "ATTENTION_OPS", "BATCHNORM_OPS", "CONV_OPS", "MATMUL_OPS", "NORM_OPS"]

CONV_OPS: tuple[str, ...] = tuple(
    "convolution _convolution convolution_overrideable cudnn_convolution mkldnn_convolution conv1d conv2d conv3d "
    "conv_transpose1d conv_transpose2d conv_transpose3d".split())
MATMUL_OPS: tuple[str, ...] = tuple("mm bmm mv dot addmm baddbmm matmul linear".split())
ATTENTION_OPS: tuple[str, ...] = tuple(
    "_scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_flash_attention "
    "_scaled_dot_product_efficient_attention _scaled_dot_product_cudnn_attention _scaled_dot_product_attention_math "
    "_native_multi_head_attention".split())
BATCHNORM_OPS: tuple[str, ...] = tuple(
    "batch_norm native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_no_training cudnn_batch_norm "
    "miopen_batch_norm _batch_norm_impl_index".split())
NORM_OPS: tuple[str, ...] = tuple("layer_norm native_layer_norm group_norm native_group_norm instance_norm".split())
ADAPTIVE_POOL_OPS: tuple[str, ...] = tuple(
    "adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d _adaptive_avg_pool3d "
    "adaptive_max_pool2d mean sum".split())
