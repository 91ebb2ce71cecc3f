"""``onnxruntime``: the model exported to ONNX and run by an ONNX Runtime ``InferenceSession``.

Export: ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``-based exporter, the default since
torch 2.9; it needs onnxscript), static shapes, to a file. The session: all graph optimisations,
``intra_op_num_threads`` = the run's threads, ``inter_op_num_threads`` = 1 with sequential execution,
denormals as zero when mbcost flushes them for PyTorch. The CPU execution provider on the CPU; the CUDA
provider on CUDA, inputs and outputs bound on the GPU (IO binding) so the timed call is the network,
not host-device copies.

int8: ``onnxruntime.quantization.quantize_static`` after its ``quant_pre_process`` (shape inference and
graph optimisation): QDQ format, per-channel weights, ONNX Runtime's default types (int8 weights and
activations), min-max calibration on the calibration batches.
"""

from __future__ import annotations

import os
from functools import partial
from typing import TYPE_CHECKING, Any

from mbcost.bench.runtimes.base import (
    ExportError,
    Phases,
    Prepared,
    Runtime,
    RuntimeJob,
    first_line,
    positional,
    quiet,
    to_numpy,
    to_tensors,
)

if TYPE_CHECKING:
    from mbcost.bench.runtimes.base import ForwardArgs

__all__ = ["ONNXRUNTIME", "OnnxRuntime", "export_onnx"]


def export_onnx(model: Any, args: tuple[Any, ...], path: str, phases: Phases) -> list[str]:
    """Export ``model`` on ``args`` to ONNX at ``path`` with the dynamo exporter (phase ``export``); returns
    the graph's input names.

    Raises:
        ExportError: the exporter's own reason (the op it could not convert, the graph break), one line.
    """
    import torch

    try:
        with phases("export"), quiet():
            program = torch.onnx.export(model, args, dynamo=True, verbose=False)
            program.save(path)
            return [v.name for v in program.model.graph.inputs]
    except Exception as exc:  # the exporter raises its own error types, wrapping torch.export's
        raise ExportError(f"torch.onnx.export (dynamo) failed: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """The exporter's reason: the deepest cause's first line names the op or the graph break, where the
    outer exception only says which exporter step failed."""
    seen, hops = exc, 0
    while seen.__cause__ is not None and hops < 20:
        seen, hops = seen.__cause__, hops + 1
    return first_line(seen)



def session_options(threads: int, denormals_as_zero: bool) -> Any:
    """mbcost's ONNX Runtime session settings (also the latency predictor's, so that calibration times what
    ``bench`` runs): ``threads`` intra-op threads, sequential, every graph optimisation, errors-only logging."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if denormals_as_zero:
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    return opts

class OnnxRuntime(Runtime):
    name = "onnxruntime"
    title = "ONNX Runtime"
    packages = {"float32": ("onnx", "onnxscript", "onnxruntime"), "int8": ("onnx", "onnxscript", "onnxruntime")}
    dist = "onnxruntime"
    devices = ("cpu", "cuda")
    int8_toolchain = "onnxruntime.quantization.quantize_static: QDQ, per-channel weights, min-max calibration"
    summary = "torch.onnx.export (dynamo) + InferenceSession (CPU provider; CUDA provider on CUDA)"

    def version(self) -> str:
        from mbcost.bench.runtimes.base import package_version

        v = package_version("onnxruntime")
        return v if v != "not installed" else package_version("onnxruntime-gpu")

    def refusal(self, precision: str, dtype: str, device: Any, mode: str = "inference") -> str | None:
        reason = super().refusal(precision, dtype, device, mode)
        if reason is None and device.type == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return ("--runtime onnxruntime --device cuda: this onnxruntime has no CUDA execution provider "
                        "(pip install onnxruntime-gpu)")
        return reason

    def prepare(self, model: Any, inputs: ForwardArgs, job: RuntimeJob) -> Prepared:
        import onnxruntime as ort

        args = positional(inputs, self.name)
        phases = Phases()
        workdir = job.workdir or "."
        path = os.path.join(workdir, "model.onnx")
        exported = export_onnx(model, args, path, phases)
        if len(exported) != len(args):
            raise ExportError(f"the exported ONNX model takes {len(exported)} input(s), the model {len(args)}")
        if job.int8:
            path = self._quantize(path, exported, job, phases)
        denormals = job.flush_denormal and job.device.type == "cpu"
        opts = session_options(job.threads, denormals)
        cuda = job.device.type == "cuda"
        index = job.device.index or 0
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": index})] if cuda else ["CPUExecutionProvider"]
        with phases.step("load", "onnxruntime could not load the exported model"):
            session = ort.InferenceSession(path, opts, providers=providers)
        names = [i.name for i in session.get_inputs()]
        if len(names) != len(args):
            raise ExportError(f"the exported ONNX model takes {len(names)} input(s), the model {len(args)}")
        settings: dict[str, Any] = {
            "intra_op_num_threads": job.threads, "inter_op_num_threads": 1, "execution_mode": "sequential",
            "graph_optimization_level": "all", "denormal_as_zero": denormals, "providers": session.get_providers(),
            "exporter": "torch.onnx.export(dynamo=True)"}
        if job.int8:
            settings.update(quantization="quantize_static QDQ per-channel, int8 weights and activations, minmax")
        feeds = dict(zip(names, to_numpy(args), strict=True))

        def run(other: ForwardArgs) -> list[Any]:
            return to_tensors(session.run(None, dict(zip(names, to_numpy(positional(other, self.name)), strict=True))))

        call: Any = partial(session.run, None, feeds)
        if cuda:
            binding = session.io_binding()
            for name, value in feeds.items():
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", index))
            for out in session.get_outputs():
                binding.bind_output(out.name, "cuda", index)
            settings["io_binding"] = "inputs and outputs on the GPU"
            call = partial(session.run_with_iobinding, binding)  # returns once the GPU work is done

        return Prepared(call=call, run=run, phases=phases.seconds, settings=settings, grad_free=False)

    @staticmethod
    def _quantize(path: str, names: list[str], job: RuntimeJob, phases: Phases) -> str:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        base = os.path.splitext(path)[0]
        pre, out = f"{base}.pre.onnx", f"{base}.int8.onnx"
        batches = [dict(zip(names, to_numpy(positional(b, "onnxruntime")), strict=True)) for b in job.calibration]

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter(batches)

            def get_next(self) -> dict[str, Any] | None:
                return next(self.items, None)

        with phases.step("quantize", "onnxruntime quantize_static failed"):
            quant_pre_process(path, pre)
            quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
        return out


ONNXRUNTIME = OnnxRuntime()
