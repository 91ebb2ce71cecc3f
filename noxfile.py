"""nox sessions. They run in the active environment (``python=False``), which the README's
install command prepares; so ``nox -s tests`` tests exactly what is installed."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The test suite (CUDA tests skip without a GPU; the browser test skips without Chromium)."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=False)
def zoo_counters(session: nox.Session) -> None:
    """Every counter's preset against its live library on every torchvision classification model (the
    tests marked slow, left out of the default run: about 7 minutes on 2 CPUs)."""
    session.run("python", "-m", "pytest", "-m", "slow", "tests/test_torchvision_counters.py", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff over the package, tests and benchmarks."""
    session.run("ruff", "check", "mbcost", "tests", "benchmarks", "noxfile.py")


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Benchmarks: print figures, assert nothing (speed is measured here, never in tests)."""
    session.run("python", "benchmarks/bench_engine.py")
    session.run("python", "benchmarks/bench_analyze.py")
    session.run("python", "benchmarks/bench_counters.py")
    session.run("python", "benchmarks/bench_gate.py")
    session.run("python", "benchmarks/bench_report.py")
    session.run("python", "benchmarks/bench_latency_repeat.py")
    session.run("python", "benchmarks/bench_memory.py", "--no-explain")
    session.run("python", "benchmarks/bench_train_memory.py")


@nox.session(python=False)
def engine(session: nox.Session) -> None:
    """The engine against fvcore, thop, ptflops and FlopCounterMode on torchvision models, and its time
    per op (needs: pip install -e '.[bench]')."""
    session.run("python", "benchmarks/bench_engine.py", *session.posargs)


@nox.session(python=False)
def predict(session: nox.Session) -> None:
    """Predicted against measured latency on 20 models calibration never saw, after calibrating this machine
    (about 12 + 2 minutes; run on a quiet machine; posargs go to both, e.g. --threads 1 --runtime onnxruntime)."""
    session.run("python", "-m", "mbcost", "calibrate", *session.posargs)
    session.run("python", "benchmarks/bench_predict.py", *session.posargs)
    session.run("python", "benchmarks/bench_predict_startup.py")


@nox.session(python=False)
def cuda(session: nox.Session) -> None:
    """On a GPU machine: the CUDA-marked tests, then a CUDA benchmark saved as JSON Lines."""
    session.run("python", "-m", "pytest", "-m", "cuda", "tests/test_bench_devices.py", "tests/test_bench_cli.py",
                "tests/test_bench_memory.py")
    session.run("mbcost", "bench", "--device", "cuda", "--dtype", "float16", "--batch", "1,32",
                "--save", "results-cuda.jsonl")


@nox.session(python=False)
def docs(session: nox.Session) -> None:
    """The documentation site, as CI builds it (pip install -e ".[docs]"); the site goes to site/."""
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(python=False)
def gate(session: nox.Session) -> None:
    """Model-size gate: params (exact, per layer) and MACs of the zoo vs mbcost-baseline.json."""
    session.run("python", "-m", "mbcost", "gate", *session.posargs)
