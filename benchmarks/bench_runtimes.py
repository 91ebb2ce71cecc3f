"""Every runtime next to eager PyTorch: median latency, float32 and int8, at 1 and 2 threads.

Default: ``mbcost.bench.model_bench.bench_runtimes`` (what ``mbcost bench --runtime ... --precision ...``
runs) on v1, v2, vgg16 and three torchvision models (mobilenet_v3_large, resnet18, efficientnet_b0), batch
1 at 224x224, on every runtime in float32 and int8, at 1 and 2 threads; prints mbcost's table for each
thread count and precision, then a matrix of medians with each runtime's speed-up over eager.

``--direct``: is mbcost's number the runtime's number? For each model, runtime and precision, the same
runtime is also prepared and timed directly, in the same process, with its own session built here from
the runtime's own API (its own export, quantization and session; the same thread count and denormal
setting; the same network and calibration inputs) and a plain ``time.perf_counter`` loop around its own
call. Rounds are interleaved (each round times mbcost's prepared runtime through mbcost's timer, then
the direct one); the lowest per-round median of each side is kept. Printed: both medians and their
ratio (target: within 20 %), and ONNX Runtime's speed-up over eager on v2 at one thread (target: at
least 1.5x).

Run:
    python benchmarks/bench_runtimes.py [--models v1,v2] [--runtimes eager,onnxruntime] [--threads 1,2]
                                        [--precisions float32,int8] [--min-time 1] [--max-time 3]
    python benchmarks/bench_runtimes.py --direct --models v1,v2 --threads 1 [--rounds 3] [--loops 50]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MODELS = "v1,v2,vgg16,torchvision:mobilenet_v3_large,torchvision:resnet18,torchvision:efficientnet_b0"


# -- the table ----------------------------------------------------------------------------------------


def table(args: argparse.Namespace) -> None:
    from mbcost.bench.devices import resolve_device
    from mbcost.bench.model_bench import BenchSettings, bench_runtimes, plan_models, speedups
    from mbcost.bench.timer import Budget
    from mbcost.render.bench import bench_table
    from mbcost.zoo.spec import parse_models

    specs = parse_models(args.models)
    budget = Budget(min_run_time=args.min_time, max_run_time=args.max_time)
    everything = []
    for threads in args.threads:
        for precision in args.precisions:
            settings = BenchSettings(resolve_device("cpu"), threads=threads, precision=precision,
                                     budget=budget).validated()
            plans = plan_models(specs, args.input, [1], settings)
            started = time.perf_counter()
            run = bench_runtimes(plans, settings, args.runtimes,
                                 progress=lambda i, n, what: print(f"  [{i}/{n}] {what}", file=sys.stderr,
                                                                   flush=True))
            if run.records:
                print(bench_table(run.records, speedups(run.records), [f.message for f in run.failures])
                      .to_markdown())
            for f in run.failures:
                print(f"not measured: {f.message}")
            print(f"({threads} thread(s), {precision}: {time.perf_counter() - started:.0f} s with one-time costs)\n")
            everything += run.records
    matrix(everything, args.runtimes)


def matrix(records: list[Any], runtimes: list[str]) -> None:
    """Median per model and runtime, with the speed-up over eager float32 at the same thread count."""
    eager = {(r.model, r.threads): r.median_ms for r in records if r.runtime == "eager" and r.precision == "float32"}
    print("| model | threads | precision | " + " | ".join(runtimes) + " |")
    print("|---|---:|---|" + "---:|" * len(runtimes))
    keys = list(dict.fromkeys((r.model, r.threads, r.precision) for r in records))
    by = {(r.model, r.threads, r.precision, r.runtime): r for r in records}
    for model, threads, precision in keys:
        cells = []
        for rt in runtimes:
            r = by.get((model, threads, precision, rt))
            if r is None:
                cells.append("-")
                continue
            base = eager.get((model, threads))
            flag = " !!" if r.output_check is not None and not r.output_check.passed else ""
            cells.append(f"{r.median_ms:.2f} ms" + (f" ({base / r.median_ms:.2f}x)" if base else "") + flag)
        print(f"| {model} | {threads} | {precision} | " + " | ".join(cells) + " |")
    print("(x) = speed-up over eager float32 at the same thread count; !! = output check failed")


# -- direct timing ------------------------------------------------------------------------------------


def direct(model: Any, x: Any, runtime: str, precision: str, threads: int, calibration: list[Any],
           workdir: str) -> Any:
    """The runtime prepared with its own API, as a user of it would: returns its call on ``x``."""
    import torch

    args = (x,)
    xn = x.numpy()
    calib = [b.args[0] for b in calibration]
    int8 = precision == "int8"
    if runtime in ("eager", "compile"):
        if int8 and runtime == "eager":
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            torch.backends.quantized.engine = "x86"
            prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), args)
            with torch.no_grad():
                for c in calib:
                    prepared(c)
            model = convert_fx(prepared)
        elif int8:
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            q = xiq.X86InductorQuantizer()
            q.set_global(xiq.get_default_x86_inductor_quantization_config())
            prepared = prepare_pt2e(torch.export.export(model, args).module(), q)
            for c in calib:
                prepared(c)
            model = convert_pt2e(prepared)
        if runtime == "compile":  # (no dynamo reset here: it would drop mbcost's compiled graph too)
            with torch._inductor.config.patch(freezing=int8), torch.inference_mode():
                model = torch.compile(model)
                model(x)

        return lambda: model(x)  # timed under inference_mode
    if runtime == "onnxruntime":
        import onnxruntime as ort

        path = os.path.join(workdir, "direct.onnx")
        torch.onnx.export(model, args, dynamo=True).save(path)
        name = "x"
        if int8:
            from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
            from onnxruntime.quantization.shape_inference import quant_pre_process

            name = ort.InferenceSession(path).get_inputs()[0].name
            items = iter([{name: c.numpy()} for c in calib])

            class Reader(CalibrationDataReader):
                def get_next(self) -> Any:
                    return next(items, None)

            quant_pre_process(path, path + ".pre")
            quantize_static(path + ".pre", path + ".q", Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
            path += ".q"
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
        session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: xn})
    if runtime == "openvino":
        import openvino as ov

        converted = ov.convert_model(model, example_input=x)
        if int8:
            import nncf

            converted = nncf.quantize(converted, nncf.Dataset([c.numpy() for c in calib]), subset_size=len(calib))
        # f32 as mbcost asks: on a CPU with bf16 (AVX512_BF16, AMX) the plugin would otherwise run bf16
        compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                              "INFERENCE_PRECISION_HINT": "f32",
                                                              "CPU_DENORMALS_OPTIMIZATION": True})
        request = compiled.create_infer_request()
        return lambda: request.infer({0: xn})
    if runtime == "executorch":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        if int8:
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            q = XNNPACKQuantizer()
            q.set_global(get_symmetric_quantization_config(is_per_channel=True))
            prepared = prepare_pt2e(torch.export.export(model, args).module(), q)
            for c in calib:
                prepared(c)
            model = convert_pt2e(prepared)
        program = to_edge_transform_and_lower(torch.export.export(model, args),
                                              partitioner=[XnnpackPartitioner()]).to_executorch()
        if portable_lib._threadpool_get_thread_count() != threads:  # before loading: the delegate keeps its pool
            portable_lib._unsafe_reset_threadpool(threads)
        buffer = program.buffer
        loaded = Runtime.get().load_program(buffer)
        method = loaded.load_method("forward")
        inputs = [x]
        call = lambda: method.execute(inputs)  # noqa: E731
        call.keep = (buffer, loaded)  # type: ignore[attr-defined]
        return call
    raise SystemExit(f"no direct timing for {runtime}")


def plain_median(call: Any, loops: int, seconds: float) -> float:
    """Median of calls timed one by one for ``seconds`` (as long as mbcost's timer measures at least; a shorter
    window would catch a quiet moment on a busy machine more often), at least 5 and at most ``loops``."""
    import torch

    with torch.inference_mode():
        for _ in range(3):
            call()
        times: list[float] = []
        while len(times) < 5 or (len(times) < loops and sum(times) < seconds):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def direct_comparison(args: argparse.Namespace) -> None:
    import logging

    import torch

    from mbcost.bench.devices import resolve_device
    from mbcost.bench.model_bench import BenchSettings, ForwardArgs, plan_models, time_call
    from mbcost.bench.runtimes import RuntimeJob, get_runtime
    from mbcost.bench.runtimes.base import quiet
    from mbcost.bench.runtimes.calibration import random_calibration, random_inputs, reestimate_batchnorm
    from mbcost.bench.timer import Budget
    from mbcost.zoo.spec import build_model, parse_models

    logging.getLogger("mbcost").setLevel(logging.ERROR)
    budget = Budget(min_run_time=args.min_time, max_run_time=args.max_time)
    rows = []
    for threads in args.threads:
        for precision in args.precisions:
            settings = BenchSettings(resolve_device("cpu"), threads=threads, precision=precision,
                                     budget=budget).validated()
            for spec in parse_models(args.models):
                plan = plan_models([spec], args.input, [1], settings)[0]
                calibration = random_calibration(plan.cost)
                base = build_model(spec, num_classes=plan.num_classes).eval()
                if precision == "int8":
                    reestimate_batchnorm(base, calibration.batches)
                x: ForwardArgs = random_inputs(plan.cost, 0)
                for name in args.runtimes:
                    adapter = get_runtime(name)
                    if adapter.refusal(precision, "float32", settings.device):
                        continue
                    print(f"  {spec.label} {name} {precision} {threads}t: preparing", file=sys.stderr, flush=True)
                    with settings.runtime(), tempfile.TemporaryDirectory() as work:
                        job = RuntimeJob(precision=precision, threads=threads, device=settings.device,
                                         calibration=calibration.batches, workdir=work)
                        prepared = adapter.prepare(copy.deepcopy(base), x, job)
                        with quiet():
                            own = direct(copy.deepcopy(base), x.args[0], name, precision, threads,
                                         list(calibration.batches), work)
                        ours, theirs = [], []
                        for _ in range(args.rounds):  # interleaved: each round times both, in turn
                            ours.append(time_call(prepared, settings, spec.label, name).median)
                            torch.set_num_threads(threads)
                            theirs.append(plain_median(own, args.loops, args.min_time))
                        if prepared.close:
                            prepared.close()
                    rows.append((spec.label, name, precision, threads, min(ours), min(theirs)))
                    print(f"  {spec.label} {name} {precision} {threads}t: mbcost {min(ours) * 1e3:.3f} ms, "
                          f"direct {min(theirs) * 1e3:.3f} ms", file=sys.stderr, flush=True)
    print("| model | runtime | precision | threads | mbcost median | direct median | mbcost / direct |")
    print("|---|---|---|---:|---:|---:|---:|")
    for model, name, precision, threads, ours_s, theirs_s in rows:
        ratio = ours_s / theirs_s
        flag = "" if abs(ratio - 1) <= 0.20 else " (outside 20%)"
        print(f"| {model} | {name} | {precision} | {threads} | {ours_s * 1e3:.3f} ms | {theirs_s * 1e3:.3f} ms | "
              f"{ratio:.2f}{flag} |")
    print(f"lowest per-round median of {args.rounds} interleaved rounds; mbcost = its prepared runtime through "
          f"mbcost's timer (torch.utils.benchmark, {args.min_time:g}-{args.max_time:g} s), direct = the runtime's own "
          f"session here, calls timed one by one with time.perf_counter for {args.min_time:g} s")
    by = {(m, n, p, t): ours for m, n, p, t, ours, _ in rows}
    eager, onnx = by.get(("v2", "eager", "float32", 1)), by.get(("v2", "onnxruntime", "float32", 1))
    if eager and onnx:
        print(f"ONNX Runtime v2 vs eager, 1 thread, float32 (mbcost medians): {eager / onnx:.2f}x faster "
              f"(target >= 1.5x)")


def main() -> None:
    from mbcost.bench.runtimes import RUNTIMES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=MODELS)
    p.add_argument("--runtimes", default=",".join(RUNTIMES))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--precisions", default="float32,int8")
    p.add_argument("--input", default="224")
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--max-time", type=float, default=3.0)
    p.add_argument("--direct", action="store_true", help="mbcost's median against the runtime timed directly")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--loops", type=int, default=100_000)
    args = p.parse_args()
    args.runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    args.threads = [int(t) for t in args.threads.split(",")]
    args.precisions = [q.strip() for q in args.precisions.split(",") if q.strip()]
    (direct_comparison if args.direct else table)(args)


if __name__ == "__main__":
    main()
