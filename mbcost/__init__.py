"""mbcost: what a convolutional network costs and why.

Public API (imports are lazy so that ``import mbcost`` and ``mbcost --help`` stay instant)::

    import mbcost
    cost = mbcost.analyze("v2@0.75", input_size=224)   # or any torch.nn.Module
    cost.params, cost.macs, cost.flops, cost.to_frame()
    model = mbcost.build_model("v1")                   # a real nn.Module from the zoo
    mbcost.apply_convention(cost, "fvcore")            # counted the way fvcore counts
    mbcost.predict("v2", 224, threads=1)               # latency predicted from a device profile (mbcost calibrate)
    mbcost.register_op("mylib::fused_attn", formula)   # count your torch.library op (or analyze(custom_ops=))

The subpackages declare their own APIs in ``__all__`` (``mbcost.counters``, ``mbcost.report``,
``mbcost.gate``, ``mbcost.zoo``, ...).

Conventions: ``macs`` are multiply-accumulates of convolution and linear layers (bias and
BatchNorm excluded, the papers' "Mult-Adds"); ``flops = 2 * macs``; other elementwise work is
counted separately (see ``mbcost.cost.formulas``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mbcost import display as _display
from mbcost._version import __version__
from mbcost.lazy import lazy_getattr

if TYPE_CHECKING:
    from mbcost.cost.analyze import analyze  # noqa: F401
    from mbcost.cost.conv import ConvComparison, compare_conv  # noqa: F401
    from mbcost.cost.conventions import apply_convention  # noqa: F401
    from mbcost.cost.custom import custom_ops_in, register_op, unregister_op  # noqa: F401
    from mbcost.cost.formulas import OpCost  # noqa: F401
    from mbcost.cost.result import LayerCost, ModelCost  # noqa: F401
    from mbcost.counters.reconciliation import reconcile  # noqa: F401
    from mbcost.zoo import build_model, list_models  # noqa: F401

_LAZY = {
    "analyze": "mbcost.cost.analyze",
    "compare_conv": "mbcost.cost.conv",
    "build_model": "mbcost.zoo.spec",
    "list_models": "mbcost.zoo.catalog",
    "ModelCost": "mbcost.cost.result",
    "LayerCost": "mbcost.cost.result",
    "ConvComparison": "mbcost.cost.conv",
    "apply_convention": "mbcost.cost.conventions",
    "reconcile": "mbcost.counters.reconciliation",
    "predict": "mbcost.predict",  # the package, callable: mbcost.predict(model, ...) -> Prediction
    "register_op": "mbcost.cost.custom",
    "unregister_op": "mbcost.cost.custom",
    "custom_ops_in": "mbcost.cost.custom",
    "OpCost": "mbcost.cost.formulas",
}

__all__ = ["__version__", *_LAZY]


def _load_html() -> None:
    """Register the results' HTML tables (``mbcost.render.html``), the first time a result is displayed in a
    notebook: the results sit below render, so render registers with them (``mbcost.display``)."""
    import mbcost.render.html  # noqa: F401


_display.set_loader(_load_html)

__getattr__ = lazy_getattr(__name__, _LAZY)
