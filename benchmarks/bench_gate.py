"""Benchmark: ``mbcost gate`` end to end over the whole zoo (v1, v1-conv, v2, vgg16, vgg16-bn at 224).

Target (issue 6): under 3 s wall clock per run, a fresh process each time, as CI runs it (the
project's own ``[tool.mbcost.gate]`` config and committed baseline). For scale, the bare
``import torch`` time is measured too: it is most of the figure.

Run: python benchmarks/bench_gate.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 3.0


def timed(cmd: list[str], expect: int = 0) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one fresh process. CPU time is what the run costs
    whatever else the machine is doing; wall time is what CI waits."""
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    after = os.times()
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return elapsed, cpu


def describe(label: str, runs: list[tuple[float, float]]) -> str:
    walls, cpus = [w for w, _ in runs], [c for _, c in runs]
    return (f"{label}: wall median {statistics.median(walls):.2f} s (min {min(walls):.2f}, max {max(walls):.2f}); "
            f"CPU median {statistics.median(cpus):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    exe = shutil.which("mbcost")
    gate = [exe, "gate"] if exe else [sys.executable, "-m", "mbcost", "gate"]

    timed(gate)  # warm the OS file cache once, as a CI step after the tests would find it
    gate_runs, torch_runs = [], []
    for _ in range(args.runs):  # interleaved, so both see the same machine load
        gate_runs.append(timed(gate))
        torch_runs.append(timed([sys.executable, "-c", "import torch"]))

    med = statistics.median(w for w, _ in gate_runs)
    print(f"command: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(gate))} (cwd {ROOT.name}/, "
          f"{args.runs} runs, a fresh process each; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs)")
    print(describe("mbcost gate, whole zoo @224", gate_runs)
          + f"; target < {TARGET_S:.0f} s wall: {'OK' if med < TARGET_S else 'MISSED'}")
    print(describe("bare 'import torch'         ", torch_runs))


if __name__ == "__main__":
    main()
