"""The model sets of calibration and of the accuracy benchmark, named in one place and disjoint.

``CALIBRATION_MODELS`` are timed as whole forwards by ``mbcost calibrate`` to fit the whole-model
correction; ``TEST_MODELS`` are what ``benchmarks/bench_predict.py`` predicts and measures: no model of the
test set is ever fitted on (``tests/test_predict.py`` checks the two are disjoint).
"""

from __future__ import annotations

__all__ = ["CALIBRATION_MODELS", "QUICK_TEST_MODELS", "TEST_MODELS"]

#: Timed whole by calibration: ResNets, mobile and depthwise-heavy nets, a RegNet, an EfficientNet, a ViT.
CALIBRATION_MODELS: tuple[str, ...] = (
    "torchvision:resnet34",
    "torchvision:mobilenet_v3_small",
    "torchvision:mnasnet0_75",
    "torchvision:regnet_y_400mf",
    "torchvision:shufflenet_v2_x1_5",
    "torchvision:squeezenet1_1",
    "torchvision:efficientnet_b1",
    "torchvision:googlenet",
    "timm:ghostnet_100",
    "timm:pit_ti_224",
)

#: Predicted and measured by the benchmark, never fitted on.
TEST_MODELS: tuple[str, ...] = (
    "torchvision:resnet18",
    "torchvision:resnet50",
    "torchvision:mobilenet_v2",
    "torchvision:mobilenet_v3_large",
    "torchvision:efficientnet_b0",
    "torchvision:mnasnet1_0",
    "torchvision:regnet_x_400mf",
    "torchvision:regnet_y_800mf",
    "torchvision:shufflenet_v2_x1_0",
    "torchvision:squeezenet1_0",
    "torchvision:densenet121",
    "torchvision:alexnet",
    "timm:efficientnet_lite0",
    "timm:mixnet_s",
    "timm:lcnet_100",
    "timm:resnet26d",
    "timm:regnetx_002",
    "timm:semnasnet_100",
    "timm:convnext_atto",
    "timm:deit_tiny_patch16_224",
)

#: ``bench_predict.py --quick``: a handful of the test set.
QUICK_TEST_MODELS: tuple[str, ...] = (
    "torchvision:resnet18", "torchvision:mobilenet_v2", "timm:lcnet_100", "timm:deit_tiny_patch16_224",
)
