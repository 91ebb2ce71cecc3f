"""Predicted latency: a calibrated device profile turns an analysis into milliseconds, without running the model.

``calibrate(...)`` measures this device's kernels over a grid of op kinds and a few whole models and saves a
device profile; ``predict(model, inputs)`` prices a model's analysed layers with it. See ``docs/predict.md``.
Imports are lazy: ``mbcost predict`` loads neither scikit-learn nor the measuring code.

The package is callable: ``mbcost.predict(model, ...)`` is ``mbcost.predict.predict(model, ...)`` (the public
API's name, which is also this package's, whichever of the two ``mbcost.predict`` resolves to first).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mbcost.predict.calibrate import CalibrationReport, calibrate  # noqa: F401
    from mbcost.predict.predictor import LayerPrediction, Prediction, predict  # noqa: F401
    from mbcost.predict.profile import DeviceProfile, ProfileError, ProfileKey  # noqa: F401

_LAZY = {
    "calibrate": ("mbcost.predict.calibrate", "calibrate"),
    "CalibrationReport": ("mbcost.predict.calibrate", "CalibrationReport"),
    "predict": ("mbcost.predict.predictor", "predict"),
    "Prediction": ("mbcost.predict.predictor", "Prediction"),
    "LayerPrediction": ("mbcost.predict.predictor", "LayerPrediction"),
    "DeviceProfile": ("mbcost.predict.profile", "DeviceProfile"),
    "ProfileError": ("mbcost.predict.profile", "ProfileError"),
    "ProfileKey": ("mbcost.predict.profile", "ProfileKey"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'mbcost.predict' has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    """This package's module type: calling it calls ``predict``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from mbcost.predict.predictor import predict

        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
