"""A user's own ``torch.library`` op, counted by a formula the user gives (``mbcost.register_op``,
``analyze(custom_ops=...)``), through the library, the conventions and the CLI.

The op is a real ``torch.library.custom_op`` with a fake (meta) kernel: fused attention
``softmax(q @ k^T * scale) @ v`` over ``(batch, heads, L, D)`` tensors. The model around it projects
``x (B, L, E)`` to q, k and v with one ``nn.Linear(E, 3E)`` and back with ``nn.Linear(E, E)``.
"""

from __future__ import annotations

from math import prod

import pytest
import torch
from bench_fakes import one_line_error, run
from torch import nn

import mbcost
from mbcost.cost.conventions import apply_convention
from mbcost.cost.custom import custom_adapter
from mbcost.errors import AnalysisError, SpecError

B, L, E, HEADS = 2, 16, 32, 4
D = E // HEADS


@torch.library.custom_op("mbcost_test::fused_attn", mutates_args=())
def fused_attn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1) @ v


@fused_attn.register_fake
def _(q, k, v, scale):  # noqa: ANN001, ANN202
    return torch.empty_like(q)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(E, 3 * E)
        self.proj = nn.Linear(E, E)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(B, L, 3, HEADS, D).permute(2, 0, 3, 1, 4)
        return self.proj(fused_attn(q, k, v, D ** -0.5).transpose(1, 2).reshape(B, L, E))


def attention_macs(q_shape, k_shape, v_shape, scale, *, out_shape):  # noqa: ANN001, ANN201
    """The user's formula: L x S x D for the scores, L x S x Dv for the weighted sum, per batch and head."""
    return prod(q_shape[:-1]) * k_shape[-2] * (q_shape[-1] + v_shape[-1])


def attention_cost(q_shape, k_shape, v_shape, scale, *, out_shape):  # noqa: ANN001, ANN201
    scores = prod(q_shape[:-1]) * k_shape[-2]
    return mbcost.OpCost(macs=attention_macs(q_shape, k_shape, v_shape, scale, out_shape=out_shape),
                         other_ops=3 * scores)  # softmax: 3 per score


NAME = "mbcost_test::fused_attn"
# The projections: qkv (B*L) x E x 3E = 32 x 32 x 96 = 98304, proj 32 x 32 x 32 = 32768.
LINEAR_MACS = 98_304 + 32_768
# The attention: B*HEADS*L*L*(D + D) = 2*4*16*16*16 = 32768; its softmax 3 x 2*4*16*16 = 6144 ops.
ATTENTION_MACS = 32_768
SOFTMAX_OPS = 6_144


ALL = (NAME, "mbcost_cli::scale_rows", "mbcost_bad::scale_rows")


@pytest.fixture(autouse=True)
def _no_registration_leaks():
    """Every test starts and ends with no formula for any of its ops."""
    assert all(custom_adapter(name) is None for name in ALL)
    yield
    for name in ALL:
        mbcost.unregister_op(name)
    assert all(custom_adapter(name) is None for name in ALL)


def test_a_custom_op_without_a_formula_is_listed_uncounted():
    cost = mbcost.analyze(Attention(), (B, L, E))
    assert cost.macs == LINEAR_MACS
    assert [(u.op, u.calls) for u in cost.uncounted] == [(NAME, 1)]


@pytest.mark.parametrize("key", [NAME, torch.ops.mbcost_test.fused_attn, torch.ops.mbcost_test.fused_attn.default,
                                 fused_attn], ids=["name", "packet", "overload", "custom_op"])
def test_custom_ops_counts_it_exactly_for_one_analysis(key):
    cost = mbcost.analyze(Attention(), (B, L, E), custom_ops={key: attention_macs})
    assert cost.macs == LINEAR_MACS + ATTENTION_MACS
    assert cost.uncounted == ()
    (layer,) = [r for r in cost.layers if r.op == NAME]
    assert (layer.kind, layer.macs, layer.input_shape, layer.output_shape) == ("custom", ATTENTION_MACS,
                                                                                (B, HEADS, L, D), (B, HEADS, L, D))
    # scoped: the next analysis does not see it
    assert [u.op for u in mbcost.analyze(Attention(), (B, L, E)).uncounted] == [NAME]


def test_register_op_counts_it_in_every_later_analysis_until_unregistered():
    mbcost.register_op(NAME, attention_cost)
    for execute in ("meta", "real"):  # the real CPU forward runs the op's own kernel: the same count
        cost = mbcost.analyze(Attention(), (B, L, E), execute=execute)
        assert (cost.macs, cost.other_ops - _other_ops_without_attention(cost)) == (
            LINEAR_MACS + ATTENTION_MACS, SOFTMAX_OPS), execute
    mbcost.unregister_op(torch.ops.mbcost_test.fused_attn)
    assert mbcost.analyze(Attention(), (B, L, E)).macs == LINEAR_MACS


def _other_ops_without_attention(cost):  # noqa: ANN001, ANN202
    return sum(r.other_ops for r in cost.layers if r.op != NAME)


def test_custom_ops_take_precedence_over_a_registration_and_train_mode_counts_it_too():
    mbcost.register_op(NAME, lambda *a, out_shape: 1)
    cost = mbcost.analyze(Attention(), (B, L, E), custom_ops={NAME: attention_macs}, mode="train")
    assert cost.forward_macs == LINEAR_MACS + ATTENTION_MACS


@pytest.mark.parametrize(("formula", "says"), [
    (lambda *a, out_shape: 1 / 0, f"the cost formula of {NAME} raised ZeroDivisionError: division by zero"),
    (lambda *a, out_shape: "many", f"the cost formula of {NAME} returned 'many' (str); it must return its MACs"),
    (lambda *a, out_shape: 2.5, f"the cost formula of {NAME} returned 2.5 (float)"),
    (lambda *a, out_shape: -1, f"the cost formula of {NAME} returned -1: counts must be ints >= 0"),
    (lambda q, k, v, out_shape: 1, f"the cost formula of {NAME} raised TypeError"),  # misses the scale argument
], ids=["raises", "str", "float", "negative", "signature"])
def test_a_bad_formula_is_a_one_line_error_naming_the_op(formula, says):
    with pytest.raises(AnalysisError, match="the cost formula") as info:
        mbcost.analyze(Attention(), (B, L, E), custom_ops={NAME: formula}, execute="meta")
    assert says in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "says"), [
    ("fused_attn", "give its qualified name"), ("aten::relu", "ATen ops are counted by mbcost's op table"),
    (42, "give its qualified name"),
])
def test_a_bad_name_is_refused(name, says):
    with pytest.raises(SpecError, match=says):
        mbcost.register_op(name, attention_macs)
    with pytest.raises(SpecError, match=says):
        mbcost.analyze(Attention(), (B, L, E), custom_ops={name: attention_macs})


def test_a_formula_that_is_not_callable_is_refused():
    with pytest.raises(SpecError, match="its formula must be callable, got int"):
        mbcost.register_op(NAME, 3)


def test_the_other_counters_report_the_custom_op_as_not_counted_with_what_it_costs():
    cost = mbcost.analyze(Attention(), (B, L, E), custom_ops={NAME: attention_cost})
    assert apply_convention(cost, "paper").total == cost.macs  # the papers' Mult-Adds: its MACs count
    for convention in ("fvcore", "thop", "torch", "ptflops", "ptflops-aten"):
        counted = apply_convention(cost, convention)
        (record,) = [r for r in counted.records if r.op == NAME]
        assert not record.counted and NAME in record.reason, (convention, record.reason)
        (skipped,) = [s for s in counted.skipped if s.op == NAME]
        per_mac = counted.unit.per_mac
        assert (skipped.calls, skipped.would_be) == (1, per_mac * ATTENTION_MACS + SOFTMAX_OPS), convention
    # FlopCounterMode itself, run on the CPU: the linears' FLOPs, nothing for the custom op
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        Attention()(torch.randn(B, L, E))
    assert counter.get_total_flops() == apply_convention(cost, "torch").total == 2 * LINEAR_MACS


FACTORY = '''
import torch
from math import prod
from torch import nn

import mbcost

@torch.library.custom_op("mbcost_cli::scale_rows", mutates_args=())
def scale_rows(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * w

@scale_rows.register_fake
def _(x, w):
    return torch.empty_like(x)

# one MAC per output element, as a dense diagonal scaling would be counted
mbcost.register_op("mbcost_cli::scale_rows", lambda x_shape, w_shape, out_shape: prod(out_shape))

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.w = nn.Parameter(torch.ones(8))

    def forward(self, x):
        return scale_rows(self.fc(x), self.w)

def factory():
    return Net()
'''


def test_every_command_honours_a_registration_made_by_the_factory_module(tmp_path, monkeypatch):
    (tmp_path / "user_ops.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    # fc: 4 x 8 x 8 = 256 MACs; scale_rows: 4 x 8 = 32 (the formula's one per output element): 288
    spec = ["user_ops:factory", "--input", "[4,8]"]
    layers = run("layers", *spec, "--format", "json")
    assert layers.exit_code == 0, layers.output
    assert '"macs": 288' in layers.output and "mbcost_cli::scale_rows" in layers.output
    compared = run("compare", "--models", spec[0], *spec[1:], "--no-bench", "--format", "csv")
    assert compared.exit_code == 0 and ",288," in compared.output, compared.output
    reconciled = run("reconcile", *spec, "--counters", "torch", "--format", "json")
    assert reconciled.exit_code == 0, reconciled.output
    assert "mbcost_cli::scale_rows" in reconciled.output  # reported as not counted by FlopCounterMode
    gate = run("gate", "--models", spec[0], *spec[1:], "--update", "--baseline", str(tmp_path / "b.json"))
    assert gate.exit_code == 0, gate.output
    assert '"macs": 288' in (tmp_path / "b.json").read_text()


def test_a_bad_formula_from_the_factory_module_is_one_line_on_the_command_line(tmp_path, monkeypatch):
    (tmp_path / "bad_ops.py").write_text(FACTORY.replace("mbcost_cli", "mbcost_bad").replace(
        "lambda x_shape, w_shape, out_shape: prod(out_shape)", "lambda x_shape, w_shape, out_shape: None"))
    monkeypatch.syspath_prepend(str(tmp_path))
    line = one_line_error(run("layers", "bad_ops:factory", "--input", "[4,8]", "--execute", "meta"))
    assert "the cost formula of mbcost_bad::scale_rows returned None (NoneType)" in line
