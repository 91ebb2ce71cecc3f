"""Inputs for int8 calibration and for the output check, and the BatchNorm re-estimation of int8 runs.

Calibration inputs are ``CALIBRATION_BATCHES`` seeded batches of random normal inputs (the int8 latency is
representative, its accuracy is not), or the batches of a ``--calibration`` file (``load_calibration``).
A random network's activations shrink layer by layer until int8 would round them to zero, so
``reestimate_batchnorm`` first sets every BatchNorm's running statistics to those of the calibration
inputs, for the int8 network and its float32 reference alike (docs/runtimes.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mbcost.errors import SpecError

if TYPE_CHECKING:
    from mbcost.bench.runtimes.base import ForwardArgs
    from mbcost.cost.result import ModelCost

__all__ = [
    "CALIBRATION_BATCHES", "CALIBRATION_SUFFIXES", "CHECK_SAMPLES", "Calibration", "load_calibration",
    "random_calibration", "random_inputs", "reestimate_batchnorm",
]

#: Random calibration batches by default.
CALIBRATION_BATCHES = 8
#: Input sets the output check runs (the first is also the timed input).
CHECK_SAMPLES = 4
CALIBRATION_SUFFIXES = (".npy", ".npz", ".pt", ".pth")


@dataclass(frozen=True)
class Calibration:
    """The int8 quantizer's input batches and where they came from (``random``, or a file's name)."""

    batches: tuple[ForwardArgs, ...]
    source: str

    @property
    def random(self) -> bool:
        return self.source == "random"

    def describe(self) -> str:
        n = len(self.batches)
        if self.random:
            return f"random: {n} batches of random normal inputs"
        return f"file: {n} batch{'es' if n != 1 else ''} from {self.source}"


def random_inputs(cost: ModelCost, seed: int) -> ForwardArgs:
    """Inputs of ``cost.inputs``' shapes on the CPU, drawn from a generator seeded with ``seed``: floating
    ones float32 standard normal, integer ones 0 or 1, bools random."""
    import torch

    from mbcost.bench.runtimes.base import ForwardArgs

    gen = torch.Generator().manual_seed(seed)

    def make(spec: Any) -> Any:
        dt = getattr(torch, spec.dtype)
        if dt.is_floating_point:
            return torch.randn(spec.shape, generator=gen, dtype=torch.float32)
        x = torch.randint(0, 2, spec.shape, generator=gen)
        return x.bool() if dt == torch.bool else x.to(dt)

    specs = cost.inputs
    return ForwardArgs(tuple(make(i) for i in specs if not i.name), {i.name: make(i) for i in specs if i.name})


def random_calibration(cost: ModelCost, batches: int = CALIBRATION_BATCHES, seed: int = 1000) -> Calibration:
    """``batches`` seeded random input sets (seeds apart from the check's, so no check input was seen)."""
    return Calibration(tuple(random_inputs(cost, seed + i) for i in range(batches)), "random")


def _samples(path: Path) -> list[Any]:
    """Every array or tensor a calibration file holds, as float32 tensors."""
    import numpy as np
    import torch

    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            found: list[Any] = [np.load(path, allow_pickle=False)]
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                found = [z[k] for k in z.files]
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                obj = list(obj.values())
            found = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    except (OSError, ValueError, RuntimeError, EOFError) as exc:
        raise SpecError(f"--calibration {path}: cannot read it ({str(exc).splitlines()[0][:200]})") from None
    out = []
    for item in found:
        t = torch.from_numpy(np.ascontiguousarray(item)) if isinstance(item, np.ndarray) else item
        if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.dtype in (torch.uint8, torch.int8)):
            raise SpecError(f"--calibration {path}: holds a {type(item).__name__}"
                            f"{' of ' + str(t.dtype) if isinstance(t, torch.Tensor) else ''}; expected float arrays")
        out.append(t.float())
    if not out:
        raise SpecError(f"--calibration {path}: holds no arrays")
    return out


def _dims(shape: Any) -> str:
    return "x".join(str(d) for d in shape)


def load_calibration(path: str | Path, cost: ModelCost) -> Calibration:
    """Calibration batches for ``cost``'s input from a ``.npy``, ``.npz`` or ``.pt`` file.

    Each array is one batch of the input's full shape (``batch x C x H x W``), or a stack of samples of its
    per-sample shape (``N x C x H x W`` with any N, or one ``C x H x W`` sample), cut into batches of the
    measured batch size (a remainder smaller than a batch is left out).

    Raises:
        SpecError: a missing or unreadable file, another suffix, a model with several inputs, arrays of
            another shape, or fewer samples than one batch.
    """
    from mbcost.bench.runtimes.base import ForwardArgs

    path = Path(path)
    if path.suffix.lower() not in CALIBRATION_SUFFIXES:
        raise SpecError(f"--calibration {path}: expected a {', '.join(CALIBRATION_SUFFIXES)} file")
    if not path.is_file():
        raise SpecError(f"--calibration {path} does not exist (no such file)")
    if len(cost.inputs) != 1 or cost.inputs[0].name:
        raise SpecError(f"--calibration takes batches of a model's one positional input; {cost.label} takes "
                        f"{len(cost.inputs)} input(s)")
    shape = tuple(cost.inputs[0].shape)
    batch, sample = shape[0], shape[1:]
    stacked = []
    for t in _samples(path):
        if tuple(t.shape) == sample:
            t = t.unsqueeze(0)
        if tuple(t.shape[1:]) != sample:
            raise SpecError(f"--calibration {path}: an array of shape {_dims(t.shape)} does not fit {cost.label}'s "
                            f"input {_dims(shape)} (samples of {_dims(sample)})")
        stacked.extend(t.unbind(0))
    if len(stacked) < batch:
        raise SpecError(f"--calibration {path}: {len(stacked)} sample(s), fewer than one batch of {batch}")
    import torch

    batches = tuple(ForwardArgs((torch.stack(stacked[i:i + batch]),), {})
                    for i in range(0, len(stacked) - batch + 1, batch))
    return Calibration(batches, path.name)


def reestimate_batchnorm(model: Any, batches: tuple[ForwardArgs, ...]) -> bool:
    """Set every tracking BatchNorm's running mean and variance to those of ``batches`` (all of them at
    once, in one forward with only the BatchNorm layers in train mode); the model is changed in place and
    left in eval mode. Returns whether there was any BatchNorm to re-estimate."""
    import torch

    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or not batches:
        return False
    args = tuple(torch.cat([b.args[i] for b in batches]) if isinstance(batches[0].args[i], torch.Tensor)
                 else batches[0].args[i] for i in range(len(batches[0].args)))
    kwargs = {k: torch.cat([b.kwargs[k] for b in batches]) if isinstance(v, torch.Tensor) else v
              for k, v in batches[0].kwargs.items()}
    momenta = [m.momentum for m in norms]
    model.eval()
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: the statistics of exactly these inputs
            m.train()
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    return True
