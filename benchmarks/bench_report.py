"""Benchmark: `mbcost report` for v1, v2 and vgg16 at 224, without measurements.

Targets (issue 5): under 5 seconds for the whole command, torch and plotly imports included, and a
file under 10 MB. Times the real command in a fresh interpreter (what a user waits for), then the
in-process phases (gather, figures, page) to show where the time goes.

Run: python benchmarks/bench_report.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 5.0
TARGET_BYTES = 10_000_000


def command(out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mbcost", "report", "--input", "224", "--models", "v1,v2,vgg16", "--no-bench",
                    "--out", str(out)], check=True, capture_output=True)
    return time.perf_counter() - start


def phases(out: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    from mbcost.report.data import gather
    from mbcost.report.figures import report_figures
    from mbcost.report.html import write_report

    data = gather("v1,v2,vgg16", 224)
    t1 = time.perf_counter()
    figures = report_figures(data)
    t2 = time.perf_counter()
    write_report(data, out, figures)
    t3 = time.perf_counter()
    return {"gather (analysis + grids)": t1 - t0, "figures": t2 - t1, "page (html + write)": t3 - t2}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.html"
        runs = [command(out) for _ in range(3)]
        size = out.stat().st_size
        median = statistics.median(runs)
        verdict = "ok" if median < TARGET_S else "MISSED"
        print(f"mbcost report --models v1,v2,vgg16 (fresh process): median {median:.2f} s of "
              f"{', '.join(f'{r:.2f}' for r in runs)} s  [target < {TARGET_S:g} s: {verdict}]")
        print(f"file size: {size / 1e6:.2f} MB  [target < {TARGET_BYTES / 1e6:g} MB: "
              f"{'ok' if size < TARGET_BYTES else 'MISSED'}]")
        import torch  # noqa: F401  (imported first so the phases below exclude it)

        for name, seconds in phases(Path(tmp) / "p.html").items():
            print(f"  {name:26s} {seconds:.2f} s")


if __name__ == "__main__":
    main()
