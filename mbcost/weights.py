"""Dead kernels in a trained checkpoint: per layer and per layer category.

A *kernel* is one output channel's filter (``weight[o]`` of a convolution or linear layer: for a
depthwise 3x3 convolution, 9 weights; a transposed convolution stores ``[in, out / groups, *k]``,
so its output channel ``o`` of group ``g`` is ``weight[g*in/groups:(g+1)*in/groups, o % (out/groups)]``).
A kernel is *dead* when its L1 norm is below ``threshold`` times the median L1 norm of its layer's
kernels, or exactly zero. The MobileNet material often says
that depthwise kernels die in training (most of their weights go to zero) and that MobileNetV2's
design suffers less; ``kernel_health`` measures it on real weights.

Checkpoints are read with ``torch.load(..., weights_only=True)``: tensors and plain containers
only, never code. A checkpoint must match the model's ``state_dict`` keys and shapes.

Example:
    >>> report = checkpoint_health("v1.pt", "v1")          # doctest: +SKIP
    >>> report.categories["dwconv"].dead_fraction           # doctest: +SKIP
"""

from __future__ import annotations

import errno
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mbcost.errors import SpecError, UsageError, first_line

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mbcost.zoo.spec import ModelSource

__all__ = [
    "DEFAULT_THRESHOLD", "KERNEL_CATEGORIES", "CategoryHealth", "CheckpointError", "KernelHealth", "LayerHealth",
    "checkpoint_health", "kernel_health", "load_state_dict", "match_state_dict", "parse_weights_option",
]

#: Dead below this fraction of the layer's median kernel L1 norm.
DEFAULT_THRESHOLD = 1e-3
#: The categories reported (``mbcost.cost.result.categorize``'s names); other layers have no kernels.
KERNEL_CATEGORIES: tuple[str, ...] = ("conv", "dwconv", "pwconv", "linear")
#: Mismatches named in an error message.
SHOWN_MISMATCHES = 3
#: Keys under which training scripts commonly nest the state_dict.
NESTED_KEYS = ("state_dict", "model_state_dict", "model")


class CheckpointError(UsageError):
    """A checkpoint is missing, unreadable, needs code to load, or does not match the model."""


@dataclass(frozen=True)
class LayerHealth:
    """One convolution or linear layer: its kernels (output channels) and weights."""

    name: str
    category: str
    kernels: int
    dead_kernels: int
    weights: int
    zero_weights: int

    @property
    def dead_fraction(self) -> float:
        return self.dead_kernels / self.kernels if self.kernels else 0.0

    @property
    def zero_fraction(self) -> float:
        return self.zero_weights / self.weights if self.weights else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "category": self.category, "kernels": self.kernels,
                "dead_kernels": self.dead_kernels, "dead_fraction": self.dead_fraction,
                "zero_fraction": self.zero_fraction}


@dataclass(frozen=True)
class CategoryHealth:
    """The layers of one category together (kernels and weights summed)."""

    kernels: int = 0
    dead_kernels: int = 0
    weights: int = 0
    zero_weights: int = 0

    @property
    def dead_fraction(self) -> float | None:
        return self.dead_kernels / self.kernels if self.kernels else None

    @property
    def zero_fraction(self) -> float | None:
        return self.zero_weights / self.weights if self.weights else None

    def to_dict(self) -> dict[str, Any]:
        return {"kernels": self.kernels, "dead_kernels": self.dead_kernels, "dead_fraction": self.dead_fraction,
                "zero_fraction": self.zero_fraction}


@dataclass(frozen=True)
class KernelHealth:
    """Dead kernels and zero weights of one checkpoint of one model."""

    model: str
    checkpoint: str
    threshold: float
    layers: tuple[LayerHealth, ...]

    @property
    def categories(self) -> dict[str, CategoryHealth]:
        out: dict[str, CategoryHealth] = {}
        for cat in KERNEL_CATEGORIES:
            rows = [(la.kernels, la.dead_kernels, la.weights, la.zero_weights) for la in self.layers
                    if la.category == cat]
            out[cat] = CategoryHealth(*map(sum, zip(*rows, strict=True)))  # column sums (no layer: zeros)
        return out

    def to_dict(self) -> dict[str, Any]:
        """``{"layers": [...], "categories": {...}}``: the ``mbcost weights --format json`` document."""
        return {"layers": [la.to_dict() for la in self.layers],
                "categories": {c: h.to_dict() for c, h in self.categories.items()}}


def parse_weights_option(text: str) -> tuple[str, Path]:
    """``"v1=ckpt.pt"`` -> ``("v1", Path("ckpt.pt"))`` (``mbcost report --weights``).

    Raises:
        SpecError: no ``=``, or an empty spec or path.
    """
    spec, sep, path = (text or "").partition("=")
    if not sep or not spec.strip() or not path.strip():
        raise SpecError(f"--weights {text!r}: expected MODEL=CHECKPOINT, e.g. --weights v1=v1.pt")
    return spec.strip(), Path(path.strip())


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict with ``torch.load(path, map_location="cpu", weights_only=True)``.

    A dict nesting it under ``state_dict``, ``model_state_dict`` or ``model`` is unwrapped, and a
    ``module.`` prefix on every key (``DataParallel``) is removed.

    Raises:
        CheckpointError: the file is missing or unreadable, is not a torch checkpoint, needs code to
            unpickle (refused: weights only), or holds no dict of tensors.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file" if not path.exists()
                              else f"checkpoint {path}: not a file")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4...": the error below says what failed
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found:
            raise CheckpointError(f"checkpoint {path} needs code to unpickle ({found.group(1)}); mbcost loads weights "
                                  "only (torch.load weights_only=True): save model.state_dict() instead") from None
        found = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        why = f" (torch's weights-only unpickler: {found.group(1).strip()[:200]})" if found else ""
        raise CheckpointError(f"checkpoint {path} is not a readable torch checkpoint{why}") from None
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # torch's reader on a file that is not a zip or legacy checkpoint
            raise CheckpointError(f"checkpoint {path} is not a readable torch checkpoint") from None
        raise CheckpointError(f"checkpoint {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, zipfile and pickle errors for damaged files
        raise CheckpointError(f"checkpoint {path} is not a readable torch checkpoint "
                              f"({type(exc).__name__}: {first_line(exc)[:200]})") from None
    if isinstance(obj, Mapping):
        for key in NESTED_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} holds no state_dict (a dict of tensors); got "
                              f"{type(obj).__name__}")
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def match_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], *, name: str = "the model",
                     checkpoint: str = "checkpoint") -> None:
    """Check that ``state`` has exactly ``model``'s state_dict keys and shapes.

    Raises:
        CheckpointError: naming the first missing keys, unexpected keys and shape mismatches.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {list(state[k].shape)} (model {list(expected[k])})" for k in expected
              if k in state and tuple(state[k].shape) != expected[k]]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" and {len(items) - SHOWN_MISMATCHES} more" if len(items) > SHOWN_MISMATCHES else ""
            parts.append(f"{label}: {', '.join(items[:SHOWN_MISMATCHES])}{more}")
    raise CheckpointError(f"{checkpoint} does not match {name}: {'; '.join(parts)}")


def kernel_health(model: nn.Module, state: Mapping[str, torch.Tensor], *, threshold: float = DEFAULT_THRESHOLD,
                  model_name: str = "", checkpoint: str = "") -> KernelHealth:
    """Dead kernels and zero weights of every Conv and Linear layer of ``model``, read from ``state``.

    ``model`` gives the layers and their categories (it may live on the meta device); the values
    come from ``state`` (``match_state_dict`` it first).
    """
    import torch
    from torch import nn

    from mbcost.cost.result import categorize

    if not threshold >= 0:
        raise SpecError(f"--threshold must be >= 0 (got {threshold})")
    layers: list[LayerHealth] = []
    for path, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            category = categorize("conv", groups=module.groups, in_channels=module.in_channels,
                                  kernel=tuple(module.kernel_size))
        elif isinstance(module, nn.Linear):
            category = "linear"
        else:
            continue
        weight = state.get(f"{path}.weight" if path else "weight")
        if weight is None:
            continue
        w = _kernels(weight.detach().to(torch.float64), module)
        norms = w.abs().sum(dim=1)
        bar = threshold * float(norms.median()) if norms.numel() else 0.0
        dead = int(((norms < bar) | (norms == 0)).sum())
        layers.append(LayerHealth(name=path, category=category, kernels=int(w.shape[0]), dead_kernels=dead,
                                  weights=int(w.numel()), zero_weights=int((w == 0).sum())))
    return KernelHealth(model=model_name, checkpoint=checkpoint, threshold=threshold, layers=tuple(layers))


def _kernels(weight: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """One row per output channel (the layer's kernels), its weights along the row."""
    from torch import nn

    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        groups = module.groups
        per_in, per_out = weight.shape[0] // groups, weight.shape[1]
        # [in, out/g, *k] -> [g, in/g, out/g, k...] -> [g, out/g, in/g, k...] -> [out, in/g * k...]
        return (weight.reshape(groups, per_in, per_out, -1).permute(0, 2, 1, 3)
                .reshape(groups * per_out, -1))
    return weight.reshape(weight.shape[0], -1)


def checkpoint_health(checkpoint: str | Path, spec: str | ModelSource, *, threshold: float = DEFAULT_THRESHOLD,
                      num_classes: int = 1000) -> KernelHealth:
    """Load ``checkpoint`` (``torch.save(model.state_dict(), path)``, weights only), check it against the model of
    ``spec`` (``"v2@0.5"``...; ``num_classes`` for a zoo model), measure its kernels (dead below ``threshold`` x the
    layer's median kernel L1 norm). ``CheckpointError``, ``SpecError``: one line, the CLI's exit 2."""
    from mbcost.zoo.spec import resolve_source

    parsed = resolve_source(spec)
    if not threshold >= 0:
        raise SpecError(f"--threshold must be >= 0 (got {threshold})")
    state = load_state_dict(checkpoint)
    model = parsed.build(num_classes=num_classes, device="meta")
    match_state_dict(model, state, name=parsed.label, checkpoint=f"checkpoint {checkpoint}")
    return kernel_health(model, state, threshold=threshold, model_name=parsed.label, checkpoint=str(checkpoint))
