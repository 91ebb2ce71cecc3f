"""``eager``: the module itself, called by PyTorch op by op (the default runtime).

float: the module in the run's dtype (and channels-last when asked) on the device. int8: static
post-training quantization with torch.ao's FX graph mode and the ``x86`` quantized engine (oneDNN and
FBGEMM kernels: ``prepare_fx`` with the x86 default qconfig mapping, calibration, ``convert_fx``), on
CPUs where torch has that engine; the module must be symbolically traceable.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from mbcost.bench.runtimes.base import Phases, Prepared, Runtime, RuntimeJob, calibrate, to_tensors

if TYPE_CHECKING:
    from mbcost.bench.runtimes.base import ForwardArgs

__all__ = ["EAGER", "Eager", "convert_inputs", "to_job", "torch_prepared", "torch_threads"]


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


def to_job(model: Any, job: RuntimeJob) -> Any:
    """The float module on the job's device, in its dtype, channels-last when asked."""
    import torch

    model = model.to(job.device.torch_device, dtype=getattr(torch, job.dtype))
    return model.to(memory_format=torch.channels_last) if job.channels_last else model


def torch_prepared(module: Any, x: ForwardArgs, job: RuntimeJob, phases: Phases, settings: dict[str, Any], *,
                   close: Any = None) -> Prepared:
    """A torch module's ``Prepared`` (eager and compile): ``call`` on the bound inputs ``x``, ``run`` on other inputs
    converted as ``x`` was, the module and ``x`` kept for the activation peak."""
    import torch

    def call() -> Any:
        return module(*x.args, **x.kwargs)

    def run(other: ForwardArgs) -> list[Any]:
        o = convert_inputs(other, job)
        with torch.inference_mode():
            return to_tensors(module(*o.args, **o.kwargs))

    return Prepared(call=call, run=run, phases=phases.seconds, settings=settings, model=module, inputs=x, close=close)


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
        phases = Phases()
        settings = torch_threads(job)
        close = None
        if job.int8:
            model, close = self._quantize(model, inputs, job, phases)
            settings["quantized_engine"] = "x86"
        else:
            model = to_job(model, job)
        return torch_prepared(model, convert_inputs(inputs, job), job, phases, settings, close=close)

    @staticmethod
    def _quantize(model: Any, inputs: ForwardArgs, job: RuntimeJob, phases: Phases) -> tuple[Any, Any]:
        import torch

        prior = torch.backends.quantized.engine

        def close() -> None:
            torch.backends.quantized.engine = prior

        try:
            with phases.step("quantize", "eager int8 (torch.ao FX, x86)"):
                from torch.ao.quantization import get_default_qconfig_mapping
                from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

                torch.backends.quantized.engine = "x86"
                prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), tuple(inputs.args))
                calibrate(prepared, job)
                return convert_fx(prepared), close
        except Exception:
            close()
            raise


EAGER = Eager()
