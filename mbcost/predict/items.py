"""What calibration times: grid points and whole models prepared on a runtime (``TimedItem``: the call, and a
point's kind and features or a model's kernels, from their own analysis), and the default timer, interleaved
rounds (``timing``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mbcost.predict.fusion import kernels_of
from mbcost.predict.grid import GridPoint, build_point

__all__ = ["KERNEL_TIMING", "MODEL_TIMING", "TimeFn", "TimedItem", "default_time_fn", "model_item", "point_item"]

#: Whole models are timed in longer blocks and more rounds than kernels.
MODEL_TIMING = {"rounds": 5, "blocks": 3, "min_block_s": 0.05}
KERNEL_TIMING = {"rounds": 3, "blocks": 3, "min_block_s": 0.002}


@dataclass(frozen=True)
class TimedItem:
    """A prepared call to time: a grid point (``kind``, ``features``) or a whole model (``kernels``: its
    kernels' (kind, features), for a fake timer)."""

    label: str
    call: Callable[[], Any]
    kind: str = ""
    features: tuple[float, ...] = ()
    kernels: tuple[tuple[str, tuple[float, ...]], ...] = ()
    is_model: bool = False
    macs: int = 0


#: Times a batch of items: seconds per call, one per item (the default: interleaved rounds on the real clock).
TimeFn = Callable[[Sequence[TimedItem]], list[float]]


def default_time_fn(threads: int) -> TimeFn:
    from mbcost.predict.timing import time_interleaved

    def run(items: Sequence[TimedItem]) -> list[float]:
        import torch

        settings = MODEL_TIMING if items and items[0].is_model else KERNEL_TIMING
        with torch.inference_mode():
            return time_interleaved([i.call for i in items], threads=threads, **settings)

    return run


def _onnx_point_call(module: Any, inputs: tuple[Any, ...], threads: int) -> Callable[[], Any]:
    """An ONNX Runtime session for one grid point, with ``bench``'s session settings (denormals as zero).
    A grid point is exported with the TorchScript exporter: a single op exports in a tenth of a second, where
    the dynamo exporter (the adapter's, for whole models) takes seconds; the graph ONNX Runtime runs is the same."""
    import io

    import onnxruntime as ort
    import torch

    from mbcost.bench.runtimes.base import quiet, to_numpy
    from mbcost.bench.runtimes.onnxrt import session_options

    buf = io.BytesIO()
    with quiet():
        torch.onnx.export(module, inputs, buf, dynamo=False)
    session = ort.InferenceSession(buf.getvalue(), session_options(threads, True), providers=["CPUExecutionProvider"])
    feeds = dict(zip([i.name for i in session.get_inputs()], to_numpy(inputs), strict=True))

    def call() -> Any:
        return session.run(None, feeds)

    return call


def _prepare(adapter: Any, module: Any, inputs: tuple[Any, ...], job: Any) -> Callable[[], Any]:
    """The runtime's timed call for ``module`` on ``inputs`` (positional tensors)."""
    import tempfile
    from dataclasses import replace

    from mbcost.bench.runtimes.base import ForwardArgs

    with tempfile.TemporaryDirectory(prefix="mbcost-calibrate-") as workdir:
        return adapter.prepare(module, ForwardArgs(inputs, {}), replace(job, workdir=workdir)).call


def point_item(point: GridPoint, adapter: Any, job: Any, fused: bool) -> TimedItem:
    import torch

    from mbcost.cost.analyze import analyze
    from mbcost.predict.kinds import features, model_kind

    module, shapes = build_point(point, fused=fused)
    cost = analyze(module, ["x".join(map(str, s)) for s in shapes], execute="meta")
    head = next((lay for lay in cost.layers if model_kind(lay) == point.kind), None)
    if head is None:
        raise RuntimeError(f"grid point {point} analysed to no {point.kind} layer")
    inputs = tuple(torch.randn(*s) for s in shapes)
    call = _onnx_point_call(module, inputs, job.threads) if adapter.name == "onnxruntime" else \
        _prepare(adapter, module, inputs, job)
    return TimedItem(label=str(point.to_dict()), call=call, kind=point.kind, features=features(head))


def model_item(spec: str, adapter: Any, job: Any, runtime: str) -> TimedItem:
    """A whole model (a spec), built with random weights in eval mode and prepared on the runtime, with its
    kernels' kinds and features from its analysis."""
    import torch

    from mbcost.cost.analyze import analyze
    from mbcost.zoo.spec import build_model, resolve_source

    source = resolve_source(spec)
    cost = analyze(source, None, 1)
    kernels = tuple((k.kind, k.features) for k in kernels_of(cost.layers, runtime))
    inputs = tuple(torch.randn(*i.shape) for i in cost.inputs if not i.name)
    call = _prepare(adapter, build_model(source).eval(), inputs, job)
    return TimedItem(label=spec, call=call, kernels=kernels, is_model=True, macs=int(cost.macs))
