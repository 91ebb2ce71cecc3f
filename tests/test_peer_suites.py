"""The peers' own test suites, rebuilt: their models, their shapes, their expected literals.

Every forward case of PyTorch's ``test/test_flop_counter.py`` (pytorch/pytorch, read at commit 067f1d9d) and of
fvcore's ``tests/test_flop_count.py`` (facebookresearch/fvcore, read at commit 1856b63f) is written here again as
a small module. Each asserts three numbers equal: the literal the peer's test expects (copied, with the
peer's arithmetic in a comment), the total of mbcost's preset for that library (``apply_convention``, from
formulas, nothing run), and the live library on the same module and inputs.

Left out: cases that test the library's machinery rather than a formula (custom handles and mappings, a
scripted function, torchscript, hook registration, pytrees, warnings) and backward passes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mbcost
from mbcost.cost.conventions import apply_convention

fvcore = pytest.importorskip("fvcore")


def T(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def preset(model: nn.Module, inputs: tuple, convention: str, **kw):
    return apply_convention(mbcost.analyze(model, inputs, **kw), convention)


def flop_counter_mode(model: nn.Module, inputs: tuple) -> int:
    """torch's FlopCounterMode on the CPU, as PyTorch's test runs it."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as mode, torch.no_grad():
        model(*inputs)
    return mode.get_total_flops()


def fvcore_analysis(model: nn.Module, inputs: tuple):
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return analysis


class Fn(nn.Module):
    """A module whose forward is one function of its inputs (the peers' tests call the functions directly)."""

    def __init__(self, fn, *consts) -> None:
        super().__init__()
        self.fn, self.consts = fn, consts

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs, *self.consts)


# --- PyTorch: test/test_flop_counter.py -----------------------------------------------------------


class Variety(nn.Module):
    """``test_flop_counter_variety``: five products in one mode."""

    def __init__(self) -> None:
        super().__init__()
        self.mod = nn.Linear(9, 10)

    def forward(self, a, b, c, d, e, f, g, h, i, x):
        torch.mm(a, b)
        torch.addmm(c, d, e, beta=0.5, alpha=0.5)
        torch.matmul(f, g)
        torch.einsum("ab,bc->ac", h, i)
        return self.mod(x)


class ThreeAddmm(nn.Module):
    """``test_op``: three ``addmm`` with a full, a column and a row bias."""

    def forward(self, b1, b2, b3, a, m):
        return torch.addmm(b1, a, m), torch.addmm(b2, a, m), torch.addmm(b3, a, m)


class MmOut(nn.Module):
    """``test_addmm_out``: ``torch.mm`` writing into a tensor the forward made."""

    def forward(self, x):
        y = torch.zeros(10, 10, device=x.device)
        return torch.mm(x, x, out=y)


class Sdpa(nn.Module):
    """``test_sdpa``'s forward: causal attention, no dropout."""

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0, is_causal=True)


TORCH_CASES = {
    # 4*5*6 + 4*5*6 + 5*6*7 + 6*7*8 + 8*9*10 = 1506 MACs, 2 FLOPs each
    "variety": (Variety(), (T(4, 5), T(5, 6), T(4, 6), T(4, 5), T(5, 6), T(5, 6), T(6, 7), T(6, 7), T(7, 8),
                            T(8, 9)), 3012),
    "mm": (Fn(torch.mm), (T(4, 5), T(5, 6)), 240),  # 4 * 6 * 2 * 5
    "bmm": (Fn(torch.bmm), (T(3, 4, 5), T(3, 5, 6)), 720),  # 3 * 4 * 6 * 2 * 5
    "addmm x3": (ThreeAddmm(), (T(4, 6), T(4, 1), T(6), T(4, 5), T(5, 6)), 720),  # 3 x 4 * 6 * 2 * 5
    "baddbmm": (Fn(torch.baddbmm), (T(3, 4, 6), T(3, 4, 5), T(3, 5, 6)), 720),  # 3 * 4 * 6 * 2 * 5
    # out 2 * 5 * 5, kernel 4 * 4, c_out 6, c_in 3: 2*5*5 * 4*4 * 6 * 2 * 3
    "conv2d": (Fn(lambda x, w: torch.conv2d(x, w, padding=1)), (T(2, 3, 6, 6), T(6, 3, 4, 4)), 28800),
    "conv1d": (Fn(lambda x, w: torch.conv1d(x, w, padding=1)), (T(2, 3, 6), T(6, 3, 4)), 1440),  # 2*5 * 4 * 6*2*3
    # test_convs' expected forward counts
    "conv_transpose2d": (Fn(F.conv_transpose2d), (T(1, 1, 2, 2), T(1, 1, 2, 2)), 32),  # 4 inputs x 4 taps x 2
    "conv2d 1x1": (Fn(F.conv2d), (T(1, 1, 2, 2), T(1, 1, 1, 1)), 8),  # 4 outputs x 1 tap x 2
    "mm out=": (MmOut(), (T(10, 10),), 2000),  # 10 * 10 * 10 * 2
}


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_pytorch_flop_counter_cases(case):
    model, inputs, literal = TORCH_CASES[case]
    assert preset(model, inputs, "torch").total == literal == flop_counter_mode(model, inputs)


def test_pytorch_sdpa_case():
    """``test_sdpa`` (CUDA only there): batch 4, 8 heads, head dim 64; q 128 long, k and v 128 or 256.

    On CUDA the flash and memory-efficient kernels have FlopCounterMode formulas: 134217728 and 268435456
    FLOPs, the two products (``2 * 4*8*128*128*64`` MACs, twice over) that the paper preset counts as MACs.
    On the CPU, where mbcost runs the counters, SDPA is ``_scaled_dot_product_flash_attention_for_cpu``:
    the torch preset follows FlopCounterMode there, whatever it counts for that kernel.
    """
    for seq_k, literal in ((128, 134217728), (256, 268435456)):
        q, k, v = T(4, 8, 128, 64), T(4, 8, seq_k, 64), T(4, 8, seq_k, 64)
        cost = mbcost.analyze(Sdpa(), (q, k, v))
        assert 2 * apply_convention(cost, "paper").total == literal
        assert apply_convention(cost, "torch").total == flop_counter_mode(Sdpa(), (q, k, v))


# --- fvcore: tests/test_flop_count.py ---------------------------------------------------------------


class ThreeNet(nn.Module):
    """fvcore's ``ThreeNet``: a 1x1 convolution, adaptive average pooling, two linear layers."""

    def __init__(self, input_dim: int, conv_dim: int, linear_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(input_dim, conv_dim, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear1 = nn.Linear(conv_dim, linear_dim)
        self.linear2 = nn.Linear(linear_dim, 1)

    def forward(self, x):
        return self.linear2(self.linear1(torch.flatten(self.pool(self.conv(x)), 1)))


class CustomNet(nn.Module):
    """fvcore's ``CustomNet``: a linear layer and a sigmoid (which fvcore has no handle for)."""

    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        self.conv = nn.Linear(input_dim, output_dim)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.conv(x))


def conv_case(conv_dim, batch, cin, cout, spatial, kernel, padding, stride, groups, transpose=False,
              output_padding=0):
    """fvcore's ``_test_conv``: the module, its input and the test's formula
    ``batch * cin * cout * kernel**d * out**d / groups`` (a transposed convolution counts the input's size)."""
    if transpose:
        cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[conv_dim - 1]
        conv = cls(cin, cout, kernel, stride, padding, groups=groups, output_padding=output_padding)
        size = spatial
    else:
        cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[conv_dim - 1]
        conv = cls(cin, cout, kernel, stride, padding, groups=groups)
        size = (spatial + 2 * padding - kernel) // stride + 1
    x = T(batch, cin, *(spatial,) * conv_dim)
    return conv, (x,), batch * cin * cout * kernel ** conv_dim * size ** conv_dim // groups


VEC = torch.rand(2)
FVCORE_CASES = {
    "nn.Linear": (nn.Linear(8, 4), (T(5, 8),), 160),  # test_nn: 5 * 8 * 4
    "linear": (nn.Linear(10, 20), (T(5, 10),), 1000),  # test_linear: 5 * 10 * 20
    "linear 3-D": (nn.Linear(10, 20), (T(5, 5, 10),), 5000),  # 5 * 10 * 5 * 20
    # test_conv, its nine cases in its order; the literal is the test's own formula
    "conv2d": conv_case(2, 5, 10, 3, 15, 3, 1, 1, 1),  # 303750
    "conv2d strided": conv_case(2, 2, 10, 6, 20, 3, 1, 2, 1),  # 108000
    "conv2d grouped": conv_case(2, 5, 16, 8, 15, 5, 2, 1, 4),  # 900000
    "conv2d groups = out": conv_case(2, 5, 16, 8, 15, 3, 1, 1, 8),  # 162000
    "conv1d": conv_case(1, 5, 10, 3, 15, 3, 1, 1, 1),  # 6750
    "conv3d": conv_case(3, 5, 10, 3, 15, 3, 1, 1, 1),  # 13668750
    "conv_transpose2d": conv_case(2, 5, 10, 3, 15, 3, 1, 1, 1, transpose=True),  # 303750
    "conv_transpose2d strided": conv_case(2, 5, 10, 3, 15, 3, 1, 2, 1, transpose=True),  # 303750
    "conv_transpose2d output_padding": conv_case(2, 5, 10, 3, 15, 3, 1, 3, 1, transpose=True, output_padding=2),
    "matmul": (Fn(torch.matmul), (T(20, 10), T(10, 100)), 20000),  # test_matmul: m * n * p
    # test_matmul_broadcast
    "matmul 1 x": (Fn(torch.matmul), (T(1, 20, 10), T(1, 10, 100)), 20000),
    "matmul 2x2 x": (Fn(torch.matmul), (T(2, 2, 20, 10), T(2, 2, 10, 100)), 80000),  # 4 * m * n * p
    "matmul 1 x 2-D": (Fn(torch.matmul), (T(1, 20, 10), T(10, 100)), 20000),
    "matmul 2 x 2-D": (Fn(torch.matmul), (T(2, 20, 10), T(10, 100)), 40000),  # 2 * m * n * p
    "bmm": (Fn(torch.bmm), (T(2, 5, 2), T(2, 2, 12)), 240),  # test_bmm: n * t * p * c
    # test_einsum: n * t * p * c and n * t * g * c
    "einsum nct,ncp->ntp": (Fn(lambda x, y: torch.einsum("nct,ncp->ntp", x, y)), (T(1, 5, 2), T(1, 5, 12)), 120),
    "einsum ntg,ncg->nct": (Fn(lambda x, y: torch.einsum("ntg,ncg->nct", x, y)), (T(1, 2, 6), T(1, 5, 6)), 60),
    # test_complicated_einsum
    "einsum nc,nchw->hw": (Fn(lambda x, y: torch.einsum("nc,nchw->hw", x, y)), (T(3, 4), T(3, 4, 2, 3)), 72),
    # test_torch_mm
    "mm": (Fn(torch.mm), (T(3, 4), T(4, 5)), 60),
    "matmul 2-D": (Fn(torch.matmul), (T(3, 4), T(4, 5)), 60),
    # test_threeNet: conv 4*5*2*10*10 + linear 4*5*3 + 4*3*1 + adaptive_avg_pool2d 2e-6 GFLOPs
    "ThreeNet": (ThreeNet(2, 5, 3), (T(4, 2, 10, 10),), 4000 + 60 + 12 + 2000),
    # test_batch_norm (the handle on F.batch_norm): eval with affine 2 per element, without 1, training 5
    "F.batch_norm": (Fn(F.batch_norm, VEC, VEC, VEC, VEC), (T(2, 2, 2, 2),), 32),
    "F.batch_norm no affine": (Fn(F.batch_norm, VEC, VEC, None, None), (T(2, 2, 2, 2),), 16),
    "F.batch_norm training": (Fn(F.batch_norm, VEC, VEC, VEC, VEC, True), (T(2, 2, 2, 2),), 80),
    # test_group_norm: 5 per element with affine, 4 without
    "F.group_norm": (Fn(F.group_norm, 2, VEC, VEC), (T(2, 2, 2, 2),), 80),
    "F.group_norm no affine": (Fn(F.group_norm, 2, None, None), (T(2, 2, 2, 2),), 64),
    # test_upsample: 2**4 inputs, 4x the elements out, 4 per output element
    "F.interpolate bilinear": (Fn(F.interpolate, None, 2, "bilinear", False), (T(2, 2, 2, 2),), 2 ** 4 * 4 * 4),
    # fvcore's handle for upsample_nearest2d (not in its tests): 1 per output element
    "F.interpolate nearest": (Fn(F.interpolate, None, 2, "nearest"), (T(2, 2, 2, 2),), 64),
    # fvcore's handle for grid_sampler (not in its tests): 4 per output element, whatever the mode
    "F.grid_sample": (Fn(F.grid_sample, "nearest", "zeros", False), (T(1, 2, 4, 4), T(1, 3, 5, 2)), 4 * 2 * 3 * 5),
}


@pytest.mark.parametrize("case", list(FVCORE_CASES))
def test_fvcore_flop_count_cases(case):
    model, inputs, literal = FVCORE_CASES[case]
    assert preset(model, inputs, "fvcore").total == literal == fvcore_analysis(model.eval(), inputs).total()


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_fvcore_batchnorm_modules(dims):
    """``test_batchnorm``: BatchNorm1d in eval, 1 per element (no affine); BatchNorm2d and 3d left in train
    mode, 4 per element (batch statistics, no affine). A module in train mode is ``mode="train"`` in mbcost
    (``analyze`` otherwise counts the eval forward, as the counters run it)."""
    cls = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[dims - 1]
    shape = (10, 10) if dims == 1 else (10, 10, *(5,) * dims)
    bn = cls(10, affine=False)
    literal = 10 * 10 if dims == 1 else 4 * 10 * 10 * 5 ** dims  # 100, 10000, 50000
    if dims == 1:
        bn.eval()
    got = preset(bn, (T(*shape),), "fvcore", mode="inference" if dims == 1 else "train").total
    assert got == literal == fvcore_analysis(bn, (T(*shape),)).total()


def test_fvcore_skipped_ops():
    """``test_skip_ops``: ``aten::sigmoid`` once; the linear layer 10 * 5 * 4."""
    model, x = CustomNet(5, 4), T(10, 5)
    cc = preset(model, (x,), "fvcore")
    analysis = fvcore_analysis(model, (x,))
    assert cc.total == 200 == analysis.total()
    assert {(s.op, s.calls) for s in cc.skipped if s.kind != "bias_add"} == {("sigmoid", 1)}
    assert dict(analysis.unsupported_ops()) == {"aten::sigmoid": 1}


def test_fvcore_flop_counter_class_by_module():
    """``test_flop_counter_class``: ThreeNet by module, conv 4000, linear1 60, linear2 12, pool 4000 // 2."""
    model, x = ThreeNet(2, 5, 3), T(4, 2, 10, 10)
    cc = preset(model, (x,), "fvcore")
    by_module: dict[str, int] = {}
    for r in cc.records:
        module = r.layer.split(":")[0]
        by_module[module] = by_module.get(module, 0) + r.amount
    expected = {"conv": 4000, "linear1": 60, "linear2": 12, "pool": 2000}
    assert by_module == expected
    live = fvcore_analysis(model, (x,)).by_module()
    assert {k: live[k] for k in expected} == expected and live[""] == sum(expected.values()) == cc.total
