"""``mbcost bench --mode train``: one training step timed (forward, backward, optimizer step).

The timer is replaced by fakes (``FakeMeasure(run_fn=True)`` runs the step once for real, so the
whole path runs on a tiny network); no test asserts a latency.
"""

from __future__ import annotations

import json

import pytest
import torch
from bench_fakes import FakeMeasure, one_line_error, run

from mbcost.bench import devices
from mbcost.bench.devices import MEMORY_HEADROOM, estimate_memory, resolve_device
from mbcost.bench.model_bench import (
    BenchSettings,
    TrainStep,
    bench_models,
    make_optimizer,
    output_loss,
    plan_models,
    speedups,
)
from mbcost.bench.records import ModelRecord, RunConfig
from mbcost.bench.timer import Measurement
from mbcost.cost.analyze import analyze
from mbcost.zoo.spec import resolve_sources

SMALL = ["--models", "v2@0.35", "--input", "64", "--threads", "1"]
TRAIN = ["--mode", "train", "--optimizer", "adam"]




@pytest.fixture
def fake(monkeypatch):
    f = FakeMeasure(run_fn=True)  # the step runs once for real
    return f


@pytest.fixture(scope="module")
def settings():
    return BenchSettings(resolve_device("cpu"), threads=1).validated()


# -- the record ------------------------------------------------------------------------------------


def test_train_record_has_the_mode_the_optimizer_and_step_gflops(fake):
    result = run("bench", *SMALL, *TRAIN, "--format", "json", measure=fake)
    assert result.exit_code == 0, result.output
    assert fake.calls == 1
    rec = json.loads(result.stdout)["results"][0]
    cost = analyze("v2@0.35", 64, 1, mode="train", optimizer="adam")
    assert rec["mode"] == "train" and rec["optimizer"] == "adam"
    assert rec["macs"] == cost.macs and rec["backward_macs"] == cost.backward_macs > cost.macs
    # the fake's times 10, 11, 12, 13, 10 ms: median 11 ms; the step's work is forward + backward MACs
    assert rec["median_ms"] == pytest.approx(11.0)
    assert rec["achieved_gflops"] == pytest.approx(2 * (cost.macs + cost.backward_macs) / 0.011 / 1e9)
    # compared with a measured step: its activations and the gradients alive with them (freed before the
    # measured step, made during its backward)
    assert cost.train_peak_grad_bytes <= cost.trainable_params * 4
    assert rec["estimated_peak_memory_bytes"] == cost.train_peak_activation_bytes + cost.train_peak_grad_bytes
    # one more step measured: at least the gradients (one per trainable weight) and the estimate's tensors
    assert rec["peak_memory_bytes"] >= cost.trainable_params * 4
    assert "train_gflops" in json.loads(result.stdout)["conventions"]


def test_the_table_shows_the_mode_and_the_training_convention(fake):
    result = run("bench", *SMALL, *TRAIN, "--format", "markdown", measure=fake)
    assert result.exit_code == 0, result.output
    assert "| mode |" in result.stdout and "train (adam)" in result.stdout
    assert "2 x (forward + backward MACs" in result.stdout
    assert "inference_mode" not in result.stdout  # no inference record, no inference timing note


def test_inference_is_the_default_and_old_records_are_inference(fake):
    rec = json.loads(run("bench", *SMALL, "--format", "json", measure=fake).stdout)["results"][0]
    assert rec["mode"] == "inference" and rec["optimizer"] is None and rec["backward_macs"] == 0
    old = {k: v for k, v in rec.items() if k not in ("kind", "mode", "optimizer", "backward_macs")}
    assert ModelRecord(**old).mode == "inference"  # a record saved before modes existed


def test_speedups_compare_records_of_the_same_mode_only(settings):
    specs = resolve_sources("v2@0.35,v1@0.25")
    plans = (plan_models(specs, 64, [1], settings)
             + plan_models(specs, 64, [1], settings, mode="train", optimizer="sgd"))
    records = bench_models(plans, settings, measure_fn=FakeMeasure(run_fn=False))
    assert [r.mode for r in records] == ["inference", "inference", "train", "train"]
    ups = speedups(records)
    assert len(ups) == 4  # v2 vs v1 and v1 vs v2, once per mode; never a forward against a step
    assert sorted(s.config.mode for s in ups) == ["inference", "inference", "train", "train"]
    train = next(s for s in ups if s.config.mode == "train" and s.model == "v2@0.35")
    v2, v1 = records[2], records[3]
    assert train.macs_ratio == pytest.approx((v1.macs + v1.backward_macs) / (v2.macs + v2.backward_macs))
    assert RunConfig("cpu", "x", "float32", 1, 1).key != RunConfig("cpu", "x", "float32", 1, 1, mode="train").key


# -- refusals: one line, exit 2 --------------------------------------------------------------------


def test_a_step_that_does_not_fit_is_refused_by_the_training_estimate(monkeypatch, fake):
    cost = analyze("v2@0.35", 64, 1, mode="train", optimizer="adam")
    forward, step = estimate_memory(analyze("v2@0.35", 64, 1)).total, estimate_memory(cost).total
    assert step > forward
    # enough memory for an inference forward, not for a training step
    monkeypatch.setattr(devices, "available_memory", lambda device: int((forward + step) / 2 / MEMORY_HEADROOM))
    assert run("bench", *SMALL, "--format", "json", measure=fake).exit_code == 0
    calls = fake.calls
    line = one_line_error(run("bench", *SMALL, *TRAIN, measure=fake))
    assert "v2@0.35 at batch 1 for a training step with adam needs about" in line
    assert "gradients + optimizer state" in line
    assert fake.calls == calls  # refused while planning: nothing built or timed


def test_a_tiny_machine_refuses_a_training_step(monkeypatch, fake):
    monkeypatch.setattr(devices, "available_memory", lambda device: 1000)
    assert "for a training step with adam" in one_line_error(run("bench", *SMALL, *TRAIN, measure=fake))
    assert fake.calls == 0


def test_an_unknown_optimizer_is_one_line_exit_2(fake):
    assert "lion" in one_line_error(run("bench", *SMALL, "--mode", "train", "--optimizer", "lion", measure=fake))
    assert fake.calls == 0


# -- the step --------------------------------------------------------------------------------------


class TwoSteps:
    """A measuring function that runs the training step twice and looks at the model between steps."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}

    def __call__(self, fn, budget=None, **_kw) -> Measurement:
        assert isinstance(fn, TrainStep)
        model = fn.model
        before = [p.detach().clone() for p in model.parameters()]
        bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        mean_before = bn.running_mean.clone()
        fn()
        fn()
        changed = [not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True)]
        self.seen = dict(grad=torch.is_grad_enabled(), inference=torch.is_inference_mode_enabled(),
                         training=model.training and bn.training, changed=sum(changed), params=len(changed),
                         grads=all(p.grad is not None for p in model.parameters()),
                         state=len(fn.optimizer.state), bn_updated=not torch.equal(mean_before, bn.running_mean))
        return Measurement(times=(0.01,) * 5, number_per_run=1)


def test_the_step_updates_the_parameters_of_the_model_the_bench_built(settings):
    plans = plan_models(resolve_sources("v2@0.35"), 64, [1], settings, mode="train", optimizer="adam")
    fake = TwoSteps()
    (rec,) = bench_models(plans, settings, measure_fn=fake)
    s = fake.seen
    assert s["grad"] and not s["inference"]  # grad enabled, not under inference_mode
    assert s["training"] and s["bn_updated"]  # train mode: BatchNorm uses and updates batch statistics
    assert s["grads"] and s["state"] == s["params"]  # every parameter got a gradient and Adam state
    assert s["changed"] >= 0.9 * s["params"]  # Adam moves every parameter whose gradient is not exactly 0
    assert rec.mode == "train" and rec.optimizer == "adam"


@pytest.mark.parametrize(("name", "kind", "momentum", "decay"), [
    ("sgd", torch.optim.SGD, 0, 0), ("momentum", torch.optim.SGD, 0.9, 0),
    ("adam", torch.optim.Adam, None, 0), ("adamw", torch.optim.AdamW, None, 0.01)])
def test_each_optimizer_is_the_torch_one(name, kind, momentum, decay):
    opt = make_optimizer(torch.nn.Linear(2, 2), name)
    assert type(opt) is kind
    group = opt.param_groups[0]
    assert group["weight_decay"] == decay
    if momentum is not None:
        assert group["momentum"] == momentum


def test_the_loss_sums_every_differentiable_output():
    w = torch.ones(3, requires_grad=True)
    out = {"a": w * 2, "b": (w.sum(), torch.tensor([1, 2]))}  # integer outputs carry no gradient
    assert output_loss(out).item() == 9.0  # 2 + 2 + 2 + 3
    assert output_loss(w.half()).dtype == torch.float32
