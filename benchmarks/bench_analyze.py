"""Benchmark: analytic cost of v1, v2 and vgg16, at 224 and at 2048x2048 with batch 64.

Targets (issue 2): the three models at 224 in <= 30 ms together, in-process; at 2048x2048 with
batch 64 within 2x of that, with peak memory rising by no more than 50 MB.

Run: python benchmarks/bench_analyze.py
"""

from __future__ import annotations

import gc
import resource
import statistics
import time
import tracemalloc

MODELS = ("v1", "v2", "vgg16")


def run(size: int, batch: int) -> None:
    import mbcost

    for name in MODELS:
        mbcost.analyze(name, size, batch)


def timed(size: int, batch: int, repeats: int = 30) -> list[float]:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        run(size, batch)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    start = time.perf_counter()
    import torch  # noqa: F401

    import mbcost  # noqa: F401

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    run(224, 1)  # first call builds the meta-device models once (cached afterwards)
    cold_s = time.perf_counter() - start

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    small = timed(224, 1)
    big = timed(2048, 64)
    tracemalloc.start()  # a separate pass: tracing slows Python down, so it is not timed
    run(2048, 64)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    med_small, med_big = statistics.median(small), statistics.median(big)
    print(f"import mbcost + torch:                 {import_s * 1e3:8.1f} ms (once per process)")
    print(f"first analysis (builds meta models):   {cold_s * 1e3:8.1f} ms (once per process)")
    print(f"v1+v2+vgg16 @224, batch 1:  median {med_small * 1e3:6.2f} ms  (min {min(small) * 1e3:.2f}, "
          f"max {max(small) * 1e3:.2f}, n={len(small)})  target <= 30 ms: {'OK' if med_small <= 0.030 else 'MISSED'}")
    print(f"v1+v2+vgg16 @2048, batch 64: median {med_big * 1e3:6.2f} ms  (min {min(big) * 1e3:.2f}, "
          f"max {max(big) * 1e3:.2f}, n={len(big)})  ratio {med_big / med_small:.2f}x, target <= 2x: "
          f"{'OK' if med_big <= 2 * med_small else 'MISSED'}")
    print(f"peak RSS rise during the 2048/b64 runs: {rss_after - rss_before:6.1f} MB; Python allocations peak "
          f"(tracemalloc) {traced_peak / 1e6:.2f} MB; target <= 50 MB: "
          f"{'OK' if rss_after - rss_before <= 50 else 'MISSED'}")


if __name__ == "__main__":
    main()
