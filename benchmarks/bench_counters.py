"""Benchmark: the analytic engine against fvcore, thop and FlopCounterMode on VGG16 at 224.

Target (issue 3): the analytic path at least 10x faster than the fastest of the three counters.
The counters are timed on the library call alone (the real VGG16 is built once, outside the
timing); the analytic path is ``mbcost.analyze("vgg16", 224)`` end to end, warm (its meta model
cached) and cold (first call in the process, building the meta model). Medians of a few runs.

Run: python benchmarks/bench_counters.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per counter (analytic: 10x as many)")
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--input", type=int, default=224)
    args = parser.parse_args()

    import torch

    import mbcost
    from mbcost.counters.base import COUNTERS, measure

    start = time.perf_counter()
    cost = mbcost.analyze(args.model, args.input)
    cold = time.perf_counter() - start
    warm = []
    for _ in range(10 * args.runs):
        start = time.perf_counter()
        mbcost.analyze(args.model, args.input)
        warm.append(time.perf_counter() - start)
    analytic = statistics.median(warm)

    torch.manual_seed(0)
    model = mbcost.build_model(args.model).eval()
    print(f"{args.model} at {args.input}x{args.input}, batch 1, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"  analytic   {analytic * 1e3:9.2f} ms (median of {len(warm)} warm runs; cold first call "
          f"{cold * 1e3:.1f} ms)  {cost.macs:,} MACs")
    fastest = float("inf")
    for counter in COUNTERS:
        times, total = [], None
        for _ in range(args.runs):
            result = measure(counter, model, args.input, name=args.model, copy=False)
            times.append(result.seconds)
            total = result.total
        median = statistics.median(times)
        fastest = min(fastest, median)
        print(f"  {counter:<10} {median * 1e3:9.2f} ms (median of {args.runs})  total {total:,}  "
              f"{median / analytic:,.0f}x the analytic time")
    ratio = fastest / analytic
    print(f"fastest counter / analytic = {ratio:,.0f}x (warm), {fastest / cold:,.1f}x (cold); "
          f"target >= 10x: {'met' if ratio >= 10 else 'MISSED'}")


if __name__ == "__main__":
    main()
