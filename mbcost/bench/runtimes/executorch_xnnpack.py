"""``executorch``: ``torch.export``, lowered to ExecuTorch with the XNNPACK delegate, run by
``executorch.runtime`` (the runtime PyTorch ships to phones, here through its Python bindings).

Phases: ``export`` (``torch.export.export``), ``lower`` (``to_edge_transform_and_lower`` with the
``XnnpackPartitioner``, then ``to_executorch``), ``load`` (the program and its ``forward`` method).
Threads: XNNPACK's work runs on ExecuTorch's process-wide thread pool, resized to the run's thread count
before the program is loaded (``_unsafe_reset_threadpool``, the bindings' only handle on it: the delegate
keeps the pool it was initialised with, so resizing under a loaded method leaves it a freed pool) and
restored after the method is released;
the count the pool reports is what is recorded. Denormal flushing is not settable (XNNPACK's threads are
its own).

int8: PT2E with ExecuTorch's ``XNNPACKQuantizer`` (symmetric, per-channel weights; ``prepare_pt2e``,
calibration, ``convert_pt2e`` from torchao), exported again and lowered the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mbcost.bench.runtimes.base import Phases, Prepared, Runtime, RuntimeJob, calibrate, positional, quiet, to_tensors

if TYPE_CHECKING:
    from mbcost.bench.runtimes.base import ForwardArgs

__all__ = ["EXECUTORCH", "ExecuTorch"]


class ExecuTorch(Runtime):
    name = "executorch"
    title = "ExecuTorch + XNNPACK"
    packages = {"float32": ("executorch",), "int8": ("executorch", "torchao")}
    dist = "executorch"
    int8_toolchain = "PT2E: ExecuTorch XNNPACKQuantizer (symmetric, per-channel) + torchao prepare_pt2e / convert_pt2e"
    summary = "torch.export + to_edge_transform_and_lower(XnnpackPartitioner) + executorch.runtime"

    def prepare(self, model: Any, inputs: ForwardArgs, job: RuntimeJob) -> Prepared:
        import torch

        args = positional(inputs, self.name)
        phases = Phases()
        with quiet():
            from executorch.extension.pybindings import portable_lib as bindings

            prior = bindings._threadpool_get_thread_count()
        if job.int8:
            model = self._quantize(model, args, job, phases)
        with phases.step("export", "torch.export failed"):
            exported = torch.export.export(model, args)
        with phases.step("lower", "ExecuTorch lowering (XNNPACK) failed"):
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

            program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
        with quiet():  # before loading: the XNNPACK delegate keeps the pool it is initialised with
            if prior != job.threads:  # a new pool would leave methods loaded earlier on a freed one
                bindings._unsafe_reset_threadpool(job.threads)
            applied = bindings._threadpool_get_thread_count()

        def restore_pool() -> None:
            with quiet():
                if prior != applied:
                    bindings._unsafe_reset_threadpool(prior)

        try:
            with phases.step("load", "ExecuTorch could not load the lowered program"):
                from executorch.runtime import Runtime as EtRuntime

                buffer = program.buffer  # the loaded program reads this memory: it lives as long as the method
                loaded = EtRuntime.get().load_program(buffer)
                method = loaded.load_method("forward")
        except Exception:
            restore_pool()
            raise
        settings: dict[str, Any] = {"threadpool_threads": applied, "delegate": "XnnpackPartitioner",
                                    "not_set": ["inter_op_threads (none: one thread pool)", "denormals (XNNPACK's "
                                                "threads are its own)"]}
        if job.int8:
            settings["quantization"] = "XNNPACKQuantizer symmetric, per-channel"
        x = list(args)

        def call() -> Any:
            return method.execute(x)

        def run(other: ForwardArgs) -> list[Any]:
            return to_tensors(list(method.execute(list(positional(other, self.name)))))

        def close() -> None:
            nonlocal method, loaded, buffer
            method = loaded = buffer = None  # the delegate goes before the pool it runs on is replaced
            restore_pool()

        return Prepared(call=call, run=run, phases=phases.seconds, settings=settings, close=close)

    @staticmethod
    def _quantize(model: Any, args: tuple[Any, ...], job: RuntimeJob, phases: Phases) -> Any:
        import torch

        with phases.step("quantize", "ExecuTorch int8 (torch.export + XNNPACKQuantizer) failed"):
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            quantizer = XNNPACKQuantizer()
            quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
            prepared = prepare_pt2e(torch.export.export(model, args).module(), quantizer)
            calibrate(prepared, job, "executorch")
            return convert_pt2e(prepared)


EXECUTORCH = ExecuTorch()
