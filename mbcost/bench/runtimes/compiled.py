"""``compile``: ``torch.compile`` with the inductor backend (``mbcost bench --compile`` is an alias).

float: the module in the run's dtype compiled with default settings; the one-time ``compile`` phase is
the first call, which traces and compiles. Dynamo's caches are reset first, so each model compiles
from cold (a later model of the same class would otherwise recompile against a limit and, past it,
silently run eager).

int8: PT2E static quantization for inductor: ``torch.export``, torchao's ``X86InductorQuantizer``
(``prepare_pt2e``, calibration, ``convert_pt2e``), then ``torch.compile`` with inductor's freezing on
(weights folded and packed as int8 constants, as the quantizer's lowering expects).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mbcost.bench.runtimes.base import Phases, Prepared, Runtime, RuntimeJob, calibrate
from mbcost.bench.runtimes.eager import convert_inputs, to_job, torch_prepared, torch_threads

if TYPE_CHECKING:
    from mbcost.bench.runtimes.base import ForwardArgs

__all__ = ["COMPILE", "Compiled"]


class Compiled(Runtime):
    name = "compile"
    title = "torch.compile (inductor)"
    packages = {"float32": (), "int8": ("torchao",)}
    dtypes = ("float32", "bfloat16", "float16")
    devices = ("cpu", "cuda")
    int8_toolchain = "PT2E: torchao X86InductorQuantizer (prepare_pt2e / convert_pt2e), inductor with freezing"
    summary = "torch.compile, inductor backend; one-time cost = the first (compiling) call"

    def refusal(self, precision: str, dtype: str, device: Any, mode: str = "inference") -> str | None:
        reason = super().refusal(precision, dtype, device, mode)
        if reason is None and precision == "int8" and device.type != "cpu":
            return "--runtime compile --precision int8 uses the x86 inductor quantizer, on the CPU only"
        return reason

    def prepare(self, model: Any, inputs: ForwardArgs, job: RuntimeJob) -> Prepared:
        import torch

        phases = Phases()
        settings = {**torch_threads(job), "backend": "inductor", "inductor_freezing": job.int8}
        torch._dynamo.reset()
        x = convert_inputs(inputs, job)
        with phases.step(None, "torch.compile failed"):  # dynamo and inductor raise many kinds
            model = self._quantize(model, x, job, phases) if job.int8 else to_job(model, job)
        with phases.step("compile", "torch.compile failed"), torch._inductor.config.patch(freezing=job.int8), \
                torch.inference_mode():
            compiled = torch.compile(model)
            compiled(*x.args, **x.kwargs)
        return torch_prepared(compiled, x, job, phases, settings)

    @staticmethod
    def _quantize(model: Any, x: ForwardArgs, job: RuntimeJob, phases: Phases) -> Any:
        import torch

        failed = "compile int8 (torch.export + PT2E x86 quantizer)"
        with phases.step("export", failed):
            graph = torch.export.export(model, x.args, x.kwargs).module()
        with phases.step("quantize", failed):
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            quantizer = xiq.X86InductorQuantizer()
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
            prepared = prepare_pt2e(graph, quantizer)
            calibrate(prepared, job)
            return convert_pt2e(prepared)


COMPILE = Compiled()
