"""Counts derived another way than mbcost's engine: from the ``nn.Module`` tree and forward hooks.

Each module's own parameters (``parameters(recurse=False)``) and, for ``Conv2d`` and ``Linear``, its
MACs from the output a forward hook sees: ``output elements x (C_in / groups) x K_h x K_w`` and
``output elements x in_features`` (bias excluded). The forward runs on the meta device, so only
shapes are computed. Nothing here calls mbcost's walker, formulas or categories.
"""

from __future__ import annotations

from typing import Any


def module_counts(model: Any, input_shape: tuple[int, ...]) -> dict[str, tuple[int, int]]:
    """``{module path: (own params, MACs)}`` for every module of ``model`` (the root is ``""``)."""
    import torch
    from torch import nn

    model = model.to("meta").eval()
    macs: dict[str, int] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(m: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            per_output = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            per_output = m.in_features
        macs[names[m]] = macs.get(names[m], 0) + out.numel() * per_output

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return {n: (sum(p.numel() for p in m.parameters(recurse=False)), macs.get(n, 0))
            for n, m in model.named_modules()}


def module_category(model: Any, path: str) -> str:
    """The README's layer categories, from the module's type and attributes: depthwise (groups = C_in > 1),
    pointwise (1x1, groups 1), other convolutions, linear, and everything else."""
    from torch import nn

    m = model.get_submodule(path) if path else model
    if isinstance(m, nn.Conv2d):
        if m.groups > 1 and m.groups == m.in_channels:
            return "dwconv"
        if m.kernel_size == (1, 1) and m.groups == 1:
            return "pwconv"
        return "conv"
    return "linear" if isinstance(m, nn.Linear) else "other"
