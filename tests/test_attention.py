"""``F.scaled_dot_product_attention`` (SDPA), the default attention of timm and transformers: every preset
counts it as its library does on the CPU, where the counters run, whichever path the engine traced (the
meta device's math path or a real CPU run's fused kernel); reconcile names it; the exit status says when
a remainder stays unexplained."""

from __future__ import annotations

import json

import attention_models as am
import pytest

import mbcost
from mbcost.cost.conventions import apply_convention
from mbcost.cost.conventions.attention import CPU_SDPA, SDPA, flop_counter_counts_cpu_sdpa
from mbcost.counters.base import COUNTERS, measure_many
from mbcost.counters.reconciliation import UNEXPLAINED, reconcile_model

fvcore = pytest.importorskip("fvcore")
thop = pytest.importorskip("thop")
ptflops = pytest.importorskip("ptflops")

X = [1, 10, 32]  # one sequence of 10 tokens of 32 features; 4 heads of 8
LINEARS = 10 * 32 * 96 + 10 * 32 * 32  # qkv and proj MACs
PRODUCTS = 2 * 4 * 10 * 10 * 8  # scores and weighted sum: 4 heads x 10 x 10, 8 deep each

VARIANTS = {
    "sdpa": am.SelfAttention(),
    "causal": am.SelfAttention(causal=True),
    "dropout": am.SelfAttention(dropout=0.5),  # the CPU runs SDPA with dropout as its math path: bmm, bmm
    "manual": am.SelfAttention(manual=True),  # q @ k^T, softmax, @ v: products every counter sees
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_preset_equals_its_library_on_either_path(variant):
    """The meta walk (SDPA's math path) and a real CPU walk (its fused kernel) give each preset the total its
    library gives on the CPU."""
    model = VARIANTS[variant].eval()
    meta = mbcost.analyze(model, X)
    real = mbcost.analyze(model, X, execute="real")
    assert meta.execution == "meta" and real.execution == "real"
    assert (CPU_SDPA in {r.op for r in real.layers}) == (variant in ("sdpa", "causal"))
    live = {r.counter: r.total for r in measure_many(COUNTERS, model, X)}
    for counter in COUNTERS:
        assert apply_convention(meta, counter).total == apply_convention(real, counter).total == live[counter], (
            counter)
    # FlopCounterMode on the CPU, by hand: the linear layers, and SDPA's products where it runs them as bmm (or
    # where this torch has a formula for the CPU kernel)
    counted = variant in ("dropout", "manual") or flop_counter_counts_cpu_sdpa()
    assert live["torch"] == 2 * (LINEARS + (PRODUCTS if counted else 0))
    assert apply_convention(meta, "paper").total == apply_convention(real, "paper").total == LINEARS + PRODUCTS


@pytest.mark.parametrize(("rank", "wide_v"), [(2, False), (3, False), (4, False), (4, True)])
def test_each_preset_follows_the_cpus_choice_of_sdpa_path(rank, wide_v):
    """The CPU runs SDPA as its fused kernel for a mask of 2 dims or of q's, and as its math path (bmm, bmm:
    FlopCounterMode and ptflops' aten backend count them) for another (timm's TinyViT: a 3-D bias for 4-D q)
    or for v of another head size than q's."""
    model = am.BiasedAttention(rank, wide_v).eval()
    meta = mbcost.analyze(model, X)
    real = mbcost.analyze(model, X, execute="real")
    assert (CPU_SDPA in {r.op for r in real.layers}) == (rank != 3 and not wide_v)
    for r in measure_many(COUNTERS, model, X):
        assert apply_convention(meta, r.counter).total == apply_convention(real, r.counter).total == r.total, (
            r.counter)


def test_torch_preset_follows_a_flop_counter_mode_that_counts_the_cpu_kernel(monkeypatch):
    """pytorch/pytorch#195801 registers the CPU kernel with FlopCounterMode's SDPA formula: with it (put in the
    registry here), FlopCounterMode counts the products and so does the preset, on both paths."""
    import torch
    from torch.utils import flop_counter

    cpu_kernel = getattr(torch.ops.aten, CPU_SDPA)
    monkeypatch.setitem(flop_counter.flop_registry, cpu_kernel,
                        flop_counter.flop_registry[torch.ops.aten._scaled_dot_product_flash_attention])
    flop_counter_counts_cpu_sdpa.cache_clear()
    try:
        assert flop_counter_counts_cpu_sdpa()
        model = VARIANTS["sdpa"].eval()
        live = measure_many(["torch"], model, X)[0].total
        assert live == 2 * (LINEARS + PRODUCTS)
        for execute in ("meta", "real"):
            assert apply_convention(mbcost.analyze(model, X, execute=execute), "torch").total == live
    finally:
        flop_counter_counts_cpu_sdpa.cache_clear()


def test_reconcile_vit_names_sdpa(cli):
    """The issue's case: timm's ViT-Tiny against FlopCounterMode, every unit explained, SDPA named."""
    r = cli("reconcile", "timm.models:vit_tiny_patch16_224", "--counters", "torch", "--format", "json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)["counters"]["torch"]
    assert rec["exact"] and rec["unexplained"] == 0
    components = {c["kind"]: c for c in rec["components"]}
    # 12 blocks x 3 heads x 197 x 197 scores x 64 deep, scores and weighted sum: the paper MACs FlopCounterMode
    # leaves out (its total lacks them twice over, in FLOPs; the issue's -357,663,744 unexplained)
    products = 12 * 3 * 197 * 197 * 64 * 2
    assert products == 178_831_872
    sdpa = components[SDPA]
    if not flop_counter_counts_cpu_sdpa():
        assert sdpa["amount"] == -products and sdpa["calls"] == 24
        assert "pytorch/pytorch#195460" in sdpa["reason"] and CPU_SDPA in sdpa["reason"]
    assert UNEXPLAINED not in components


def test_reconcile_bert_names_sdpa():
    """transformers' BERT (SDPA attention): fvcore and FlopCounterMode leave out its products, named."""
    cost, recs = reconcile_model(am.bert_small(), "1x16:int64", counters=["torch", "fvcore"])
    products = am.BERT_LAYERS * am.BERT_HEADS * 16 * 16 * am.BERT_HEAD_DIM * 2  # 65,536
    for rec in recs:
        assert rec.exact, (rec.counter, rec.components)
        by = {c.kind: c for c in rec.components}
        assert UNEXPLAINED not in by
        if rec.counter == "fvcore" or not flop_counter_counts_cpu_sdpa():
            assert by[SDPA].amount == -products


def test_reconcile_exits_1_when_a_remainder_stays_unexplained(cli, monkeypatch):
    """A preset that believes FlopCounterMode counts the CPU kernel, against a torch that does not (or the
    other way round): a real remainder, listed loudly, and exit status 1; the output is still written."""
    from mbcost.cost.conventions import attention

    real = flop_counter_counts_cpu_sdpa()
    monkeypatch.setattr(attention, "flop_counter_counts_cpu_sdpa", lambda: not real)
    monkeypatch.setattr("mbcost.cost.conventions.torch.flop_counter_counts_cpu_sdpa", lambda: not real)
    r = cli("reconcile", "attention_models:sdpa", "--input", "[1,10,32]", "--counters", "torch", "--format", "json")
    assert r.exit_code == 1
    rec = json.loads(r.stdout)["counters"]["torch"]
    assert not rec["exact"] and abs(rec["unexplained"]) == 2 * PRODUCTS
    r = cli("reconcile", "attention_models:sdpa", "--input", "[1,10,32]", "--counters", "torch")
    assert r.exit_code == 1 and "!! unexplained" in r.stdout and "mbcost: error" not in r.output
