"""Models from other libraries, by name: ``torchvision:NAME``, ``timm:NAME``, ``hf:ID_OR_PATH``.

Each is built with no pretrained weights (``torchvision.models.get_model(NAME, weights=None)``, and
``weights_backbone=None`` for the builders that take it,
``timm.create_model(NAME, pretrained=False)``, transformers' ``AutoModel.from_config`` of
``AutoConfig.from_pretrained(ID_OR_PATH)``: a local directory holding ``config.json`` needs no network).
The libraries are optional: a missing one is one line naming what to install.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import TYPE_CHECKING, Any

from mbcost.errors import AnalysisError, SpecError, UnknownModelError, first_line
from mbcost.io import quiet

if TYPE_CHECKING:
    from torch import nn

__all__ = ["KINDS", "build", "check", "default_inputs"]

#: prefix -> (the library it needs, how to install it)
KINDS: dict[str, tuple[str, str]] = {
    "torchvision": ("torchvision", "pip install torchvision"),
    "timm": ("timm", "pip install 'mbcost[timm]'"),
    "hf": ("transformers", "pip install 'mbcost[hf]'"),
}
#: Default sequence length of a text model's token ids (less when its position embeddings are fewer).
TEXT_LENGTH = 128


def _library(kind: str) -> Any:
    module, install = KINDS[kind]
    try:
        with quiet():
            return importlib.import_module(module)
    except ImportError:
        raise UnknownModelError(f"{kind}:NAME models need {module}, which is not installed; {install}") from None


def _known(kind: str, name: str, names: list[str]) -> None:
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(f'{kind}:{c}' for c in close)}?" if close else ""
        raise UnknownModelError(f"unknown {kind} model {name!r}{hint}")


def check(kind: str, name: str) -> Any:
    """Refuse a name the library does not know (with the closest it does); for ``hf``, read and return the
    config once (what ``build`` needs)."""
    lib = _library(kind)
    if not name:
        raise UnknownModelError(f"no model named after '{kind}:'; e.g. {kind}:{'resnet18' if kind != 'hf' else 'DIR'}")
    if kind == "torchvision":
        _known(kind, name, lib.models.list_models())
        return None
    if kind == "timm":
        if not lib.is_model(name):
            _known(kind, name, lib.list_models())
        return None
    try:
        with quiet():
            return lib.AutoConfig.from_pretrained(name)
    except Exception as exc:  # a missing directory, no network, an unknown model_type: one line
        raise UnknownModelError(f"cannot read the config of hf:{name} ({first_line(exc)}); a local directory "
                                "holding config.json works offline") from None


def build(kind: str, name: str, config: Any, num_classes: int) -> nn.Module:
    """A new module with random weights, on the current default device (``torch.device`` as a context)."""
    lib = _library(kind)
    classes = {} if num_classes == 1000 else {"num_classes": num_classes}
    try:
        with quiet():
            if kind == "torchvision":  # segmentation and detection load an ImageNet backbone unless told not to
                if "weights_backbone" in inspect.signature(lib.models.get_model_builder(name)).parameters:
                    classes["weights_backbone"] = None
                return lib.models.get_model(name, weights=None, **classes)
            if kind == "timm":
                return lib.create_model(name, pretrained=False, **classes)
            return lib.AutoModel.from_config(config)
    except Exception as exc:  # the library can fail in any way (not buildable on meta...): one line
        raise AnalysisError(f"{kind}:{name} could not be built: {type(exc).__name__}: {first_line(exc)}") from exc


def default_inputs(kind: str, module: nn.Module, batch: int) -> dict[str, Any] | tuple[int, ...] | None:
    """What the model gets when no input is given: a timm model's own image size; a Hugging Face model's
    ``pixel_values`` (``config.image_size``, ``num_channels``) and ``input_ids`` with their ``attention_mask``
    (``1 x 128`` int64, fewer when ``max_position_embeddings`` is), as its ``forward`` takes them; else ``None``
    (the caller's 224)."""
    if kind == "timm":
        size = getattr(module, "pretrained_cfg", {}).get("input_size")
        return (batch, *size) if size else None
    if kind != "hf":
        return None
    config = module.config
    takes = inspect.signature(module.forward).parameters
    inputs: dict[str, Any] = {}
    if "pixel_values" in takes:
        vision = getattr(config, "vision_config", None) or config
        size = getattr(vision, "image_size", 224)
        h, w = (size, size) if isinstance(size, int) else tuple(size)[-2:]
        inputs["pixel_values"] = (batch, getattr(vision, "num_channels", 3), h, w)
    if "input_ids" in takes:
        text = getattr(config, "text_config", None) or config
        tokens = f"{batch}x{min(TEXT_LENGTH, getattr(text, 'max_position_embeddings', None) or TEXT_LENGTH)}:int64"
        inputs.update({n: tokens for n in ("input_ids", "attention_mask", "decoder_input_ids") if n in takes
                       and (n != "decoder_input_ids" or getattr(config, "is_encoder_decoder", False))})
    main = getattr(module, "main_input_name", "input_ids")
    if main not in inputs:
        raise SpecError(f"hf: no default input for {type(module).__name__}'s {main!r}; give it with --input "
                            f"{main}=SHAPE[:DTYPE]")
    return inputs
