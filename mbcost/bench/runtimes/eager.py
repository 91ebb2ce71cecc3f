"""``eager``: the module itself, called by PyTorch op by op (the default runtime).

float: the module in the run's dtype (and channels-last when asked) on the device. int8: static
post-training quantization with torch.ao's FX graph mode and the ``x86`` quantized engine (oneDNN and
FBGEMM kernels: ``prepare_fx`` with the x86 default qconfig mapping, calibration, ``convert_fx``), on
CPUs where torch has that engine; the module must be symbolically traceable.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from mbcost.bench.runtimes.base import ExportError, Phases, Prepared, Runtime, RuntimeJob, first_line, quiet, to_tensors

if TYPE_CHECKING:
    from mbcost.bench.runtimes.base import ForwardArgs

__all__ = ["EAGER", "Eager", "convert_inputs", "torch_threads"]


def convert_inputs(inputs: ForwardArgs, job: RuntimeJob) -> ForwardArgs:
    """The float32 CPU inputs on the job's device, floating ones in its dtype, 4-D ones channels-last when asked."""
    import torch

    from mbcost.bench.runtimes.base import ForwardArgs

    dtype = getattr(torch, job.dtype)

    def conv(x: Any) -> Any:
        if not isinstance(x, torch.Tensor):
            return x
        x = x.to(job.device.torch_device, dtype=dtype if x.is_floating_point() else x.dtype)
        if job.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    return ForwardArgs(tuple(conv(a) for a in inputs.args), {k: conv(v) for k, v in inputs.kwargs.items()})


def torch_threads(job: RuntimeJob) -> dict[str, Any]:
    """What PyTorch's thread settings are during the measurement (intra-op set by the timer; inter-op read)."""
    import torch

    return {"intra_op_threads": job.threads, "inter_op_threads": torch.get_num_interop_threads(),
            "flush_denormal": job.flush_denormal and job.device.type == "cpu",
            "not_set": ["inter_op_threads (torch sets it once per process, before any parallel work)"]}


class Eager(Runtime):
    name = "eager"
    title = "PyTorch eager"
    packages = {"float32": (), "int8": ()}
    precisions = ("float32", "int8")
    dtypes = ("float32", "bfloat16", "float16")
    devices = ("cpu", "cuda")
    int8_toolchain = "torch.ao FX graph mode, x86 quantized engine (prepare_fx / convert_fx)"
    summary = "the module called op by op (today's path)"

    def refusal(self, precision: str, dtype: str, device: Any, mode: str = "inference") -> str | None:
        if mode != "inference" and precision == "int8":
            return f"--mode {mode} times a float training step; --precision int8 is for inference"
        reason = super().refusal(precision, dtype, device, "inference")  # eager alone also trains
        if reason or precision != "int8":
            return reason
        if device.type != "cpu":
            return "--runtime eager --precision int8 runs torch's x86 quantized engine, on the CPU only"
        import torch

        if "x86" not in torch.backends.quantized.supported_engines:
            engines = ", ".join(e for e in torch.backends.quantized.supported_engines if e != "none") or "none"
            return (f"--runtime eager --precision int8 needs torch's x86 quantized engine, which this build or CPU "
                    f"lacks (engines here: {engines})")
        return None

    def prepare(self, model: Any, inputs: ForwardArgs, job: RuntimeJob) -> Prepared:
        import torch

        phases = Phases()
        settings = torch_threads(job)
        if job.int8:
            model, close = self._quantize(model, inputs, job, phases)
            settings["quantized_engine"] = "x86"
        else:
            model = model.to(job.device.torch_device, dtype=getattr(torch, job.dtype))
            if job.channels_last:
                model = model.to(memory_format=torch.channels_last)
            close = None
        x = convert_inputs(inputs, job)

        def call() -> Any:
            return model(*x.args, **x.kwargs)

        def run(other: ForwardArgs) -> list[Any]:
            o = convert_inputs(other, job)
            with torch.inference_mode():
                return to_tensors(model(*o.args, **o.kwargs))

        return Prepared(call=call, run=run, phases=phases.seconds, settings=settings, model=model, inputs=x,
                        close=close)

    @staticmethod
    def _quantize(model: Any, inputs: ForwardArgs, job: RuntimeJob, phases: Phases) -> tuple[Any, Any]:
        import torch

        prior = torch.backends.quantized.engine
        try:
            with phases("quantize"), quiet():
                from torch.ao.quantization import get_default_qconfig_mapping
                from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

                torch.backends.quantized.engine = "x86"
                prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"),
                                      tuple(inputs.args))
                with torch.no_grad():
                    for b in job.calibration:
                        prepared(*b.args, **b.kwargs)
                quantized = convert_fx(prepared)
        except Exception as exc:  # FX tracing and conversion raise many kinds
            torch.backends.quantized.engine = prior
            raise ExportError(f"eager int8 (torch.ao FX, x86): {first_line(exc)}") from exc

        def close() -> None:
            torch.backends.quantized.engine = prior

        return quantized, close


EAGER = Eager()
