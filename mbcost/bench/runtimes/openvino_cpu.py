"""``openvino``: the model converted by ``openvino.convert_model`` and run by OpenVINO's CPU plugin.

Conversion goes through ``torch.export`` (``convert_model`` of the ``ExportedProgram``; static shapes).
The compiled model: ``INFERENCE_NUM_THREADS`` = the run's threads, the ``LATENCY`` performance hint (one
stream), ``INFERENCE_PRECISION_HINT`` f32 (on CPUs with bf16 or AMX the plugin would otherwise run a float
network in bf16), denormals optimisation on when mbcost flushes denormals for PyTorch. The settings the
plugin reports back after compiling are recorded, not the ones asked for.

int8: NNCF's ``nncf.quantize`` of the converted model (post-training, default preset: symmetric int8,
per-channel weights, fast bias correction) on the calibration batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mbcost.bench.runtimes.base import Phases, Prepared, Runtime, RuntimeJob, positional, to_numpy, to_tensors

if TYPE_CHECKING:
    from mbcost.bench.runtimes.base import ForwardArgs

__all__ = ["OPENVINO", "OpenVino"]

#: Properties read back from the compiled model into the record.
REPORTED = ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT",
            "CPU_DENORMALS_OPTIMIZATION")


def _plain(value: Any) -> Any:
    """A property's value as JSON holds it: numbers and flags as they are, an element type by its name (f32)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    name = getattr(value, "to_string", None) or getattr(value, "get_type_name", None)
    return name() if callable(name) else str(value)


class OpenVino(Runtime):
    name = "openvino"
    title = "OpenVINO (CPU plugin)"
    packages = {"float32": ("openvino",), "int8": ("openvino", "nncf")}
    dist = "openvino"
    int8_toolchain = "NNCF nncf.quantize (post-training, default preset) of the converted model"
    summary = "openvino.convert_model of torch.export's program + CPU plugin (LATENCY hint, f32)"

    def prepare(self, model: Any, inputs: ForwardArgs, job: RuntimeJob) -> Prepared:
        import openvino as ov
        import torch

        args = positional(inputs, self.name)
        phases = Phases()
        with phases.step("convert", "openvino.convert_model (via torch.export) failed"):
            converted = ov.convert_model(torch.export.export(model, args))
        if job.int8:
            converted = self._quantize(converted, job, phases)
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": job.threads, "PERFORMANCE_HINT": "LATENCY",
                                  "INFERENCE_PRECISION_HINT": "f32"}
        if job.flush_denormal:
            config["CPU_DENORMALS_OPTIMIZATION"] = True
        with phases.step("compile", "OpenVINO could not compile the model for the CPU"):
            compiled = ov.Core().compile_model(converted, "CPU", config)
        settings: dict[str, Any] = {}
        for key in REPORTED:
            try:
                value = compiled.get_property(key)
            except RuntimeError:
                continue
            settings[key] = _plain(value)
        if job.int8:
            settings["quantization"] = "nncf.quantize, default preset"
        request = compiled.create_infer_request()
        arrays = to_numpy(args)
        for i, a in enumerate(arrays):
            request.set_input_tensor(i, ov.Tensor(a))
        outputs = len(compiled.outputs)
        checker = compiled.create_infer_request()

        def run(other: ForwardArgs) -> list[Any]:
            checker.infer({i: a for i, a in enumerate(to_numpy(positional(other, self.name)))})
            return to_tensors([checker.get_output_tensor(i).data.copy() for i in range(outputs)])

        return Prepared(call=request.infer, run=run, phases=phases.seconds, settings=settings, grad_free=False)

    @staticmethod
    def _quantize(converted: Any, job: RuntimeJob, phases: Phases) -> Any:
        with phases.step("quantize", "nncf.quantize failed"):
            import nncf

            items = [to_numpy(positional(b, "openvino")) for b in job.calibration]
            data = nncf.Dataset([a[0] if len(a) == 1 else tuple(a) for a in items])
            return nncf.quantize(converted, data, subset_size=len(items))


OPENVINO = OpenVino()
