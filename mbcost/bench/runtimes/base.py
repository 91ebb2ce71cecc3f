"""What every runtime adapter is: the request (``RuntimeJob``), the prepared runtime (``Prepared``), the
adapter's interface (``Runtime``) and the helpers they share (timed phases, quiet preparation, errors).

An adapter turns a built float32 ``nn.Module`` (eval mode, on the CPU) and its inputs into a ``Prepared``
runtime. Every one-time step (export, quantize, compile, load) happens in ``prepare`` and is timed by
named phase; ``Prepared.call`` then runs the network once on inputs bound beforehand (that call is what
``mbcost.bench.timer.measure`` times, for every runtime alike), and ``Prepared.run`` runs it on other
inputs for the output check. ``Prepared.settings`` says what was set on the runtime (threads above all),
and under ``not_set`` what the runtime offers no setting for.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mbcost.bench.errors import BenchError
from mbcost.cost.precision import PRECISIONS
from mbcost.errors import UsageError, first_line

if TYPE_CHECKING:
    from mbcost.bench.devices import Device

__all__ = [
    "EXTRA", "PRECISIONS", "ExportError", "ForwardArgs", "Phases", "Prepared", "Runtime", "RuntimeJob",
    "RuntimeUnavailable", "calibrate", "first_line", "installed", "package_version", "positional", "quiet", "to_numpy",
    "to_tensors",
]

log = logging.getLogger(__name__)

#: The optional dependency group holding every runtime's package.
EXTRA = "mbcost[runtimes]"

#: Loggers of the toolchains that talk while they export, quantize or compile (quieted to errors meanwhile).
NOISY_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir", "nncf", "openvino", "torch.export", "torch._export",
                 "torch._dynamo", "torch._inductor", "torch.fx", "torch.utils._pytree", "torch.utils.cpp_extension",
                 "torchao", "executorch", "root")


@dataclass(frozen=True)
class ForwardArgs:
    """Real input tensors for a forward call: positional and keyword."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class RuntimeUnavailable(UsageError):
    """A runtime whose package is not installed, or that cannot run what was asked (precision, dtype, device)."""


class ExportError(BenchError):
    """A runtime's toolchain could not export, convert, quantize or load the model: its reason, one line."""


@dataclass(frozen=True)
class RuntimeJob:
    """What a runtime is asked to prepare.

    ``calibration`` holds the int8 quantizer's input batches (float32, CPU; empty for float32);
    ``workdir`` a directory for files the toolchain needs on disk (ONNX models).
    """

    precision: str
    threads: int
    device: Device
    dtype: str = "float32"
    channels_last: bool = False
    flush_denormal: bool = True
    calibration: tuple[ForwardArgs, ...] = ()
    workdir: str | None = None

    @property
    def int8(self) -> bool:
        return self.precision == "int8"


@dataclass
class Prepared:
    """A runtime ready to run one network.

    ``call()`` runs it on the bound inputs (the timed call); ``run(inputs)`` on other inputs, returning
    every output as a float32 CPU tensor (for the output check); ``phases`` the one-time costs in seconds;
    ``settings`` what was set; ``model`` and ``inputs`` the torch module and its bound inputs, whose
    activation peak can be measured (eager and compile); ``close()`` restores what ``prepare`` changed in the
    process (a thread pool, a quantized engine).
    ``grad_free``: ``call`` should run under ``torch.inference_mode`` (a torch module's call).
    """

    call: Callable[[], Any]
    run: Callable[[ForwardArgs], list[Any]]
    phases: dict[str, float]
    settings: dict[str, Any]
    model: Any = None
    inputs: ForwardArgs | None = None
    close: Callable[[], None] | None = None
    grad_free: bool = True


class Runtime:
    """One runtime adapter. Subclasses set the class attributes and implement ``prepare``.

    ``packages`` maps each precision it has a path for to the importable packages it needs; ``dist`` names the
    distribution whose version is recorded.
    """

    name: str = ""
    title: str = ""
    packages: dict[str, tuple[str, ...]] = {}
    dist: str = "torch"
    dtypes: tuple[str, ...] = ("float32",)
    devices: tuple[str, ...] = ("cpu",)
    #: How an int8 network is made here (shown in the table's notes and the README).
    int8_toolchain: str = ""
    #: What ``prepare`` does, for the help text.
    summary: str = ""

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions it has a path for: those ``packages`` names."""
        return tuple(p for p in PRECISIONS if p in self.packages)

    def version(self) -> str:
        if self.dist == "torch":
            import torch

            return torch.__version__  # with its build tag (+cpu, +cu130)
        return package_version(self.dist)

    def missing(self, precision: str) -> list[str]:
        """The packages this precision needs that cannot be imported here."""
        return [p for p in self.packages.get(precision, ()) if not installed(p)]

    def refusal(self, precision: str, dtype: str, device: Device, mode: str = "inference") -> str | None:
        """Why this runtime cannot measure the request (one line), or ``None``."""
        if precision not in self.precisions:
            return f"--runtime {self.name} has no {precision} path (it runs {', '.join(self.precisions)})"
        if dtype != "float32" and dtype not in self.dtypes:
            return f"--runtime {self.name} runs float32 networks (and int8); --dtype {dtype} is for eager and compile"
        if precision == "int8" and dtype != "float32":
            return f"--precision int8 quantizes the float32 network; drop --dtype {dtype}"
        if device.type not in self.devices:
            return f"--runtime {self.name} runs on {', '.join(self.devices)} here, not {device.type}"
        if mode != "inference":
            return f"--mode {mode} times a training step, on the eager runtime only (not {self.name})"
        missing = self.missing(precision)
        if missing:
            return (f"--runtime {self.name}{' int8' if precision == 'int8' else ''} needs {', '.join(missing)}, "
                    f"which is not installed: pip install '{EXTRA}'")
        return None

    def prepare(self, model: Any, inputs: ForwardArgs, job: RuntimeJob) -> Prepared:
        raise NotImplementedError


def installed(package: str) -> bool:
    """Whether ``package`` can be imported (found without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def package_version(dist: str) -> str:
    """The installed version of a distribution, read from its metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


class Phases:
    """One-time costs by phase: ``with phases("export"): ...`` adds the seconds spent to ``seconds["export"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    @contextlib.contextmanager
    def step(self, name: str | None, failed: str) -> Iterator[None]:
        """One toolchain step: timed as phase ``name`` (untimed when ``None``), ``quiet``, and any failure but an
        ``ExportError`` (the toolchains raise many kinds) turned into ``ExportError("{failed}: {reason}")``."""
        try:
            with self(name) if name else contextlib.nullcontext(), quiet():
                yield
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"{failed}: {first_line(exc, 300)}") from exc


def _flush_c_stdio() -> None:
    """Flush C's stdio buffers (a toolchain's printf), so they land where the descriptors point now."""
    import ctypes

    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence a toolchain while it exports, quantizes, compiles or loads: Python warnings, its loggers
    (raised to errors), its prints and progress bars, and what its C++ code writes to the standard
    descriptors (ExecuTorch's and OpenVINO's logs). What was said is kept in the debug log, so mbcost's
    output stays its own lines. Do not log from inside (it would be swallowed too)."""
    sink = tempfile.TemporaryFile(mode="w+b")
    text = io.StringIO()
    loggers = [logging.getLogger(n) for n in NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    saved: list[int] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        for fd in (1, 2):
            saved.append(os.dup(fd))
            os.dup2(sink.fileno(), fd)
    except OSError:  # no real descriptors (an embedded interpreter): Python-level silence only
        pass
    try:
        for lg in loggers:
            if lg.name != "root":
                lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            warnings.simplefilter("ignore")
            yield
    finally:
        _flush_c_stdio()
        for fd, copy in zip((1, 2), saved, strict=False):
            os.dup2(copy, fd)
            os.close(copy)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        sink.seek(0)
        said = sink.read().decode("utf-8", "replace") + text.getvalue()
        sink.close()
        if said.strip():
            log.debug("runtime toolchain output:\n%s", said)


def positional(inputs: ForwardArgs, runtime: str) -> tuple[Any, ...]:
    """The inputs as one positional tuple; keyword inputs are refused (exported graphs take positions)."""
    if inputs.kwargs:
        raise ExportError(f"--runtime {runtime} takes models with positional inputs only (got keyword input(s) "
                          f"{', '.join(inputs.kwargs)})")
    return inputs.args


def to_numpy(values: Sequence[Any]) -> list[Any]:
    """Tensors as contiguous NumPy arrays (what ONNX Runtime and OpenVINO are fed)."""
    return [v.detach().cpu().contiguous().numpy() for v in values]


def to_tensors(out: Any) -> list[Any]:
    """Every tensor of an output (a tensor, a NumPy array, or nested tuples, lists, dicts, dataclasses of
    them), in order, as float32 CPU tensors (integer outputs kept as they are)."""
    import numpy as np
    import torch
    from torch.utils._pytree import tree_leaves

    leaves = []
    for v in tree_leaves(out):
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.array(v))
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            leaves.append(v.float() if v.is_floating_point() else v)
    return leaves



def calibrate(prepared: Any, job: RuntimeJob, runtime: str | None = None) -> None:
    """Run a quantizer's observed module on every calibration batch, without grad; ``runtime``: the name of a
    runtime whose graph takes positional inputs only (``positional``)."""
    import torch

    with torch.no_grad():
        for b in job.calibration:
            prepared(*(positional(b, runtime) if runtime else b.args), **({} if runtime else b.kwargs))
