"""The model zoo: parameter counts against the reference implementations, specs, widths."""

import pytest
import torch

import mbcost
from mbcost.errors import SpecError, UnknownModelError
from mbcost.zoo import build_model, list_models, parse_input, resolve_source, resolve_sources
from mbcost.zoo.layers import make_divisible

# Reference parameter counts (BatchNorm affine parameters and biases included):
#   torchvision mobilenet_v2 3,504,872; vgg16 138,357,544; vgg16_bn 138,365,992 (torchvision model docs);
#   MobileNetV1 1.0: 4,231,976 trainable parameters (Keras applications MobileNet, alpha=1.0);
#   the paper reports 4.2M (V1), 29.3M (Conv MobileNet), 3.4M (V2), 138M (VGG16).
REFERENCE_PARAMS = {
    "v1": 4_231_976,
    "v2": 3_504_872,
    "vgg16": 138_357_544,
    "vgg16-bn": 138_365_992,
}


def _numel(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,expected", sorted(REFERENCE_PARAMS.items()))
def test_params_match_reference_implementations(name, expected):
    assert _numel(build_model(name, device="meta")) == expected
    assert mbcost.analyze(name).params == expected


def test_v1_conv_matches_paper_table_4():
    # Conv MobileNet: every dw+pw pair replaced by one 3x3 conv; the paper reports 29.3M params.
    params = mbcost.analyze("v1-conv").params
    assert round(params / 1e6, 1) == 29.3


def test_registry_lists_the_zoo():
    assert list_models() == ["v1", "v1-conv", "v2", "vgg16", "vgg16-bn"]


def test_unknown_model_names_what_exists():
    with pytest.raises(UnknownModelError, match="known models: v1, v1-conv, v2, vgg16, vgg16-bn"):
        resolve_source("resnet50")


@pytest.mark.parametrize("text,name,width", [("v2@0.75", "v2", 0.75), ("V1", "v1", 1.0), ("vgg16", "vgg16", None),
                                             ("mobilenet_v2@1.4", "v2", 1.4)])
def test_parse_spec(text, name, width):
    spec = resolve_source(text)
    assert (spec.name, spec.width) == (name, width)


@pytest.mark.parametrize("bad", ["v2@0", "v2@-1", "v2@abc", "v2@100", "v2@nan", "vgg16@0.5", "", "v2@inf"])
def test_bad_specs(bad):
    with pytest.raises(SpecError):
        resolve_source(bad)


def test_parse_models_and_inputs():
    assert [s.label for s in resolve_sources("v1, v2@0.5 ,vgg16")] == ["v1", "v2@0.5", "vgg16"]
    with pytest.raises(SpecError):
        resolve_sources(" , ")
    assert parse_input("224") == (224, 224)
    assert parse_input("224x160") == (224, 160)
    assert parse_input(96) == (96, 96)
    for bad in ["abc", "0", "-3", "224x", "1x2x3", "1e9"]:
        with pytest.raises(SpecError):
            parse_input(bad)


def test_make_divisible_follows_the_v2_rounding_rule():
    assert make_divisible(32 * 0.35) == 16  # 11.2 -> 8 would lose more than 10%, so 16
    assert make_divisible(24 * 0.75) == 24  # 18 rounds to 16, below 0.9 * 18, so 24
    assert make_divisible(1280 * 1.4) == 1792


def test_v2_width_keeps_1280_last_channels_below_one():
    for width, last in [(0.35, 1280), (0.75, 1280), (1.0, 1280), (1.4, 1792)]:
        model = build_model(f"v2@{width}", device="meta")
        assert model.classifier[1].in_features == last


def test_v1_width_scales_every_layer():
    full = build_model("v1", device="meta")
    half = build_model("v1@0.5", device="meta")
    full_convs = [m for m in full.modules() if isinstance(m, torch.nn.Conv2d)]
    half_convs = [m for m in half.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels // 2 for c in full_convs] == [c.out_channels for c in half_convs]


def test_built_models_run_a_real_forward():
    for name in ["v1@0.25", "v2@0.35"]:
        model = build_model(name, num_classes=10).eval()
        with torch.inference_mode():
            out = model(torch.randn(2, 3, 64, 64))
        assert out.shape == (2, 10)


def test_v2_residual_blocks_follow_the_paper():
    model = build_model("v2", device="meta")
    blocks = list(model.features)[1:-1]
    assert len(blocks) == 17  # 1 + 2 + 3 + 4 + 3 + 3 + 1 bottlenecks (Table 2)
    assert sum(b.use_residual for b in blocks) == 10
    # Linear bottleneck: the projection has no activation after its BatchNorm.
    last = blocks[0].conv[-1]
    assert [type(m).__name__ for m in last] == ["Conv2d", "BatchNorm2d"]


def test_the_former_spec_names_still_work_with_a_deprecation_warning():
    import mbcost.zoo

    for old, new in (("parse_spec", resolve_source), ("parse_models", resolve_sources),
                     ("ModelSpec", mbcost.zoo.ModelSource)):
        with pytest.warns(DeprecationWarning, match=f"mbcost.zoo.{old} is deprecated"):
            assert getattr(mbcost.zoo, old) is new
    with pytest.raises(AttributeError):
        mbcost.zoo.no_such_name  # noqa: B018
