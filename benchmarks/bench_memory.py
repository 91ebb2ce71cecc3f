"""Benchmark: the engine's activation peak against the measured one on CPU, and where the difference goes.

For each model and batch: ``ModelCost.peak_activation_bytes`` (tensor lifetimes, inputs included)
next to ``mbcost.bench.memory.measure_peak_memory`` (the CPU allocator's peak over one forward,
inputs copied inside), and their ratio. Runs as ``mbcost bench`` does: float32, eval,
``inference_mode``, denormals flushed, freed memory kept in the heap, 1 thread by default (the
thread count changes which convolution kernel ATen picks, see below), after one warm-up forward.

``--explain`` (default) traces the same forward again with every allocation's lifetime (the
profiler's event tree: allocation and free paired by address) and each leaf module's call
(``record_function`` around it, hooks removed afterwards) and prints:

* what is live at the measured peak: each buffer, the module and ATen op that made it, and when
  it is freed;
* the transient buffers of every op (allocated and freed inside one module call), named by what
  their size matches (a blocked copy of the input, of the weights, of the output, int64 indices,
  im2col columns), grouped by ATen kernel, with the op's workspace = its peak beyond what was live
  before it and the output it leaves;
* the largest single allocations.

Then the training step (``--train-models``, default v1 and v2, at ``--train-batch`` 8, plain SGD):
``train_peak_memory_bytes`` minus the weights (gradients + activations kept for backward at the
step's worst point) next to the allocator's peak over forward, backward and ``step()``, with the
gradients freed beforehand (``zero_grad(set_to_none=True)``), so the step allocates them.

Run: python benchmarks/bench_memory.py [--models v1,v2,vgg16] [--batches 1,8] [--input 224] [--threads 1]
         [--no-explain] [--top 8] [--train-models v1,v2] [--train-batch 8]
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

MB = 1e6


@dataclass
class Buffer:
    """One allocation of the traced pass: when it was made and freed, by which module and op."""

    size: int
    ptr: int
    born: int
    died: int | None  # None: alive at the end of the pass
    module: str  # the leaf module whose call made it ("" outside any)
    ops: tuple[str, ...]  # ATen ops below the module, outermost first
    call: int | None  # index into Trace.calls


@dataclass
class Call:
    """One leaf module call: its interval and shapes."""

    module: str
    kind: str
    start: int
    end: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)
    reads: tuple[int, ...] = ()  # data pointers of its tensor inputs
    writes: int = 0  # data pointer of its output


@dataclass
class Trace:
    buffers: list[Buffer]
    calls: list[Call]
    events: list[tuple[int, int, int]]  # (time, signed size, buffer index)

    def peak(self) -> tuple[int, int]:
        """(peak bytes, time of the peak)."""
        live = best = 0
        when = 0
        for t, size, _ in self.events:
            live += size
            if live > best:
                best, when = live, t
        return best, when

    def live_at(self, t: int) -> list[Buffer]:
        return [b for b in self.buffers if b.born <= t and (b.died is None or b.died > t)]


def mb(n: float) -> str:
    return f"{n / MB:8.2f} MB"


def trace(model: Any, x: Any) -> Trace:
    """One forward under the profiler with leaf-module annotations; allocations paired by address."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from mbcost.bench.memory import forward_once

    leaves = {name: m for name, m in model.named_modules() if name and not any(True for _ in m.children())}
    seen: list[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...], int]] = []  # in call order
    open_: list[Any] = []
    handles = []

    def pre(name: str) -> Any:
        def hook(_m: Any, inp: Any) -> None:
            rf = record_function(f"module::{name}")
            rf.__enter__()
            open_.append(rf)
        return hook

    def post(name: str) -> Any:
        def hook(_m: Any, inp: Any, out: Any) -> None:
            open_.pop().__exit__(None, None, None)
            tensors = [t for t in inp if isinstance(t, torch.Tensor)]
            is_out = isinstance(out, torch.Tensor)
            seen.append((name, tuple(tensors[0].shape) if tensors else (), tuple(out.shape) if is_out else (),
                         tuple(t.untyped_storage().data_ptr() for t in tensors),
                         out.untyped_storage().data_ptr() if is_out else 0))
        return hook

    for name, m in leaves.items():
        handles += [m.register_forward_pre_hook(pre(name)), m.register_forward_hook(post(name))]
    try:
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            forward_once(model, x)
    finally:
        for h in handles:
            h.remove()

    calls: list[Call] = []
    raw: list[tuple[int, int, int, str, tuple[str, ...], int | None]] = []  # time, ptr, size, module, ops, call

    def walk(node: Any, module: str, call: int | None, ops: tuple[str, ...]) -> None:
        kind = str(node.typed[0])
        if kind.endswith("Allocation"):
            f = node.typed[1]
            raw.append((node.start_time_ns, f.ptr, f.alloc_size, module, ops, call))
            return
        name = node.name
        if name.startswith("module::"):
            module = name[len("module::"):]
            mod = leaves[module]
            info = {k: getattr(mod, k) for k in ("kernel_size", "stride", "groups", "padding") if hasattr(mod, k)}
            calls.append(Call(module, type(mod).__name__, node.start_time_ns, node.end_time_ns, (), (), info))
            call, ops = len(calls) - 1, ()
        else:
            ops = (*ops, name.replace("aten::", ""))
        for child in node.children:
            walk(child, module, call, ops)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root, "", None, ())
    order = sorted(range(len(calls)), key=lambda i: calls[i].start)
    assert [calls[i].module for i in order] == [r[0] for r in seen], "hooks and profiler disagree on the calls"
    for i, (_name, in_shape, out_shape, reads, writes) in zip(order, seen, strict=True):
        calls[i].in_shape, calls[i].out_shape, calls[i].reads, calls[i].writes = in_shape, out_shape, reads, writes
    raw.sort(key=lambda r: r[0])
    buffers: list[Buffer] = []
    events: list[tuple[int, int, int]] = []
    open_ptr: dict[int, int] = {}
    for t, ptr, size, module, ops, call in raw:
        if size > 0:
            open_ptr[ptr] = len(buffers)
            buffers.append(Buffer(size, ptr, t, None, module, ops, call))
            events.append((t, size, open_ptr[ptr]))
        elif ptr in open_ptr:
            i = open_ptr.pop(ptr)
            buffers[i].died = t
            events.append((t, size, i))
        else:  # freed here, allocated before the pass (not expected)
            events.append((t, size, -1))
    return Trace(buffers, calls, events)


def _pad(c: int, block: int) -> int:
    return math.ceil(c / block) * block


def roles(call: Call, itemsize: int = 4) -> dict[int, str]:
    """Sizes a transient buffer of this call may have, and what each would be (``input/output`` when
    two readings have the same size, e.g. around a stride-1 depthwise convolution). oneDNN's blocked
    layouts pad channels to a multiple of 16 (AVX-512) or 8 (AVX2); exact sizes are tried first."""
    kinds: dict[int, dict[str, str]] = defaultdict(dict)

    def add(size: int, kind: str, tag: str = "") -> None:
        if tag and "" in kinds[size].values():
            return  # an exact reading of this size exists: no padded one
        kinds[size].setdefault(kind, tag)

    if len(call.in_shape) == 4 and len(call.out_shape) == 4:
        n, c, h, w = call.in_shape
        _, co, ho, wo = call.out_shape
        if call.kind == "MaxPool2d":
            add(n * co * ho * wo * 8, "indices (int64 per output element)")
        elif call.kind == "BatchNorm2d":
            add(c * itemsize, "saved mean/invstd (C floats)")
        elif call.kind == "Conv2d":
            kh, kw = call.info["kernel_size"]
            g = call.info["groups"]
            cin_w = 1 if g > 1 else c
            for block in (1, 16, 8):
                tag = "" if block == 1 else f", C padded to {block}"
                add(n * _pad(c, block) * h * w * itemsize, "input copy", tag)
                add(n * _pad(co, block) * ho * wo * itemsize, "output (blocked)", tag)
                for ci in (cin_w, _pad(cin_w, block)):
                    add(_pad(co, block) * ci * kh * kw * itemsize, "weights copy", tag)
            add(n * (c // g) * kh * kw * ho * wo * itemsize, "im2col columns")
    out = {}
    for size, by_kind in kinds.items():
        tags = list(by_kind.values())
        out[size] = " or ".join(by_kind) + (f" ({tags[0].lstrip(', ')})" if tags[0] else "")
    return out


def kernel_of(ops: tuple[str, ...]) -> str:
    for k in ("mkldnn_convolution", "_slow_conv2d_forward", "max_pool2d_with_indices", "native_batch_norm",
              "addmm", "_adaptive_avg_pool2d"):
        if k in ops:
            return k
    return ops[0] if ops else "-"


def describe_call(call: Call) -> str:
    i = call.info
    extra = ""
    if call.kind == "Conv2d":
        k, s, g = i["kernel_size"][0], i["stride"][0], i["groups"]
        extra = f" k{k} s{s}" + (" dw" if g > 1 and g == call.in_shape[1] else (f" g{g}" if g > 1 else ""))
    shape = "x".join(map(str, call.in_shape))
    oshape = "x".join(map(str, call.out_shape))
    return f"{call.kind}{extra} {shape} -> {oshape}"


def explain(tr: Trace, peak: int, when: int, top: int) -> None:
    calls = tr.calls
    at = next((c for c in calls if c.start <= when <= c.end), None)
    where = f"{at.module} ({describe_call(at)})" if at else "between modules"
    print(f"  measured peak {mb(peak).strip()} inside {where}; live then:")
    small = 0
    for b in sorted(tr.live_at(when), key=lambda b: -b.size):
        if b.size < 1000:
            small += b.size
            continue
        made = b.module or f"outside modules: {b.ops[0] if b.ops else '?'}"
        if b.ops and b.ops[0] == "clone" and not b.module:
            made = "the input (copied into the pass)"
        readers = [c for c in calls if b.ptr in c.reads and c.start >= b.born and (b.died is None or c.start < b.died)]
        if at is not None and b.call == calls.index(at):
            what = "transient: " + roles(at).get(b.size, "other") if b.died is not None and b.died <= at.end \
                else "output of this op"
        elif at is not None and at in readers:
            what = "input of this op"
        elif readers and readers[-1].end < when:
            what = f"HELD: last read by {readers[-1].module}, still referenced (engine frees it there)"
        elif readers:
            what = f"read later by {readers[-1].module}"
        else:
            what = "no leaf module reads it (a functional op's operand)"
        print(f"    {mb(b.size)}  {made:<34} {what}")
    if small:
        print(f"    {mb(small)}  (buffers under 1 kB)")
    big = sorted(tr.buffers, key=lambda b: -b.size)[:top]
    print(f"  largest {top} allocations:")
    for b in big:
        c = calls[b.call] if b.call is not None else None
        print(f"    {mb(b.size)}  {b.module or '-':<22} {'/'.join(b.ops) or '-':<60} "
              f"{describe_call(c) if c else ''}")


def workspace(tr: Trace, summary: dict[tuple[str, str], list[Any]]) -> None:
    """Per call: transient buffers (made and freed inside it) and the op's workspace at its peak."""
    live = 0
    per_call_before: dict[int, int] = {}
    per_call_peak: dict[int, int] = defaultdict(int)
    for t, size, _ in tr.events:
        for ci, c in enumerate(tr.calls):
            if c.start <= t <= c.end:
                per_call_before.setdefault(ci, live)
        live += size
        for ci, c in enumerate(tr.calls):
            if c.start <= t <= c.end:
                per_call_peak[ci] = max(per_call_peak[ci], live)
    for ci, c in enumerate(tr.calls):
        mine = [b for b in tr.buffers if b.call == ci]
        transient = [b for b in mine if b.died is not None and b.died <= c.end]
        kept = sum(b.size for b in mine if b not in transient)
        if not transient:
            continue
        extra = per_call_peak[ci] - per_call_before.get(ci, 0) - kept
        names = roles(c)
        kernel = kernel_of(transient[0].ops)
        pattern = " + ".join(names.get(b.size, f"other {b.size} B") for b in transient)
        summary[(kernel, pattern)].append((c, extra, transient))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="v1,v2,vgg16")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--input", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--explain", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--top", type=int, default=6)
    parser.add_argument("--train-models", default="v1,v2", help="models of the training part ('' to skip)")
    parser.add_argument("--train-batch", type=int, default=8)
    args = parser.parse_args()

    import os

    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    import torch

    from mbcost.bench.devices import resolve_device
    from mbcost.bench.memory import measure_peak_memory
    from mbcost.bench.model_bench import BenchSettings, plan_models, prepare_model
    from mbcost.zoo.spec import resolve_sources

    settings = BenchSettings(resolve_device("cpu"), threads=args.threads).validated()
    batches = [int(b) for b in args.batches.split(",")]
    rows, explained = [], []
    summary: dict[tuple[str, str], list[Any]] = defaultdict(list)
    with settings.runtime():
        for spec in resolve_sources(args.models):
            for batch in batches:
                plan = plan_models([spec], args.input, [batch], settings)[0]
                torch.manual_seed(0)
                model, x = prepare_model(plan.spec, settings, plan.cost)
                with torch.inference_mode():
                    model(*x.args, **x.kwargs)  # warm-up: the bench measures after its timed runs
                measured = measure_peak_memory(model, x, settings.device)
                est = plan.cost.peak_activation_bytes
                rows.append((plan.cost.label, batch, est, measured, plan.cost.peak_op))
                if args.explain:
                    tr = trace(model, x)
                    peak, when = tr.peak()
                    explained.append((plan.cost.label, batch, est, measured, tr, peak, when))
                    workspace(tr, summary)
                del model, x

    print(f"CPU float32, {args.threads} thread(s), input {args.input}, torch {torch.__version__}; "
          "MB = 10^6 bytes; activation peak = live activations, inputs included, weights excluded")
    print(f"{'model':<8}{'batch':>6}{'estimated':>14}{'measured':>14}{'measured/est':>14}{'difference':>14}"
          "  engine's peak op")
    for label, batch, est, measured, op in rows:
        ratio = measured / est if est else math.nan
        diff = measured - est if est is not None else None
        print(f"{label:<8}{batch:>6}{mb(est) if est is not None else '-':>14}{mb(measured):>14}{ratio:>14.2f}"
              f"{mb(diff) if diff is not None else '-':>14}  {op}")
    for label, batch, est, measured, tr, peak, when in explained:
        print(f"\n{label} batch {batch}: estimated {mb(est)}, measured {mb(measured)} (traced pass: {mb(peak)})")
        explain(tr, peak, when, args.top)
    if summary:
        print("\nTransient buffers per op kind (made and freed inside one module call), all runs above;"
              "\nworkspace = the op's peak beyond what was live before it and the output it leaves:")
        for (kernel, pattern), items in sorted(summary.items(), key=lambda kv: -max(e for _, e, _ in kv[1])):
            c, extra, transient = max(items, key=lambda it: it[1])
            print(f"  {kernel:<24} x{len(items):<4} {pattern}")
            print(f"  {'':<30}largest: {describe_call(c)} ({c.module}): "
                  f"{' + '.join(mb(b.size).strip() for b in transient)}; workspace {mb(extra).strip()}")
    if args.train_models:
        train_part(args.train_models, args.train_batch, args.input, args.threads)


def train_part(models: str, batch: int, size: int, threads: int) -> None:
    """The training step: estimate (gradients + activations) against the allocator's peak."""
    import torch

    import mbcost
    from mbcost.bench.memory import allocations_during, peak_of
    from mbcost.zoo.spec import resolve_sources

    torch.set_num_threads(threads)
    print(f"\nTraining step, SGD, batch {batch}, input {size}, float32, {threads} thread(s): gradients + "
          "activations (weights excluded)")
    print(f"{'model':<8}{'estimated':>14}{'measured':>14}{'est/measured':>14}  activations at")
    for spec in resolve_sources(models):
        model = mbcost.build_model(spec).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.randn(batch, 3, size, size)
        model(x).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        def step(model: Any = model, opt: Any = opt, x: Any = x) -> None:
            loss = model(x.clone()).sum()
            loss.backward()
            opt.step()

        measured = peak_of(allocations_during(step))
        cost = mbcost.analyze(spec, size, batch=batch, mode="train", optimizer="sgd")
        est = cost.train_peak_memory_bytes - cost.weight_bytes - cost.buffer_bytes
        print(f"{cost.label:<8}{mb(est):>14}{mb(measured):>14}{est / measured:>14.3f}  {cost.train_peak_op}")
        del model, opt


if __name__ == "__main__":
    main()
