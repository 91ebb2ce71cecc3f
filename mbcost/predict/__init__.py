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

from mbcost.lazy import lazy_getattr

if TYPE_CHECKING:
    from mbcost.predict.calibrate import CalibrationReport, calibrate  # noqa: F401
    from mbcost.predict.predictor import LayerPrediction, Prediction, predict  # noqa: F401
    from mbcost.predict.profile import DeviceProfile, ProfileError, ProfileKey  # noqa: F401

_LAZY = {
    "calibrate": "mbcost.predict.calibrate",
    "CalibrationReport": "mbcost.predict.calibrate",
    "predict": "mbcost.predict.predictor",
    "Prediction": "mbcost.predict.predictor",
    "LayerPrediction": "mbcost.predict.predictor",
    "DeviceProfile": "mbcost.predict.profile",
    "ProfileError": "mbcost.predict.profile",
    "ProfileKey": "mbcost.predict.profile",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)


class _CallablePackage(types.ModuleType):
    """This package's module type: calling it calls ``predict``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from mbcost.predict.predictor import predict

        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
