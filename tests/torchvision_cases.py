"""Reference cases from torchvision's published weights metadata, for tests.

Every builder of ``torchvision.models`` (classification), ``.segmentation``, ``.video`` and ``.detection``
(not quantization, not optical_flow) is paired with every entry of its weights enum. For each pair we
work out, from the weights entry and the builder's source, how to build the *same architecture* the
published weights belong to **without** loading them (``weights=None``), and which input reproduces the
published ``meta["_ops"]`` (GMACs) and ``meta["num_params"]``.

Nothing numeric is copied into this file: :func:`reference_cases` reads torchvision's metadata at call
time. torchvision is imported inside functions only, so this module imports without it.

Usage::

    for case in reference_cases():
        model = build(case)                      # meta device by default
        x = torch.empty(case.input_shape, device="meta")

Checked against ``torch.utils.flop_counter.FlopCounterMode`` (independent of mbcost; GMACs =
``round(flops / 2 / 1e9, 3)``) with torch 2.14 / torchvision 0.29: every classification, segmentation and
video case matches ``_ops`` and ``num_params`` exactly on the meta device. Detection models are data
dependent (``torch.nonzero`` in the RPN / post-processing has no meta kernel) and must run on a real
device; their ``num_params`` match (with FrozenBatchNorm2d, see :func:`build`); the one-stage ones
(RetinaNet, FCOS, SSD, SSDlite) reproduce ``_ops`` on CPU, the R-CNNs do not (``ops_gmacs`` is None).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
from dataclasses import dataclass, field
from typing import Any

TASK_MODULES = {
    "classification": "torchvision.models",
    "segmentation": "torchvision.models.segmentation",
    "video": "torchvision.models.video",
    "detection": "torchvision.models.detection",
}

# Frames of a video clip. No weights field records the clip length the video ``_ops`` were measured at
# (``min_temporal_size`` is None, 1, 14 or 16); 16 frames reproduce every entry (FlopCounterMode), e.g.
# S3D at its min_temporal_size 14 gives 16.14 GMACs instead of the published 17.979.
VIDEO_FRAMES = 16


@dataclass(frozen=True)
class Case:
    builder: str
    weights: str
    task: str
    build_kwargs: dict = field(hash=False)
    input_shape: tuple[int, ...]
    num_params: int | None
    ops_gmacs: float | None
    note: str = ""

    @property
    def id(self) -> str:
        """A pytest id: ``resnet50.IMAGENET1K_V2``."""
        return f"{self.builder}.{self.weights}"


# --------------------------------------------------------------------------------------------------
# build-kwarg rules: what each builder overrides when it is given ``weights``
# --------------------------------------------------------------------------------------------------


def _source(builder) -> str:
    return inspect.getsource(inspect.getmodule(builder))


def _builder_source(builder) -> str:
    """The builder's source plus that of the module-level helpers it calls (``fasterrcnn_mobilenet_v3_large_fpn``
    -> ``_fasterrcnn_mobilenet_v3_large_fpn``, ``resnet50`` -> ``_resnet``)."""
    function = inspect.unwrap(builder)
    module = inspect.getmodule(function)
    parts = [inspect.getsource(function)]
    for name in function.__code__.co_names:
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and helper.__module__ == module.__name__:
            parts.append(inspect.getsource(helper))
    return "\n".join(parts)


def _num_classes(builder, weights) -> dict:
    # Every builder: ``_ovewrite_named_param(kwargs, "num_classes", len(weights.meta["categories"]))``
    # (``_ovewrite_value_param`` in segmentation/detection). vgg.py guards it with
    # ``if weights.meta["categories"] is not None`` (VGG16 IMAGENET1K_FEATURES has no categories and keeps
    # the default 1000-way classifier).
    categories = weights.meta.get("categories")
    return {} if categories is None else {"num_classes": len(categories)}


def _num_keypoints(builder, weights) -> dict:
    # detection/keypoint_rcnn.py: ``num_keypoints = _ovewrite_value_param("num_keypoints", num_keypoints,
    # len(weights.meta["keypoint_names"]))``.
    names = weights.meta.get("keypoint_names")
    return {} if names is None else {"num_keypoints": len(names)}


def _input_size(builder, weights) -> dict:
    # Models with position embeddings / fixed attention grids take their input size from ``min_size``:
    #   vision_transformer.py ``_vision_transformer``: ``image_size = weights.meta["min_size"][0]``
    #   maxvit.py ``_maxvit``:                         ``input_size = weights.meta["min_size"]``
    #   video/mvit.py ``_mvit``:                       ``spatial_size = weights.meta["min_size"]``,
    #                                                  ``temporal_size = weights.meta["min_temporal_size"]``
    # (the SWAG_E2E ViT weights are 384/512/518 px models, not 224 ones.)
    # The public mvit_v1_b / mvit_v2_s pass ``spatial_size=(224, 224), temporal_size=16`` to ``_mvit``
    # themselves (so the override there only checks them, and passing them again is a TypeError): a size
    # the public builder already fixes is left out.
    module = builder.__module__
    meta = weights.meta
    if module == "torchvision.models.vision_transformer":
        sizes = {"image_size": meta["min_size"][0]}
    elif module == "torchvision.models.maxvit":
        sizes = {"input_size": tuple(meta["min_size"])}
    elif module == "torchvision.models.video.mvit":
        sizes = {"spatial_size": tuple(meta["min_size"]), "temporal_size": meta["min_temporal_size"]}
    else:
        return {}
    fixed = inspect.getsource(builder)
    return {k: v for k, v in sizes.items() if not re.search(rf"\b{k}=", fixed)}


def _auxiliary_heads(builder, weights) -> dict:
    # googlenet.py / inception.py build with ``aux_logits=True, transform_input=True, init_weights=False``
    # to load the state dict, then drop the aux heads unless the caller asked for them:
    #   ``original_aux_logits = kwargs.get("aux_logits", <default>)`` ... ``if not original_aux_logits:
    #   model.aux1 = None`` (GoogLeNet default False -> published model has no aux heads; Inception3
    #   default True -> its AuxLogits are part of the published model and of its num_params).
    # vgg.py sets ``kwargs["init_weights"] = False`` (initialisation only, same architecture).
    src = _builder_source(builder)
    kwargs: dict[str, Any] = {}
    match = re.search(r'original_aux_logits = kwargs\.get\("aux_logits", (True|False)\)', src)
    if match:
        kwargs["aux_logits"] = match.group(1) == "True"
        kwargs["transform_input"] = True
    if re.search(r'(_ovewrite_named_param\(kwargs, "init_weights", False\)|kwargs\["init_weights"\] = False)', src):
        kwargs["init_weights"] = False
    return kwargs


def _segmentation_aux(builder, weights) -> dict:
    # segmentation/deeplabv3.py, fcn.py: ``aux_loss = _ovewrite_value_param("aux_loss", aux_loss, True)``:
    # the published models carry the auxiliary FCNHead (counted in num_params, and run in eval too:
    # ``_SimpleSegmentationModel.forward`` calls it whenever it exists, so it is in ``_ops``).
    # lraspp.py has no auxiliary head (it raises on ``aux_loss=True``).
    if re.search(r'_ovewrite_value_param\("aux_loss", aux_loss, True\)', _builder_source(builder)):
        return {"aux_loss": True}
    return {}


def _no_backbone_weights(builder, weights) -> dict:
    # segmentation/detection builders default ``weights_backbone`` to an ImageNet entry (a download) and
    # set ``weights_backbone = None`` themselves when ``weights`` is given; mirror that. (For detection
    # this also makes ``is_trained`` False -> see uses_frozen_bn below.)
    if "weights_backbone" in inspect.signature(builder).parameters:
        return {"weights_backbone": None}
    return {}


RULES = (_num_classes, _num_keypoints, _input_size, _auxiliary_heads, _segmentation_aux, _no_backbone_weights)

# Every parameter name torchvision's builders override from ``weights`` (``_ovewrite_named_param`` /
# ``_ovewrite_value_param``) that RULES reproduce, or that needs no reproduction.
HANDLED_OVERRIDES = {
    "num_classes",
    "num_keypoints",
    "image_size",
    "input_size",
    "spatial_size",
    "temporal_size",
    "aux_logits",
    "transform_input",
    "init_weights",
    "aux_loss",
    "groups",
    "width_per_group",  # resnet.py: constants of resnext/wide_resnet, set with or without weights
}


def unhandled_overrides() -> set[str]:
    """Override names in torchvision's builder sources that RULES do not know (empty when up to date)."""
    import torchvision.models as tvm

    names: set[str] = set()
    for module_name in TASK_MODULES.values():
        module = _module(module_name)
        for builder_name in tvm.list_models(module=module):
            src = _source(tvm.get_model_builder(builder_name))
            names.update(re.findall(r'_ovewrite_(?:named|value)_param\(\s*(?:kwargs,\s*)?"(\w+)"', src))
    return names - HANDLED_OVERRIDES


def build_kwargs(builder_name: str, weights_name: str) -> dict:
    """The kwargs that make ``builder(weights=None, **kwargs)`` the architecture of ``weights``."""
    import torchvision.models as tvm

    builder = tvm.get_model_builder(builder_name)
    weights = tvm.get_model_weights(builder_name)[weights_name]
    kwargs: dict[str, Any] = {}
    for rule in RULES:
        kwargs.update(rule(builder, weights))
    return kwargs


# --------------------------------------------------------------------------------------------------
# FrozenBatchNorm2d in detection backbones
# --------------------------------------------------------------------------------------------------

# detection/{faster_rcnn,mask_rcnn,keypoint_rcnn,retinanet,fcos}.py (the v1 resnet50 / mobilenet_v3
# builders): ``is_trained = weights is not None or weights_backbone is not None``;
# ``norm_layer = misc_nn_ops.FrozenBatchNorm2d if is_trained else nn.BatchNorm2d``, passed to the backbone.
# FrozenBatchNorm2d keeps weight/bias as *buffers*, so the published ``num_params`` excludes the backbone's
# BatchNorm affine parameters, while ``builder(weights=None)`` builds nn.BatchNorm2d. ``build(case,
# frozen_bn=True)`` (the default) swaps them back; the _v2 / ssd builders hard-code their norm layers.
_FROZEN_BN_PATTERN = re.compile(r"FrozenBatchNorm2d if is_trained else nn\.BatchNorm2d")


def uses_frozen_bn(builder_name: str) -> bool:
    import torchvision.models as tvm

    return bool(_FROZEN_BN_PATTERN.search(_builder_source(tvm.get_model_builder(builder_name))))


def freeze_backbone_bn(model):
    """Replace the nn.BatchNorm2d of ``model.backbone.body`` by FrozenBatchNorm2d, in place."""
    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d

    def swap(parent):
        for name, child in parent.named_children():
            if type(child) is torch.nn.BatchNorm2d:
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                frozen.to(device=child.weight.device)
                setattr(parent, name, frozen)
            else:
                swap(child)

    swap(model.backbone.body)
    return model


# --------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------


def _side(size) -> int:
    return size if isinstance(size, int) else size[0]


def input_shape(task: str, builder_name: str, weights) -> tuple[int, ...]:
    """The input (batch 1) the published ``_ops`` belongs to."""
    transforms = weights.transforms()
    if task == "classification":
        # ImageClassification: resize to resize_size, centre-crop to crop_size -> the network sees crop_size.
        side = _side(transforms.crop_size)
        return (1, 3, side, side)
    if task == "segmentation":
        # SemanticSegmentation: resize only (no crop); _ops are for a square resize_size image.
        side = _side(transforms.resize_size)
        return (1, 3, side, side)
    if task == "video":
        # VideoClassification: crop_size (H, W) per frame, channels first: (N, C, T, H, W).
        h, w = transforms.crop_size
        return (1, 3, VIDEO_FRAMES, h, w)
    if task == "detection":
        # ObjectDetection transforms carry no size; the model resizes internally
        # (GeneralizedRCNNTransform, eval: shorter side -> min_size[-1], capped by max_size; SSD: fixed
        # 300/320). A square image of that side passes through unchanged, and it is the size the published
        # ``_ops`` were measured at. Detection models take a list of CHW images: ``model(list(x))``.
        side = _detection_probe(builder_name)[0]
        return (1, 3, side, side)
    raise ValueError(task)


@functools.cache
def _detection_probe(builder_name: str) -> tuple[int, bool]:
    """(input side, two-stage?) of a detection builder, from a meta-device instance."""
    import torch
    import torchvision.models as tvm

    builder = tvm.get_model_builder(builder_name)
    weights = next(iter(tvm.get_model_weights(builder_name)))
    with torch.device("meta"):
        model = builder(weights=None, **build_kwargs(builder_name, weights.name))
    return int(model.transform.min_size[-1]), hasattr(model, "roi_heads")


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def _module(name: str):
    import importlib

    return importlib.import_module(name)


def reference_cases() -> list[Case]:
    """Every (builder, weights entry) of the four task modules, with its build kwargs and reference."""
    import torchvision.models as tvm

    cases = []
    for task, module_name in TASK_MODULES.items():
        for builder_name in tvm.list_models(module=_module(module_name)):
            for weights in tvm.get_model_weights(builder_name):
                meta = weights.meta
                num_params: int | None = meta["num_params"]
                ops: float | None = meta["_ops"]
                notes = []
                if task == "detection":
                    notes.append("data dependent: fails on the meta device, run it on CPU (list of CHW images)")
                    if _detection_probe(builder_name)[1]:
                        # R-CNN: the box head runs once per RPN proposal and the mask/keypoint heads once
                        # per detection; the published figure is for the proposals/detections that the
                        # trained weights produced on torchvision's (unrecorded) image.
                        ops = None
                        notes.append("two-stage: _ops depend on the number of proposals/detections")
                    # One-stage (RetinaNet, FCOS, SSD, SSDlite): the dense head runs at every location and
                    # the post-processing has no matmul/conv, so ``_ops`` is reproducible (on CPU).
                    if uses_frozen_bn(builder_name):
                        notes.append(
                            "published num_params has FrozenBatchNorm2d (buffers) in the backbone: build(case) "
                            "swaps it in; build(case, frozen_bn=False) counts the BatchNorm2d affine params too"
                        )
                if meta.get("categories") is None:
                    notes.append("feature-extractor weights (no categories): default classifier, same architecture")
                cases.append(
                    Case(
                        builder=builder_name,
                        weights=weights.name,
                        task=task,
                        build_kwargs=build_kwargs(builder_name, weights.name),
                        input_shape=input_shape(task, builder_name, weights),
                        num_params=num_params,
                        ops_gmacs=ops,
                        note="; ".join(notes),
                    )
                )
    return cases


@contextlib.contextmanager
def _state_on_meta():
    """Move every parameter and buffer to the meta device as it is registered (like accelerate's
    ``init_empty_weights``), leaving other tensor arithmetic in a builder on the CPU."""
    import torch

    register_parameter = torch.nn.Module.register_parameter
    register_buffer = torch.nn.Module.register_buffer

    def parameter_on_meta(module, name, param):
        register_parameter(module, name, param)
        if param is not None:
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    def buffer_on_meta(module, name, tensor, persistent=True):
        register_buffer(module, name, tensor, persistent)
        if tensor is not None:
            module._buffers[name] = tensor.to("meta")

    torch.nn.Module.register_parameter = parameter_on_meta
    torch.nn.Module.register_buffer = buffer_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register_parameter
        torch.nn.Module.register_buffer = register_buffer


def build(case: Case, device: Any = "meta", *, frozen_bn: bool = True):
    """``builder(weights=None, **case.build_kwargs)`` on ``device``, in eval mode.

    With ``frozen_bn`` (default) detection backbones get FrozenBatchNorm2d as in the published model.
    """
    import torch
    import torchvision.models as tvm

    builder = tvm.get_model_builder(case.builder)
    try:
        with torch.device(device):
            model = builder(weights=None, **case.build_kwargs)
    except NotImplementedError:
        # regnet.py ``BlockParams.from_init_params`` computes the width schedule with torch ops and
        # ``.tolist()``, which cannot run under ``torch.device("meta")``; put only the module state there.
        if torch.device(device).type != "meta":
            raise
        with _state_on_meta():
            model = builder(weights=None, **case.build_kwargs)
    if frozen_bn and case.task == "detection" and uses_frozen_bn(case.builder):
        freeze_backbone_bn(model)
    return model.eval()
