"""Benchmark: mbcost's engine against seven peer counters on torchvision and timm models, and its time per op.

Part 1, per model (mobilenet_v2, mobilenet_v3_large, resnet50, efficientnet_b0, convnext_tiny,
vit_b_16, densenet121 from torchvision, and a timm set built from custom blocks: convnext_atto,
efficientnet_b0, ghostnet_100, deit_tiny_patch16_224, regnety_002, mobilevit_xxs, resnet18d), times one
full count by each contender, best of N rounds (``--repeat``, default 5); each round times every
contender once in turn, so that a slow spell of a shared machine falls on all of them (the ratio is
one of lower envelopes), and each call is timed alone by ``torch.utils.benchmark.Timer.timeit(1)``:
timeit's rules, Python's cyclic collector off during the call, for every contender alike (the Timer
first runs the call twice as its warm-up, so every contender is warm, mbcost's tables included).
``--collect`` adds a full garbage collection before each call (the protocol of this script's
earlier runs), which leaves the CPU caches cold for the call and weighs most on the shortest:

  1. mbcost warm   ``mbcost.analyze(module, 224)`` after three untimed calls before each timing: a repeat
                   analysis, which finds the model's block programs (recorded on a block's third
                   meeting), op answers and priced records in the engine's process-wide tables (keyed
                   by structure, kept across calls);
  1b. mbcost first the same with those tables emptied right before each call (inside the timing), and
                   what the engine counts of the blocks it met (``programs.forget``):
                   the first analysis of this architecture in a process that has run the engine
                   before (imports and torch warm). Its ratio is the like-for-like one: no peer
                   keeps anything about a model between calls;
  2. mbcost cold   the first ``mbcost.analyze(module, 224)`` in a fresh Python process that has
                   already imported torch, torchvision and mbcost and built the model (untimed);
                   the call includes mbcost's lazy import of its engine (shown apart); best of
                   N processes, byte-compiled as an installed package is;
  3. fvcore        ``FlopCountAnalysis(model, x).total()``;
  4. thop          ``thop.profile(model, inputs=(x,), verbose=False)`` as users call it, on the model
                   itself (thop takes off what it added when it returns);
  5. ptflops       ``get_model_complexity_info(model, (3, 224, 224), as_strings=False, ...)``: its
                   default (pytorch) backend, on the model itself;
  6. ptflops-aten  the same with ``backend="aten"``, on a fresh deep copy per run (the aten backend
                   leaves hooks on the model's children), copied outside the timing;
  7. calflops      ``calculate_flops(model, input_shape=(1, 3, 224, 224), output_as_string=False, ...)``,
                   its MACs;
  8. torch         ``FlopCounterMode(display=False)`` around a real CPU forward under no_grad;
  9. torch-meta    the same on a meta-device copy of the model and a meta input (copied once,
                   outside the timing);
  10. thop+copy, ptflops+copy, torch-meta+copy: thop, ptflops-aten and torch-meta with a deep copy
                   inside the timed region: what counting costs a caller who must keep the model as it
                   was (ptflops' aten backend leaves hooks behind, the meta count needs a meta copy).
                   mbcost changes nothing, so its time is end to end.

Every model is built once (CPU, eval mode, random weights, float32, input 1x3x224x224) before
any timing; every peer gets one untimed warm-up call per model too, so its figure is its best
in-process time (a conservative comparison for mbcost). All runs share one torch thread count.
The table shows each contender's best ms and total (in the tool's own unit, with the total
brought to MACs so the counts can be compared), the fastest peer (3-9), and fastest peer /
mbcost warm and fastest peer / mbcost cold (> 1: mbcost is faster); then the same against the
fastest peer that leaves the model unchanged (fvcore, torch, and the three "+copy" rows). A peer that is not
installed prints "n/a (not installed)"; one that fails on a model prints why, and the run goes on.

The floor row (not a contender): a dispatch mode that only answers each op's output shape with
mbcost's own shortcuts, under two empty global module hooks, on a meta copy of the model: what any
tracer that sees every op at the ATen dispatch level and attributes ops to modules pays before it
records anything. mbcost can run under it: the layers and blocks it replays (``mbcost/cost/programs.py``)
skip torch's dispatcher and the mode altogether.

Part 2 times ``mbcost.analyze`` warm on synthetic chains of Conv2d 3x3 + BatchNorm2d + ReLU
blocks on a 1x8x16x16 input, sized to 125, 250, 500 and 1000 ops (ops = ``len(cost.layers)``),
and prints ms and microseconds per op (best of ``--ops-repeat``): a flat us/op column means the
engine is linear in ops.

Reading the counts: torch on the CPU under no_grad takes PyTorch's fused transformer fast path
on vit_b_16, whose attention FlopCounterMode does not count (about a third less than the meta
run, which decomposes it). Timings are wall clock: run on an otherwise idle machine.

The summary gives, per set (torchvision, timm), the lowest ratio fastest peer / mbcost warm, and the
load average: on a shared machine the ratios move with the load, the interleaving keeps them fair.

Run: python benchmarks/bench_engine.py [--models resnet50,timm:ghostnet_100] [--repeat 5] [--threads 1]
                                       [--ops 125,250,500,1000] [--ops-repeat 5] [--quick] [--collect]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib
import io
import logging
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("mobilenet_v2", "mobilenet_v3_large", "resnet50", "efficientnet_b0", "convnext_tiny", "vit_b_16",
          "densenet121")
#: timm models built from custom blocks (timm's own modules and functional calls, replayed as blocks, not as
#: torch.nn layers), one per family: ConvNeXt, EfficientNet, GhostNet, DeiT, RegNetY, MobileViT, ResNet-D.
TIMM_MODELS = tuple(f"timm:{name}" for name in (
    "convnext_atto", "efficientnet_b0", "ghostnet_100", "deit_tiny_patch16_224", "regnety_002", "mobilevit_xxs",
    "resnet18d"))
OPS = (125, 250, 500, 1000)
SIZE = 224
NOT_INSTALLED = "n/a (not installed)"

#: The cold run: a fresh interpreter imports and builds everything untimed, then times its first call.
#: argv: model name, torch threads. Prints "COLD <first call ms> <lazy engine import ms> <macs>".
COLD_CODE = """
import sys, time
import torch, torchvision
import mbcost
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
if sys.argv[1].startswith("timm:"):
    import timm
    model = timm.create_model(sys.argv[1][5:], pretrained=False).eval()
else:
    model = getattr(torchvision.models, sys.argv[1])(weights=None).eval()
start = time.perf_counter()
analyze = mbcost.analyze
resolved = time.perf_counter()
cost = analyze(model, 224)
done = time.perf_counter()
print("COLD", (done - start) * 1e3, (resolved - start) * 1e3, cost.macs)
"""


@dataclass
class Outcome:
    """One contender on one model: best ms and its total, or why there is none."""

    ms: float | None = None
    total: int | float | None = None
    macs: float | None = None  # the total brought to MACs, to compare tools
    error: str | None = None
    note: str = ""


@contextlib.contextmanager
def silenced() -> Iterator[io.StringIO]:
    """Swallow prints, warnings and logging of a peer library; yield what it printed."""
    captured = io.StringIO()
    level = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            warnings.simplefilter("ignore")
            yield captured
    finally:
        logging.disable(level)


#: ``--collect``: a full collection before each timed call (the protocol of earlier runs of this script).
COLLECT = False


@dataclass
class Timed:
    """One contender's call, ready to time: ``count(prepare())``, with ``prepare`` (a fresh copy of
    the model...) and ``finish`` (removing what ``prepare`` registered) outside the timing."""

    count: Callable[[Any], Any]
    prepare: Callable[[], Any] | None = None
    finish: Callable[[], None] | None = None
    #: called inside the timed statement, just before ``count`` (``Timer.timeit`` runs the statement twice
    #: as its own warm-up before the timed run, so a reset done by ``prepare`` would be undone by then)
    reset: Callable[[], None] | None = None

    def once(self) -> tuple[float, Any]:
        """One call timed alone by ``torch.utils.benchmark.Timer.timeit(1)`` (timeit's rules: Python's
        cyclic collector is off during the call, as for every contender): (ms, its result). With
        ``--collect`` a full collection runs first: the call then starts with cold CPU caches, which
        weighs most on the shortest calls."""
        import torch
        from torch.utils.benchmark import Timer

        box: dict[str, Any] = {}
        state = self.prepare() if self.prepare is not None else None
        try:
            reset = self.reset or (lambda: None)
            timer = Timer("reset(); box['result'] = count(state)", num_threads=torch.get_num_threads(),
                          globals={"count": self.count, "state": state, "box": box, "reset": reset})
            if COLLECT:
                gc.collect()
            seconds = timer.timeit(1).times[0]
        finally:
            if self.finish is not None:
                self.finish()
        return seconds * 1e3, box.get("result")


def best_of(repeat: int, count: Callable[[Any], Any], prepare: Callable[[], Any] | None = None) -> tuple[float, Any]:
    """Best ms of ``repeat`` calls of one contender in a row (part 2), and the last result."""
    timed, best, result = Timed(count, prepare), float("inf"), None
    for _ in range(repeat):
        ms, result = timed.once()
        best = min(best, ms)
    return best, result


def interleaved(contenders: dict[str, Timed], repeat: int) -> dict[str, tuple[float, Any] | BaseException]:
    """Each contender's best ms (and result) over ``repeat`` rounds, every round timing each contender
    once in turn, so that a slow spell of the machine falls on all of them; a contender that raises
    drops out with its exception."""
    best: dict[str, tuple[float, Any] | BaseException] = {}
    for _ in range(repeat):
        for name, timed in contenders.items():
            if isinstance(best.get(name), BaseException):
                continue
            try:
                ms, result = timed.once()
            except Exception as exc:  # a peer failing on a model is a result, not a crash
                best[name] = exc
                continue
            if name not in best or ms < best[name][0]:
                best[name] = (ms, result)
    return best


# --- the peers: (name, module to import, unit of the total, factor to MACs, runner) ---------------------------


def run_fvcore(model, x, _meta):
    from fvcore.nn import FlopCountAnalysis

    def count(_):
        with silenced():
            return FlopCountAnalysis(model, x).total()

    count(None)
    return Timed(count)


def copied(count: Callable[[Any], Any], model: Any, to_meta: bool = False) -> Callable[[Any], Any]:
    """``count`` on a deep copy made inside the timed region: the cost of counting without changing
    the caller's model, for a peer that changes what it counts (or needs a meta-device copy)."""

    def run(_):
        clone = copy.deepcopy(model)
        return count(clone.to("meta") if to_meta else clone)

    return run


def on_copies(count: Callable[[Any], Any], model: Any, with_copy: bool) -> Timed:
    """A peer that changes the module it counts, on fresh deep copies: made outside the timing, or
    (``with_copy``) inside it, as a caller who keeps their model must."""

    def prepare():
        return copy.deepcopy(model)

    count(prepare())
    if with_copy:
        return Timed(copied(count, model))
    return Timed(count, prepare)


def _thop(x):
    import thop

    def count(module):
        with silenced():
            return thop.profile(module, inputs=(x,), verbose=False)[0]

    return count


def run_thop(model, x, _meta):
    """``thop.profile(model, inputs=(x,))`` as users call it, on their own model (thop removes what it
    added when it returns)."""
    count = _thop(x)
    count(model)
    return Timed(lambda _: count(model))


def _ptflops(x, backend):
    from ptflops import get_model_complexity_info

    extra = {} if backend is None else {"backend": backend}

    def count(module):
        with silenced() as out:
            macs, _params = get_model_complexity_info(module, tuple(x.shape[1:]), as_strings=False,
                                                      print_per_layer_stat=False, verbose=False, **extra)
        if macs is None:  # ptflops catches the exception, prints it and returns (None, None)
            lines = [line for line in out.getvalue().splitlines() if line.strip()]
            raise RuntimeError(lines[-1] if lines else "returned None")
        return macs

    return count


def run_ptflops(model, x, _meta):
    """``get_model_complexity_info(model, (3, 224, 224), as_strings=False, ...)``: ptflops' default
    (pytorch) backend, module hooks and patched functionals, as users call it."""
    count = _ptflops(x, None)
    count(model)
    return Timed(lambda _: count(model))


def run_ptflops_aten(model, x, _meta, with_copy=False):
    """ptflops' aten backend, on fresh copies (it leaves hooks on the model's children)."""
    return on_copies(_ptflops(x, "aten"), model, with_copy)


def run_calflops(model, x, _meta):
    """``calflops.calculate_flops(model, input_shape=...)`` as users call it; its MACs."""
    from calflops import calculate_flops

    def count(_):
        with silenced():
            return calculate_flops(model, input_shape=tuple(x.shape), print_results=False, print_detailed=False,
                                   output_as_string=False)[1]

    count(None)
    return Timed(count)


def _flop_counter(module, tensor):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def count(clone):
        with silenced(), torch.no_grad(), FlopCounterMode(display=False) as counter:
            (module if clone is None else clone)(tensor)
        return counter.get_total_flops()

    return count


def run_torch(model, x, _meta):
    count = _flop_counter(model, x)
    count(None)
    return Timed(count)


def run_torch_meta(model, _x, meta, with_copy=False):
    meta_model, meta_x = meta
    count = _flop_counter(meta_model, meta_x)
    count(None)
    if with_copy:
        return Timed(copied(count, model, to_meta=True))
    return Timed(count)


def run_thop_copy(model, x, _meta):
    return on_copies(_thop(x), model, with_copy=True)


def run_ptflops_copy(model, x, meta):
    return run_ptflops_aten(model, x, meta, with_copy=True)


def run_torch_meta_copy(model, x, meta):
    return run_torch_meta(model, x, meta, with_copy=True)


PEERS = (
    ("fvcore", "fvcore.nn", "fvcore flops (1/MAC)", 1.0, run_fvcore),
    ("thop", "thop", "MACs", 1.0, run_thop),
    ("ptflops", "ptflops", "MACs (pytorch)", 1.0, run_ptflops),
    ("ptflops-aten", "ptflops", "MACs (aten)", 1.0, run_ptflops_aten),
    ("calflops", "calflops", "MACs", 1.0, run_calflops),
    ("torch", "torch.utils.flop_counter", "FLOPs (2/MAC)", 0.5, run_torch),
    ("torch-meta", "torch.utils.flop_counter", "FLOPs (2/MAC)", 0.5, run_torch_meta),
    ("thop+copy", "thop", "MACs", 1.0, run_thop_copy),
    ("ptflops+copy", "ptflops", "MACs (aten)", 1.0, run_ptflops_copy),
    ("torch-meta+copy", "torch.utils.flop_counter", "FLOPs (2/MAC)", 0.5, run_torch_meta_copy),
)
#: Peers that leave the caller's model as it was: thop adds buffers to every module it counts and
#: ptflops' aten backend leaves hooks behind, so a caller must copy first; the meta count needs a
#: meta copy. mbcost changes nothing, so its time is already end to end.
UNCHANGED = ("fvcore", "calflops", "torch", "thop+copy", "ptflops+copy", "torch-meta+copy")
BARE = ("fvcore", "thop", "ptflops", "ptflops-aten", "calflops", "torch", "torch-meta")


def version_of(module: str) -> str | None:
    """The installed version of a peer library (imported here, quietly, before any timing), or None."""
    try:
        with silenced():  # fvcore.nn warns about torch.jit.script on import
            importlib.import_module(module)
    except Exception:  # a broken install counts as missing too
        return None
    top = module.split(".")[0]
    found = getattr(sys.modules[top], "__version__", None)
    if found:
        return str(found)
    try:
        from importlib.metadata import version

        return version({"thop": "ultralytics-thop"}.get(top, top))
    except Exception:
        return "?"


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"failed: {type(exc).__name__}" + (f": {text[0][:90]}" if text else "")


# --- mbcost, warm and cold --------------------------------------------------------------------------------------


def mbcost_warm(model) -> Timed:
    """``mbcost.analyze`` after three untimed calls before each timing (its result: the MACs and the layer
    count): a block program is recorded on its block's third meeting (``mbcost.cost.programs.met``), and "mbcost
    first" empties the tables between two rounds."""
    import mbcost

    def count(_):
        cost = mbcost.analyze(model, SIZE)
        return cost.macs, len(cost.layers)

    def prepare() -> None:
        for _ in range(3):
            count(None)

    return Timed(count, prepare=prepare)


def mbcost_first(model) -> Timed:
    """``mbcost.analyze`` with the engine's process-wide tables emptied first (inside the timing, which makes
    the figure conservative): what the first analysis of an architecture costs once the engine has run in the
    process."""
    import mbcost
    from mbcost.cost import answers, programs, records

    def forget() -> None:  # every table the engine keeps across calls, per-class readers included
        answers.forget()
        answers._OP_INFO.clear()
        programs.forget()
        programs._READERS.clear()
        programs._NAMES.clear()
        records._RECORDS.clear()

    def count(_):
        cost = mbcost.analyze(model, SIZE)
        return cost.macs, len(cost.layers)

    return Timed(count, reset=forget)


def mbcost_cold(name: str, repeat: int, threads: int) -> Outcome:
    best, engine_ms, macs = float("inf"), 0.0, None
    # Byte-compiled, as an installed package is: a sandbox that sets PYTHONDONTWRITEBYTECODE would
    # otherwise make every fresh process compile mbcost's sources again (about 20 ms).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for _ in range(repeat + 1):  # the first process writes the bytecode; the best of the rest counts
        done = subprocess.run([sys.executable, "-c", COLD_CODE, name, str(threads)], cwd=ROOT, capture_output=True,
                              text=True, timeout=600, env=env)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("COLD ")), None)
        if done.returncode != 0 or line is None:
            tail = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            return Outcome(error=f"failed: {tail[-1][:100] if tail else f'exit {done.returncode}'}")
        _, first, engine, total = line.split()
        if float(first) < best:
            best, engine_ms, macs = float(first), float(engine), int(total)
    return Outcome(ms=best, total=macs, macs=float(macs), note=f"of which {engine_ms:.1f} ms lazy engine import")


def dispatch_floor(model, x) -> Timed:
    """Time the forward under a dispatch mode that only answers shapes (see the module docstring)."""
    import torch
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
    from torch.utils._python_dispatch import TorchDispatchMode

    from mbcost.cost.ops import SHORTCUTS

    class ShapesOnly(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            return False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            shortcut = SHORTCUTS.get(func.overloadpacket.__name__)
            out = shortcut(args, kwargs) if shortcut is not None and "out" not in kwargs else None
            return func(*args, **kwargs) if out is None else out

    meta_model, meta_x = copy.deepcopy(model).to("meta"), torch.empty_like(x, device="meta")
    handles: list[Any] = []

    def count(_):
        with torch.no_grad(), ShapesOnly():
            meta_model(meta_x)

    def hooks():  # registered around each timed call only, so that no other contender pays for them
        handles.extend([register_module_forward_pre_hook(lambda m, a: None),
                        register_module_forward_hook(lambda m, a, o: None, always_call=True)])

    def unhook():
        while handles:
            handles.pop().remove()

    hooks()
    try:
        count(None)
    finally:
        unhook()
    return Timed(count, hooks, unhook)


# --- report -----------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cell(outcome: Outcome, width: int = 9) -> str:
    return f"{outcome.ms:{width}.2f}" if outcome.ms is not None else f"{'n/a':>{width}}"


def ratio(peer: float | None, ours: float | None) -> str:
    return f"{peer / ours:,.1f}x" if peer is not None and ours else "n/a"


def build(name: str):
    """A torchvision model by name, or a timm one (``timm:NAME``): random weights, eval mode."""
    if name.startswith("timm:"):
        import timm

        return timm.create_model(name[len("timm:"):], pretrained=False).eval()
    import torchvision

    return getattr(torchvision.models, name)(weights=None).eval()


def bench_model(name: str, args, versions: dict[str, str | None]) -> dict[str, Outcome]:
    import torch

    torch.manual_seed(0)
    model = build(name)
    x = torch.randn(1, 3, SIZE, SIZE)
    params = sum(p.numel() for p in model.parameters())
    meta = None

    results: dict[str, Outcome] = {"mbcost warm": Outcome(), "mbcost first": Outcome(), "mbcost cold": (
        Outcome(error="skipped (--no-cold)") if args.no_cold else mbcost_cold(name, args.repeat, args.threads))}
    # every contender's warm-up call first; then rounds that time each contender once in turn
    contenders: dict[str, Timed] = {}
    units: dict[str, tuple[str, float]] = {}
    for contender, make in (("mbcost warm", mbcost_warm), ("mbcost first", mbcost_first), ("_floor", dispatch_floor)):
        try:
            contenders[contender] = make(model, x) if make is dispatch_floor else make(model)
        except Exception as exc:  # report and go on
            results[contender] = Outcome(error=short_error(exc))
    for peer, _module, unit, to_macs, runner in PEERS:
        if versions[peer] is None:
            results[peer] = Outcome(error=NOT_INSTALLED)
            continue
        try:
            if peer.startswith("torch-meta") and meta is None:
                meta = (copy.deepcopy(model).to("meta"), torch.empty_like(x, device="meta"))
            contenders[peer] = runner(model, x, meta)
            units[peer] = (unit, to_macs)
        except Exception as exc:  # a peer failing on a model is a result, not a crash
            results[peer] = Outcome(error=short_error(exc))
    for contender, outcome in interleaved(contenders, args.repeat).items():
        if isinstance(outcome, BaseException):
            results[contender] = Outcome(error=short_error(outcome))
        elif contender in ("mbcost warm", "mbcost first"):
            ms, (macs, layers) = outcome
            results[contender] = Outcome(ms=ms, total=macs, macs=float(macs), note=f"{layers} layers")
        elif contender == "_floor":
            results[contender] = Outcome(ms=outcome[0], note="shapes only, no records")
        else:
            unit, to_macs = units[contender]
            ms, total = outcome
            results[contender] = Outcome(ms=ms, total=total, macs=float(total) * to_macs, note=unit)
    floor = results.pop("_floor")

    warm, first, cold = results["mbcost warm"], results["mbcost first"], results["mbcost cold"]
    timed_peers = [(p, results[p]) for p in BARE if results[p].ms is not None]
    fastest = min(timed_peers, key=lambda item: item[1].ms) if timed_peers else None
    unchanged = [(p, results[p]) for p in UNCHANGED if results[p].ms is not None]
    fastest_unchanged = min(unchanged, key=lambda item: item[1].ms) if unchanged else None

    print(f"\n{name}  ({params:,} params, input 1x3x{SIZE}x{SIZE}, best of {args.repeat} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.2f})")
    print(f"  {'contender':<12} {'best ms':>9}  {'total':>16}  {'as GMACs':>9}  unit / note")
    for contender, outcome in results.items():
        if outcome.error:
            print(f"  {contender:<12} {outcome.error}")
            continue
        total = f"{outcome.total:,.0f}" if isinstance(outcome.total, float) else f"{outcome.total:,}"
        unit = "MACs" if contender.startswith("mbcost") else outcome.note
        extra = f"  ({outcome.note})" if contender.startswith("mbcost") and outcome.note else ""
        print(f"  {contender:<12} {cell(outcome)}  {total:>16}  {outcome.macs / 1e9:9.3f}  {unit}{extra}")
    if fastest is not None:
        print(f"  fastest peer: {fastest[0]} {fastest[1].ms:.2f} ms -> {ratio(fastest[1].ms, warm.ms)} mbcost warm, "
              f"{ratio(fastest[1].ms, first.ms)} mbcost first, {ratio(fastest[1].ms, cold.ms)} mbcost cold")
    else:
        print("  fastest peer: none ran")
    if fastest_unchanged is not None:
        print(f"  fastest peer leaving the model unchanged: {fastest_unchanged[0]} {fastest_unchanged[1].ms:.2f} ms "
              f"-> {ratio(fastest_unchanged[1].ms, warm.ms)} mbcost warm, "
              f"{ratio(fastest_unchanged[1].ms, cold.ms)} mbcost cold")
    if floor.ms is not None:
        print(f"  dispatch floor (shapes only, no records): {floor.ms:.2f} ms"
              + (f" -> fastest peer / floor = {ratio(fastest[1].ms, floor.ms)}" if fastest else ""))
    else:
        print(f"  dispatch floor: {floor.error}")
    if warm.total is not None and cold.total is not None and warm.total != cold.total:
        print(f"  note: mbcost warm and cold disagree ({warm.total:,} vs {cold.total:,} MACs); the cold process "
              "imports mbcost afresh, so was it edited during the run?")
    results["_floor"] = floor
    results["_fastest"] = Outcome(ms=fastest[1].ms if fastest else None, note=fastest[0] if fastest else "")
    results["_unchanged"] = Outcome(ms=fastest_unchanged[1].ms if fastest_unchanged else None,
                                    note=fastest_unchanged[0] if fastest_unchanged else "")
    del model, meta
    gc.collect()
    return results


def synthetic(blocks: int, extra_relus: int):
    from torch import nn

    layers: list[nn.Module] = []
    for _ in range(blocks):
        layers += [nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()]
    layers += [nn.ReLU() for _ in range(extra_relus)]
    return nn.Sequential(*layers).eval()


def bench_linearity(targets: list[int], repeat: int) -> None:
    import mbcost

    def ops(module) -> int:
        return len(mbcost.analyze(module, (16, 16), in_channels=8).layers)

    print(f"\nPart 2: mbcost.analyze warm on Conv3x3+BN+ReLU chains, input 1x8x16x16, best of {repeat}")
    try:
        one, two, one_relu = ops(synthetic(1, 0)), ops(synthetic(2, 0)), ops(synthetic(1, 1))
    except Exception as exc:
        print(f"  {short_error(exc)}")
        return
    per_block, per_relu = max(two - one, 1), max(one_relu - one, 1)
    base = one - per_block
    print(f"  (the engine reports {per_block} ops per block, {per_relu} per extra ReLU, {base} fixed)")
    print(f"  {'target':>6} {'ops':>6} {'ms':>9} {'us/op':>8} {'ms / first':>11} {'ops / first':>12}")
    first = None
    for target in targets:
        blocks = max((target - base) // per_block, 0)
        extra = max((target - base - blocks * per_block) // per_relu, 0)
        module = synthetic(blocks, extra)
        try:
            count = ops(module)  # also the untimed warm-up call
            ms, _ = best_of(repeat, lambda _, m=module: mbcost.analyze(m, (16, 16), in_channels=8))
        except Exception as exc:
            print(f"  {target:>6} {short_error(exc)}")
            continue
        first = first or (ms, count)
        print(f"  {target:>6} {count:>6} {ms:9.2f} {ms * 1e3 / count:8.1f} {ms / first[0]:10.2f}x "
              f"{count / first[1]:11.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS + TIMM_MODELS),
                        help="comma-separated model names: torchvision's, or timm:NAME")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per contender (best is kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for every contender")
    parser.add_argument("--ops", default=",".join(map(str, OPS)), help="op counts of the part-2 synthetic models")
    parser.add_argument("--ops-repeat", type=int, default=5, help="timed runs per part-2 model (best is kept)")
    parser.add_argument("--no-cold", action="store_true", help="skip the fresh-process mbcost runs")
    parser.add_argument("--skip-linearity", action="store_true", help="skip part 2")
    parser.add_argument("--quick", action="store_true", help="smoke run: first model only, repeat 1")
    parser.add_argument("--collect", action="store_true",
                        help="run a full garbage collection before each timed call (cold caches; the earlier protocol)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when the output goes to a file
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.quick:
        models, args.repeat, args.ops_repeat = models[:1], 1, 1
    args.repeat, args.ops_repeat = max(args.repeat, 1), max(args.ops_repeat, 1)
    global COLLECT
    COLLECT = args.collect

    import torch
    import torchvision

    torch.set_num_threads(args.threads)
    versions = {peer: version_of(module) for peer, module, *_ in PEERS}
    versions["torch"] = versions["torch-meta"] = torch.__version__ if versions["torch"] else None

    print("Benchmark: mbcost engine vs peer counters")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}; load average "
          f"(1, 5, 15 min) {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}")
    print("timing: torch.utils.benchmark.Timer.timeit(1) per call, best of --repeat; "
          + ("a full garbage collection before each call (--collect)" if COLLECT else "no collection between calls"))
    import mbcost

    print("versions: mbcost " + mbcost.__version__ + ", "
          + ", ".join(f"{p} {v or NOT_INSTALLED}" for p, v in versions.items() if p != "torch-meta"))

    rows = []
    for name in models:
        try:
            rows.append((name, bench_model(name, args, versions)))
        except Exception as exc:  # e.g. a name torchvision does not know
            print(f"\n{name}: {short_error(exc)}")

    if rows:
        names = ["mbcost warm", "mbcost first", "mbcost cold", *(p for p, *_ in PEERS)]
        print(f"\nSummary: best ms per count (threads {torch.get_num_threads()}, best of {args.repeat} interleaved "
              "rounds); ratio = fastest peer / mbcost; 'unchanged': the fastest peer that leaves the model as it was")
        header = f"  {'model':<28}" + "".join(f"{n:>16}" for n in names)
        print(header + f"  {'fastest peer':>12} {'/ warm':>7} {'/ first':>8} {'/ cold':>7}  {'unchanged':>15} "
                       f"{'/ warm':>7} "
                       f"{'/ cold':>7}  {'floor':>7} {'peer/floor':>10}")
        for name, res in rows:
            fastest, same = res["_fastest"], res["_unchanged"]
            warm_ms, first_ms, cold_ms = res["mbcost warm"].ms, res["mbcost first"].ms, res["mbcost cold"].ms
            line = f"  {name:<28}" + "".join(cell(res[n], 16) for n in names)
            print(line + f"  {fastest.note or 'none':>12} {ratio(fastest.ms, warm_ms):>7} "
                         f"{ratio(fastest.ms, first_ms):>8} "
                         f"{ratio(fastest.ms, cold_ms):>7}  {same.note or 'none':>15} {ratio(same.ms, warm_ms):>7} "
                         f"{ratio(same.ms, cold_ms):>7}  {cell(res['_floor'], 7)} "
                         f"{ratio(fastest.ms, res['_floor'].ms):>10}")
        for label, chosen in (("torchvision", [r for r in rows if not r[0].startswith("timm:")]),
                              ("timm", [r for r in rows if r[0].startswith("timm:")])):
            for kind in ("warm", "first"):
                ratios = [(res["_fastest"].ms / res[f"mbcost {kind}"].ms, name) for name, res in chosen
                          if res["_fastest"].ms and res[f"mbcost {kind}"].ms]
                if ratios:
                    low, at = min(ratios)
                    print(f"  {label} set: fastest peer / mbcost {kind} >= {low:.1f}x (lowest: {at})")
        print(f"  load average (1, 5, 15 min) at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
        missing = [p for p in versions if versions[p] is None and p != "torch-meta"]
        if missing:
            print(f"  n/a: {', '.join(missing)} {NOT_INSTALLED}")

    if not args.skip_linearity:
        bench_linearity([int(t) for t in args.ops.split(",") if t.strip()], args.ops_repeat)


if __name__ == "__main__":
    main()
