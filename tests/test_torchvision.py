"""Every torchvision builder against the figures torchvision publishes with its weights.

torchvision ships, with each set of weights, the model's parameter count (``meta["num_params"]``) and
its GMACs (``meta["_ops"]``, three decimals), computed by torchvision's own tooling. The models are
built here without weights (``tests/torchvision_cases.py`` says how, from the weights' metadata), and
``mbcost.analyze`` must reproduce both: an independent check of the engine on models this project
did not write.

* classification, segmentation, video: on the meta device (nothing allocated), exact params and
  ``_ops`` to its three decimals;
* detection: data-dependent (``nonzero`` in the region proposals), so ``execute="auto"`` falls back to
  a real CPU forward; params exact; the one-stage detectors' ``_ops`` too (their post-processing has
  no convolution or matrix product, so random weights cost the same as trained ones).
"""

from __future__ import annotations

import pytest
from torchvision_cases import Case, build, reference_cases

import mbcost

pytest.importorskip("torchvision", reason="the torchvision tests need torchvision (pip install -e '.[test]')")


def _cases(tasks: set[str]) -> list[Case]:
    try:
        return [c for c in reference_cases() if c.task in tasks]
    except ImportError:
        return []


STATIC = _cases({"classification", "segmentation", "video"})


def _detection_per_builder() -> list[Case]:
    """One weights entry per detection builder (the architectures differ by builder, not by entry)."""
    seen: dict[str, Case] = {}
    for case in _cases({"detection"}):
        if case.builder not in seen or (seen[case.builder].ops_gmacs is None and case.ops_gmacs is not None):
            seen[case.builder] = case
    return list(seen.values())


DETECTION = _detection_per_builder()


def test_every_family_is_covered():
    tasks = {c.task for c in STATIC}
    assert tasks == {"classification", "segmentation", "video"}
    assert len(STATIC) >= 120 and len(DETECTION) >= 10  # torchvision 0.29: 131 entries, 11 detection builders


@pytest.mark.parametrize("case", STATIC, ids=[c.id for c in STATIC])
def test_params_and_macs_equal_torchvision_published(case: Case):
    model = build(case)  # meta device
    cost = mbcost.analyze(model, case.input_shape, execute="meta")
    assert cost.params == case.num_params
    assert round(cost.macs / 1e9, 3) == case.ops_gmacs, f"{cost.macs:,} MACs"
    assert cost.execution == "meta"


def test_auxiliary_heads_the_eval_forward_skips_are_listed_apart():
    """Built without weights, googlenet keeps its two auxiliary heads, which the published model drops:
    the params no op used are theirs, and the rest is the published count."""
    import torchvision

    cost = mbcost.analyze("torchvision:googlenet", 224)
    model = torchvision.models.googlenet(weights=None, init_weights=False)
    assert [(u.module, u.params) for u in cost.unattributed] == [
        (name, sum(p.numel() for p in getattr(model, name).parameters())) for name in ("aux1", "aux2")]
    published = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["num_params"]
    assert cost.params - cost.unattributed_params == published


@pytest.mark.parametrize("case", DETECTION, ids=[c.id for c in DETECTION])
def test_detection_models_complete_through_the_real_fallback(case: Case):
    import torch

    torch.manual_seed(0)
    model = build(case, device="cpu")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cost = mbcost.analyze(model, case.input_shape)
    assert cost.execution == "real" and "nonzero" in (cost.execution_note or "")
    assert cost.params == case.num_params
    assert cost.macs > 0
    if case.ops_gmacs is not None:  # one-stage detectors: the count does not depend on the data
        assert round(cost.macs / 1e9, 3) == case.ops_gmacs, f"{cost.macs:,} MACs"
    # the caller's model is untouched by the meta attempt and by the real run (which ran on a copy)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not any(t.is_meta for t in model.state_dict().values())
