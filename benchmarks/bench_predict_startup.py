"""How long ``mbcost predict`` takes in a fresh process (issue 19: "well under a second"), next to torch's import.

Each figure is a whole process, started and waited for, in interleaved rounds (every contender once per repeat,
``--repeats`` per round); the figure is the lowest per-round median, so a slow spell of a shared VM falls on all
of them alike:

  predict (cached)   ``mbcost predict MODEL --threads N --format json`` whose analysis is in the analysis cache
                     (``mbcost.predict.cache``): a repeat prediction, or a zoo model after ``mbcost calibrate``;
  predict (first)    the same with an empty analysis cache: the model is analysed on the meta device, torch imported;
  import torch       ``python -c "import torch"``: what any prediction that analyses a model pays first;
  python             ``python -c "pass"``: the interpreter's own start.

It needs this device's profile (``mbcost calibrate --threads N``) or ``--profile FILE``; the cached figure does
not depend on the profile's numbers. mbcost is byte-compiled first (as an installed package is), and the runs
write no bytecode. Prints a table and the cached prediction's share of ``import torch``.

    python benchmarks/bench_predict_startup.py [--models v2,timm:mobilenetv3_small_100] [--threads 1]
                                               [--rounds 5] [--repeats 3] [--profile FILE]
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _seconds(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="v2,torchvision:resnet18")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", default=None)
    args = ap.parse_args()

    compileall.compile_dir(os.path.join(ROOT, "mbcost"), quiet=1)
    cache = tempfile.mkdtemp(prefix="mbcost-startup-")
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONDONTWRITEBYTECODE": "1", "MBCOST_ANALYSIS_DIR": cache}
    extra = ["--profile", args.profile] if args.profile else []

    def predict_cmd(model: str) -> list[str]:
        return [sys.executable, "-m", "mbcost", "predict", model, "--threads", str(args.threads), "--format",
                "json", *extra]

    contenders: dict[str, tuple[list[str], dict[str, str]]] = {}
    for model in args.models.split(","):
        probe = subprocess.run(predict_cmd(model), env=env, cwd=ROOT, capture_output=True, text=True)
        if probe.returncode:
            raise SystemExit(f"mbcost predict {model}: {probe.stderr.strip().splitlines()[-1]}")
        contenders[f"predict {model} (cached)"] = (predict_cmd(model), env)
        # an analysis cache of its own, emptied before each run: the first prediction of the model
        contenders[f"predict {model} (first)"] = (predict_cmd(model), {**env, "MBCOST_ANALYSIS_DIR": ""})
    contenders["import torch"] = ([sys.executable, "-c", "import torch"], env)
    contenders["python"] = ([sys.executable, "-c", "pass"], env)

    rounds: dict[str, list[list[float]]] = {name: [] for name in contenders}
    rng = random.Random(0)
    for r in range(args.rounds):
        per: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeats):
            order = list(contenders)
            rng.shuffle(order)
            for name in order:
                cmd, cenv = contenders[name]
                if cenv["MBCOST_ANALYSIS_DIR"] == "":
                    cenv = {**cenv, "MBCOST_ANALYSIS_DIR": tempfile.mkdtemp(prefix="mbcost-first-")}
                per[name].append(_seconds(cmd, cenv))
        for name in contenders:
            rounds[name].append(per[name])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    best = {name: min(statistics.median(x) for x in rounds[name]) for name in contenders}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nwhole processes, lowest per-round median of {args.repeats} over {args.rounds} interleaved rounds; "
          f"{os.cpu_count()} CPUs, load average {load:.2f}, --threads {args.threads}\n")
    print(f"| {'command':<44} | seconds | / import torch |")
    print(f"|{'-' * 46}|--------:|---------------:|")
    for name, s in best.items():
        print(f"| {name:<44} | {s:7.3f} | {s / best['import torch']:14.2f} |")


if __name__ == "__main__":
    main()
