"""Per-layer timing (hooks, own time = total - children) and its join to the analytic records."""

from __future__ import annotations

import math

import pytest
import torch
from bench_fakes import FakeClock, FakeMeasure
from torch import nn

from mbcost.bench.devices import Device, resolve_device
from mbcost.bench.errors import BenchError
from mbcost.bench.layers import UNATTRIBUTED, ModuleTimes, join_layers, profile_model, time_modules
from mbcost.bench.model_bench import BenchSettings
from mbcost.bench.records import RunConfig, capture_env
from mbcost.bench.roofline import Peaks
from mbcost.bench.timer import Budget
from mbcost.cost.analyze import analyze
from mbcost.cost.result import CATEGORIES
from mbcost.zoo.spec import resolve_source

CPU = Device("cpu", None, "Test CPU")
TINY = Budget(min_run_time=0.001, max_run_time=0.01, min_runs=3, warmup=1)


class Tick(nn.Module):
    """Advances the fake clock by a fixed amount: a layer whose time is known exactly."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def forward(self, x):
        self.clock.now += self.seconds
        return x


def test_own_time_is_total_minus_children_with_a_fake_clock():
    clock = FakeClock()
    model = nn.Sequential(Tick(clock, 0.001), nn.Sequential(Tick(clock, 0.002), Tick(clock, 0.003)))
    times = time_modules(model, torch.zeros(1), budget=TINY, clock=clock)
    own = times.own_times()
    assert times.passes == 3
    assert times.totals[""] == pytest.approx((0.006,) * 3)
    assert times.totals["1"] == pytest.approx((0.005,) * 3)
    assert own["0"] == pytest.approx((0.001,) * 3)
    assert own["1.0"] == pytest.approx((0.002,) * 3)
    assert own["1.1"] == pytest.approx((0.003,) * 3)
    assert own["1"] == pytest.approx((0.0,) * 3)  # the container did nothing itself
    assert times.children[""] == ("0", "1")


class TickList(nn.Module):
    """Its timed layers sit in a ModuleList (never called itself) and one is shared with a second
    parent: the declared tree (root -> blocks -> ticks) is not the call nesting."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.blocks = nn.ModuleList([Tick(clock, 0.001), Tick(clock, 0.002), Tick(clock, 0.003)])
        self.tail = nn.Sequential(Tick(clock, 0.004))

    def forward(self, x):
        self.clock.now += 0.0005  # the root's own work
        for block in self.blocks:
            x = block(x)
        x = self.tail(x)
        return self.blocks[0](x)  # called again, from the root: its time is nested in the root, not in the list


def test_own_times_subtract_the_nearest_called_modules_through_a_module_list():
    clock = FakeClock()
    times = time_modules(TickList(clock), torch.zeros(1), budget=TINY, clock=clock)
    own = times.own_times()
    # one pass: 0.5 ms of the root's own + ticks 1 + 2 + 3 + 4 + 1 ms (blocks.0 runs twice) = 11.5 ms
    assert times.totals[""] == pytest.approx((0.0115,) * 3)
    assert own[""] == pytest.approx((0.0005,) * 3)  # only what the root did itself
    assert own["blocks"] == (0.0,) * 3  # never called
    assert own["blocks.0"] == pytest.approx((0.002,) * 3)  # both of its calls
    assert own["tail"] == pytest.approx((0.0,) * 3)
    for i in range(3):  # the own times partition the instrumented pass: nothing counted twice
        assert sum(o[i] for o in own.values()) == pytest.approx(times.totals[""][i])


def test_profile_of_a_module_list_model_adds_up_to_the_instrumented_pass():
    """The issue's case: six convs in a ModuleList; own times summed were 1.9x the instrumented pass."""
    clock = FakeClock()

    class TickConv(nn.Conv2d):
        def forward(self, x):
            clock.now += 1e-3 * self.out_channels / 8  # 1 ms per 8 output channels
            return super().forward(x)

    class ListNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList([TickConv(3 if i == 0 else 8, 8, 3, padding=1) for i in range(6)])

        def forward(self, x):
            for conv in self.convs:
                x = conv(x)
            return x

    model = ListNet()
    cost = analyze(model, 16)
    times = time_modules(model, torch.zeros(1, 3, 16, 16), budget=TINY, clock=clock)
    profile = join_layers(cost, times, RunConfig("cpu", "Test CPU", "float32", 1, 2), capture_env(CPU, 2))
    assert profile.instrumented_ms == pytest.approx(6.0)  # six convs at 1 ms each, nothing else moves the clock
    assert [r.layer for r in profile.layers] == [f"convs.{i}" for i in range(6)]
    assert sum(r.median_ms for r in profile.layers) == pytest.approx(6.0)
    assert profile.unattributed_ms == pytest.approx(0.0)  # was 6 ms: the root's total, the list never called
    assert next(c.time_share for c in profile.categories if c.category == "conv") == pytest.approx(1.0)


def test_hooks_are_removed_afterwards():
    clock = FakeClock()
    model = nn.Sequential(Tick(clock, 0.001), Tick(clock, 0.001))
    time_modules(model, torch.zeros(1), budget=TINY, clock=clock)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_time_modules_stops_at_max_run_time():
    clock = FakeClock()
    model = nn.Sequential(Tick(clock, 1.0))  # one "second" a pass
    times = time_modules(model, torch.zeros(1), budget=Budget(min_run_time=100, max_run_time=100, min_runs=3),
                         clock=clock)
    assert times.passes == 100  # stopped by the time budget (100 s), not run forever


@pytest.fixture(scope="module")
def cost():
    return analyze("v2@0.35", 64)


def _synthetic_times(cost, per_macs_s: float = 1e-9, base_s: float = 1e-5) -> ModuleTimes:
    """Each module with records takes base + macs x per_macs; containers take 1 us of overhead."""
    from mbcost.zoo.spec import build_model

    modules = dict.fromkeys(lc.module for lc in cost.layers)
    real = build_model("v2@0.35", device="meta")
    names = tuple(n for n, _ in real.named_modules())
    children = {n: tuple(f"{n}.{c}" if n else c for c, _ in m.named_children()) for n, m in real.named_modules()}
    own = {}
    for n in names:
        macs = sum(lc.macs for lc in cost.layers if lc.module == n)
        own[n] = base_s + macs * per_macs_s if n in modules else 1e-6

    def total(n: str) -> float:
        return own[n] + sum(total(c) for c in children[n])

    # every module is called by its parent here, so the calls nested in a module are its children
    return ModuleTimes(names=names, children=children, totals={n: (total(n),) * 3 for n in names},
                       nested={n: (sum(total(c) for c in children[n]),) * 3 for n in names if children[n]})


def test_join_layers_shares_and_categories(cost):
    config = RunConfig("cpu", "Test CPU", "float32", 1, 2)
    profile = join_layers(cost, _synthetic_times(cost), config, capture_env(CPU, 2))
    layers = profile.layers
    assert [r.layer for r in layers][:3] == ["features.0.0", "features.0.1", "features.0.2"]
    assert {r.layer for r in layers} == {lc.name for lc in cost.layers}  # one record per module here
    assert sum(r.mac_share for r in layers) == pytest.approx(1.0)
    total_share = sum(r.time_share for r in layers) + next(c.time_share for c in profile.categories
                                                           if c.category == UNATTRIBUTED)
    assert total_share == pytest.approx(1.0)
    assert [c.category for c in profile.categories] == [*CATEGORIES, UNATTRIBUTED]
    by_cat = {c.category: c for c in profile.categories}
    assert by_cat["dwconv"].macs == cost.categories["dwconv"].macs
    assert by_cat["pwconv"].macs == cost.categories["pwconv"].macs
    dw = [lc for lc in cost.layers if lc.category == "dwconv"]
    assert by_cat["dwconv"].ops == sum(lc.flops + lc.elementwise_ops for lc in dw)
    assert by_cat["dwconv"].arithmetic_intensity == pytest.approx(
        by_cat["dwconv"].ops / sum(lc.bytes_moved for lc in dw))
    dw_cat = by_cat["dwconv"]
    assert dw_cat.achieved_gflops == pytest.approx(dw_cat.ops / (dw_cat.time_ms / 1e3) / 1e9)
    conv = layers[0]
    assert conv.median_ms == pytest.approx((1e-5 + conv.macs * 1e-9) * 1e3)
    assert conv.achieved_gflops == pytest.approx((conv.flops + conv.elementwise_ops) / (conv.median_ms / 1e3) / 1e9)
    assert profile.instrumented_ms == pytest.approx(sum(c.time_ms for c in profile.categories))
    residual = next(r for r in layers if r.layer.endswith(":add"))
    assert residual.category == "other" and residual.ops == ("add",)


def test_join_layers_places_layers_on_the_roofline(cost):
    peaks = Peaks(device="cpu", device_name="Test CPU", dtype="float32", threads=2, torch="x", peak_gflops=100.0,
                  peak_gbps=10.0, matmul_n=64, copy_bytes=1, matmul_ms=1.0, matmul_iqr_ms=0.0, matmul_runs=5,
                  copy_ms=1.0, copy_iqr_ms=0.0, copy_runs=5, measured_at="now")
    profile = join_layers(cost, _synthetic_times(cost), RunConfig("cpu", "Test CPU", "float32", 1, 2),
                          capture_env(CPU, 2), peaks=peaks)
    for r in profile.layers:
        assert r.roofline_bound_gflops == pytest.approx(min(100.0, r.arithmetic_intensity * 10.0))
        assert r.bound_fraction == pytest.approx(r.achieved_gflops / r.roofline_bound_gflops)
    dw = next(r for r in profile.layers if r.category == "dwconv")
    assert dw.arithmetic_intensity < peaks.ridge_point  # depthwise: memory-bound


def test_profile_model_end_to_end_on_a_tiny_model():
    settings = BenchSettings(resolve_device("cpu"), threads=1, budget=TINY).validated()
    p = profile_model(resolve_source("v2@0.35"), (64, 64), 1, settings, measure_fn=FakeMeasure(run_fn=False))
    assert p.end_to_end is not None and p.end_to_end.median_ms == pytest.approx(11.0)
    assert p.passes >= 3
    assert len(p.layers) == len({lc.module for lc in p.cost.layers})
    assert all(r.median_ms >= 0 and r.runs == p.passes for r in p.layers)
    assert math.isclose(sum(c.time_share for c in p.categories), 1.0, rel_tol=1e-9)


def test_profile_refuses_compile():
    settings = BenchSettings(resolve_device("cpu"), compile=True, budget=TINY).validated()
    with pytest.raises(BenchError, match="torch.compile"):
        profile_model(resolve_source("v2@0.35"), (64, 64), 1, settings)
