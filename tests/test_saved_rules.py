"""Every saved-for-backward rule (``mbcost.cost.training.SAVED``) against what autograd really saves.

Each op runs for real under ``torch.autograd.graph.saved_tensors_hooks`` (``tests/saved_ops.py``), one at
a time; the bytes of the activations its backward node packs (inputs, outputs, or copies autograd made)
must equal what ``saved_for_backward`` says it saves. The ops come from two places: the training forwards
of torchvision and timm models (every distinct op call they issue), and a list of ops written here, the
attention kernels included (the CUDA ones on the meta device, where autograd runs their formulas too).
"""

from __future__ import annotations

import pytest
import torch

from tests.saved_ops import Call, capture, check

aten = torch.ops.aten


def _mismatches(calls) -> list[str]:
    bad = []
    for call in calls:
        c = check(call)
        if c.real != c.rule:
            bad.append(f"{c.op} ({c.where}): autograd saves {c.real} bytes {c.real_roles}, "
                       f"the rule {c.rule} bytes {c.rule_roles}")
    return bad


def _call(func, args, grad, weight=None, kwargs=None, where="") -> Call:
    return Call(func, args, kwargs or {}, weight or [False] * len(grad), grad, where)


def test_rules_match_autograd_on_torchvision_training_forwards():
    """MobileNetV3 (in-place Hardswish, squeeze-excitation products, in-place dropout), EfficientNet
    (SiLU in place, stochastic depth: a product with a mask that needs no gradient), GoogLeNet (its
    auxiliary heads' adaptive pooling to 4x4 saves its input), DenseNet and ResNet (batch norm, pooling)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    calls: dict = {}
    for name, size in (("mobilenet_v3_small", 64), ("efficientnet_b0", 64), ("googlenet", 96),
                       ("densenet121", 64), ("resnet18", 64)):
        model = torchvision.models.get_model(name, weights=None)
        capture(model, torch.randn(2, 3, size, size), calls=calls, label=name)
    assert len(calls) > 20
    assert _mismatches(calls.values()) == []


def test_rules_match_autograd_on_timm_training_forwards():
    """DeiT (fused attention: ``_scaled_dot_product_flash_attention_for_cpu``, GELU, LayerNorm), EVA-02 (a
    qkv bias made by ``cat``: an activation operand of ``addmm`` that is not saved), ResMLP (``addcmul``),
    EfficientFormer (a product and a division by plain numbers), ConvNeXt (layer scale)."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    calls: dict = {}
    for name, size in (("deit_tiny_patch16_224", 224), ("eva02_tiny_patch14_224", 224), ("resmlp_12_224", 224),
                       ("efficientformer_l1", 224), ("convnext_atto", 64)):
        capture(timm.create_model(name, pretrained=False), torch.randn(1, 3, size, size), calls=calls, label=name)
    ops = {str(c.func) for c in calls.values()}
    assert "aten._scaled_dot_product_flash_attention_for_cpu.default" in ops
    assert _mismatches(calls.values()) == []


def _op_cases() -> list[Call]:
    r = torch.randn
    q, k, v, mask = r(2, 3, 16, 8), r(2, 3, 16, 8), r(2, 3, 16, 8), r(16, 16)
    a, b = r(2, 3, 16, 8), r(2, 3, 16, 8)
    sdpa = aten._scaled_dot_product_flash_attention_for_cpu.default
    cases = [
        _call(sdpa, (q, k, v), [True] * 3),
        _call(sdpa, (q, k, v, 0.0, False), [True] * 3 + [False], kwargs={"attn_mask": mask}),
        _call(aten._safe_softmax.default, (r(2, 3, 16, 16), -1), [True]),
        _call(aten._softmax.default, (r(2, 3, 16, 16), -1, False), [True]),
        _call(aten._log_softmax.default, (r(2, 16), -1, False), [True]),
        _call(aten.mul.Scalar, (a, 0.5), [True]),
        _call(aten.mul.Tensor, (a, b), [True, True]),
        _call(aten.mul.Tensor, (a, b), [True, False]),
        _call(aten.mul_.Tensor, (a, b), [True, True]),
        _call(aten.mul_.Tensor, (a, b), [True, False]),
        _call(aten.div.Tensor, (a, b), [True, True]),
        _call(aten.div.Tensor, (a, b), [False, True]),
        _call(aten.div.Tensor, (a, b), [True, False]),
        _call(aten.div_.Tensor, (a, b), [True, False]),
        _call(aten.div.Scalar, (a, 2.0), [True]),
        _call(aten.add.Tensor, (a, b), [True, True]),
        _call(aten.sub.Tensor, (a, b), [True, True]),
        _call(aten.bmm.default, (r(6, 16, 8), r(6, 8, 16)), [True, True]),
        _call(aten.bmm.default, (r(6, 16, 8), r(6, 8, 16)), [True, False]),
        _call(aten.baddbmm.default, (r(6, 16, 16), r(6, 16, 8), r(6, 8, 16)), [False, True, True]),
        _call(aten.mm.default, (r(16, 8), r(8, 4)), [True, True], [False, True]),
        _call(aten.addmm.default, (r(4), r(16, 8), r(8, 4)), [True, True, True], [True, False, True]),
        _call(aten.addmm.default, (r(4), r(16, 8), r(8, 4)), [True, True, False], [True, False, False]),
        _call(aten.convolution.default, (r(2, 3, 8, 8), r(4, 3, 3, 3), None, [1, 1], [0, 0], [1, 1], False,
                                         [0, 0], 1), [True, True], [False, True]),
        _call(aten.convolution.default, (r(2, 3, 8, 8), r(4, 3, 3, 3), None, [1, 1], [0, 0], [1, 1], False,
                                         [0, 0], 1), [True, False], [False, True]),
        _call(aten.addcmul.default, (a, b, q), [True, True, True]),
        _call(aten.native_dropout.default, (a, 0.1, True), [True]),
        _call(aten.native_layer_norm.default, (a, [8], None, None, 1e-5), [True]),
        _call(aten.native_group_norm.default, (r(2, 4, 8, 8), None, None, 2, 4, 64, 2, 1e-5), [True]),
        _call(aten.native_batch_norm.default, (r(2, 4, 8, 8), r(4), r(4), r(4), r(4), True, 0.1, 1e-5),
              [True, True, True, False, False], [False, True, True, True, True]),
        _call(aten.max_pool2d_with_indices.default, (a, [2, 2]), [True]),
        _call(aten.avg_pool2d.default, (a, [2, 2]), [True]),
        _call(aten._adaptive_avg_pool2d.default, (a, [4, 4]), [True]),
        _call(aten.adaptive_max_pool2d.default, (a, [4, 4]), [True]),
        _call(aten.mean.dim, (a, [-1], True), [True]),
        _call(aten.sum.dim_IntList, (a, [-1], True), [True]),
        _call(aten.var_mean.correction, (a, [-1]), [True], kwargs={"correction": 0, "keepdim": True}),
        _call(aten.var.correction, (a, [-1]), [True], kwargs={"correction": 0, "keepdim": True}),
        _call(aten.std.correction, (a, [-1]), [True], kwargs={"correction": 1, "keepdim": True}),
        _call(aten.linalg_vector_norm.default, (a, 2, [-1], True), [True]),
        _call(aten.amax.default, (a, [-1], True), [True]),
        _call(aten.max.dim, (a, -1, True), [True]),
        _call(aten.topk.default, (a, 2), [True]),
        _call(aten.index.Tensor, (a, [torch.tensor([0, 1])]), [True, False]),
        _call(aten.gather.default, (a, -1, torch.zeros(2, 3, 16, 2, dtype=torch.long)), [True, False]),
        _call(aten.where.self, (a > 0, a, b), [False, True, True]),
        _call(aten.masked_fill.Scalar, (a, a > 0, 0.0), [True, False]),
        _call(aten.minimum.default, (a, b), [True, True]),
        _call(aten.embedding.default, (r(10, 8), torch.tensor([1, 2, 3])), [True, False], [True, False]),
        _call(aten.log_sigmoid_forward.default, (a,), [True]),
        _call(aten.softplus.default, (a, 1, 20), [True]),
        _call(aten.constant_pad_nd.default, (a, [1, 1]), [True]),
        _call(aten.upsample_nearest2d.default, (a, [32, 16]), [True]),
        _call(aten.upsample_bilinear2d.default, (a, [32, 16], False), [True]),
        _call(aten.cat.default, ([a, b], 1), [True, True]),
        _call(aten.roll.default, (a, [1], [2]), [True]),
        _call(aten.cumsum.default, (a, -1), [True]),
    ]
    for name in ("exp", "sqrt", "rsqrt", "log", "abs", "erf", "sin", "cos", "neg", "sigmoid", "tanh", "relu",
                 "gelu", "silu", "hardswish", "hardsigmoid", "mish"):
        cases.append(_call(getattr(aten, name).default, (a.abs() + 0.1,), [True]))
    cases.append(_call(aten.pow.Tensor_Scalar, (a, 2), [True]))
    # in place: ops whose backward reads the result keep it; ops that read their input keep a copy of it
    for name, extra in (("relu_", ()), ("sigmoid_", ()), ("tanh_", ()), ("leaky_relu_", (0.1,)), ("elu_", ()),
                        ("hardtanh_", (0.0, 6.0)), ("gelu_", ()), ("silu_", ()), ("hardswish_", ()),
                        ("hardsigmoid_", ()), ("clamp_", (0.0, 1.0)), ("clamp_min_", (0.0,)),
                        ("threshold_", (0.0, 0.0)), ("mish_", ())):
        cases.append(_call(getattr(aten, name).default, (a, *extra), [True]))
    return cases


def test_rules_match_autograd_op_by_op():
    assert _mismatches(_op_cases()) == []


def test_cuda_attention_kernels_save_inputs_output_and_statistics():
    """The flash, memory-efficient and cuDNN attention kernels, run through autograd on the meta device:
    q, k, v, the output, the logsumexp and the random generator's state."""
    q, k, v = (torch.empty(2, 3, 16, 8, device="meta", dtype=torch.float16) for _ in range(3))
    cases = [
        _call(aten._scaled_dot_product_flash_attention.default, (q, k, v), [True] * 3),
        _call(aten._scaled_dot_product_efficient_attention.default, (q, k, v, None, True), [True] * 3),
        _call(aten._scaled_dot_product_cudnn_attention.default, (q, k, v, None, True), [True] * 3),
    ]
    assert _mismatches(cases) == []
