"""Model sources: torchvision:NAME, timm:NAME and hf:ID_OR_PATH, resolved once, counted exactly.

Every count is checked against a figure derived another way: torchvision's published metadata
(``_ops`` are GMACs rounded to 3 decimals, ``num_params`` exact), a live FlopCounterMode or fvcore on the
library's own module, or hand arithmetic.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import mbcost
from mbcost.cost.conventions import apply_convention
from mbcost.errors import SpecError
from mbcost.zoo import ModelSource, resolve_source, resolve_sources

DATA = Path(__file__).parent / "data"
TINY_BERT = f"hf:{DATA / 'hf-tiny-bert'}"
TINY_VIT = f"hf:{DATA / 'hf-tiny-vit'}"


def _flop_counter(model: torch.nn.Module, *args: torch.Tensor, **kwargs: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(*args, **kwargs)
    return counter.get_total_flops()


def _compare_json(cli, *args: str) -> dict:
    r = cli("compare", *args, "--no-bench", "--format", "json")
    assert r.exit_code == 0, r.output
    return {m["name"]: m for m in json.loads(r.stdout)["models"]}


def test_torchvision_and_timm_from_the_command_line_match_published_metadata_and_live_counters(cli):
    torchvision = pytest.importorskip("torchvision")
    timm = pytest.importorskip("timm")
    fvcore = pytest.importorskip("fvcore.nn")
    models = _compare_json(cli, "--models", "torchvision:resnet50,timm:resnet18")
    from torchvision.models import ResNet18_Weights, ResNet50_Weights

    # torchvision's published figures: GFLOPS are its MACs (conv + linear), rounded to 3 decimals
    for label, weights in (("torchvision:resnet50", ResNet50_Weights.IMAGENET1K_V1),
                           ("timm:resnet18", ResNet18_Weights.IMAGENET1K_V1)):  # timm's resnet18 is the same net
        assert models[label]["params"] == weights.meta["num_params"], label
        assert round(models[label]["macs"] / 1e9, 3) == weights.meta["_ops"], label
    x = torch.zeros(1, 3, 224, 224)
    for label, module in (("torchvision:resnet50", torchvision.models.resnet50()),
                          ("timm:resnet18", timm.create_model("resnet18"))):
        cost = mbcost.analyze(label)  # the same numbers the command printed
        assert (cost.params, cost.macs) == (models[label]["params"], models[label]["macs"])
        assert apply_convention(cost, "torch").total == _flop_counter(module, x), label
        assert apply_convention(cost, "fvcore").total == fvcore.FlopCountAnalysis(module.eval(), (x,)).total(), label


def test_a_local_hugging_face_config_works_offline_with_exact_counts(cli, monkeypatch):
    transformers = pytest.importorskip("transformers")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = _compare_json(cli, "--models", TINY_BERT, "--input", "input_ids=1x64:int64")[TINY_BERT]
    # 2 layers of hidden 32, FFN 64, 64 tokens: Q, K, V, O 4*64*32*32 + FFN 2*64*32*64 = 524,288 per layer, pooler
    # 32*32 = 1,024; attention (SDPA) QK^T and AV 2*64*64*32 = 262,144 per layer
    linear, attention = 2 * 524_288 + 1_024, 2 * 262_144
    assert model["macs"] == linear + attention
    live = transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(DATA / "hf-tiny-bert"))
    assert model["params"] == sum(p.numel() for p in live.parameters())
    cost = mbcost.analyze(TINY_BERT, {"input_ids": "1x64:int64"})
    assert cost.macs == model["macs"]
    # FlopCounterMode counts the linears (2 FLOPs per MAC) and, on the CPU, no SDPA: the torch preset says the same
    assert apply_convention(cost, "torch").total == _flop_counter(live, input_ids=torch.zeros(1, 64, dtype=torch.long))
    assert apply_convention(cost, "torch").total == 2 * linear


def test_hugging_face_default_inputs_come_from_the_config():
    transformers = pytest.importorskip("transformers")
    text = mbcost.analyze(TINY_BERT)  # max_position_embeddings 96 < the default 128 tokens
    assert [i.label for i in text.inputs] == ["input_ids=1x96:int64", "attention_mask=1x96:int64"]
    vision = mbcost.analyze(TINY_VIT, batch=2)  # image_size 32, num_channels 3
    assert [i.label for i in vision.inputs] == ["pixel_values=2x3x32x32"]
    live = transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(DATA / "hf-tiny-vit"))
    assert apply_convention(vision, "torch").total == _flop_counter(live, pixel_values=torch.zeros(2, 3, 32, 32))
    assert vision.params == sum(p.numel() for p in live.parameters())


def test_a_timm_model_gets_its_own_input_size_by_default():
    timm = pytest.importorskip("timm")
    cost = mbcost.analyze("timm:vit_tiny_patch16_384", execute="meta")
    assert cost.input == (384, 384) == tuple(timm.get_pretrained_cfg("vit_tiny_patch16_384").input_size[1:])


def test_torchvision_models_with_a_pretrained_backbone_by_default_build_offline(monkeypatch):
    """Segmentation and detection builders load ImageNet backbone weights unless told otherwise
    (``weights_backbone``): a download, or a failure without network."""
    tv = pytest.importorskip("torchvision")
    import inspect

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded pretrained weights")

    monkeypatch.setattr(tv.models._api, "load_state_dict_from_url", no_network)
    names = [n for n in tv.models.list_models()
             if "weights_backbone" in inspect.signature(tv.models.get_model_builder(n)).parameters]
    assert "lraspp_mobilenet_v3_large" in names and "fasterrcnn_resnet50_fpn" in names
    for name in names:
        resolve_source(f"torchvision:{name}").build(device="meta")
    published = tv.models.segmentation.LRASPP_MobileNet_V3_Large_Weights.DEFAULT.meta["num_params"]
    assert mbcost.analyze("torchvision:lraspp_mobilenet_v3_large", 64).params == published


def test_a_source_is_resolved_once_through_compare_and_report(cli, monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    from mbcost.zoo import external

    reads = []
    check = external.check
    monkeypatch.setattr(external, "check", lambda kind, name: reads.append(name) or check(kind, name))
    _compare_json(cli, "--models", f"{TINY_VIT},v1@0.25", "--input", "32", "--counters", "torch")
    assert reads == [str(DATA / "hf-tiny-vit")]  # the config is read once: analysed, then counted
    reads.clear()
    written = mbcost.report.build_report(f"{TINY_VIT},v1@0.25", bench=False, out=tmp_path / "r.html",
                                         claims=False)
    assert reads == [str(DATA / "hf-tiny-vit")]
    assert [m.label for m in written.data.models] == [TINY_VIT, "v1@0.25"]
    assert [m.input_label for m in written.data.models] == ["32x32", "224x224"]  # each model's own default


def test_every_spelling_resolves_to_one_object_and_back():
    pytest.importorskip("torchvision")
    sources = resolve_sources("v2@0.5,torchvision:resnet18,fixtures_models:factory")
    assert [s.kind for s in sources] == ["zoo", "torchvision", "factory"]
    assert [resolve_source(s.label) for s in sources] == sources
    assert resolve_sources(sources[1]) == [sources[1]] and resolve_source(sources[1]) is sources[1]
    assert isinstance(sources[0], ModelSource) and sources[0].entry.name == "v2"


@pytest.mark.parametrize("spec,message", [
    ("torchvision:resnet5", "unknown torchvision model 'resnet5'; did you mean torchvision:resnet50"),
    ("timm:resnet1", "unknown timm model 'resnet1'; did you mean timm:resnet18"),
    ("torchvision:", "no model named after 'torchvision:'"),
    (f"hf:{DATA / 'no-such-dir'}", "cannot read the config of hf:"),
])
def test_a_bad_name_is_one_line(cli, spec, message):
    pytest.importorskip({"torchvision": "torchvision", "timm": "timm", "hf": "transformers"}[spec.partition(":")[0]])
    r = cli("layers", spec)
    assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_hub_id_without_network_fails_in_one_line(cli, monkeypatch):
    pytest.importorskip("transformers")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as with no network, without the retries
    r = cli("compare", "--models", "hf:google-bert/bert-base-uncased", "--no-bench")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "cannot read the config of hf:google-bert/bert-base-uncased" in r.stderr
    assert "a local directory holding config.json works offline" in r.stderr


@pytest.mark.parametrize("spec,module,extra", [("timm:resnet18", "timm", "mbcost[timm]"),
                                               (TINY_BERT, "transformers", "mbcost[hf]")])
def test_a_missing_library_names_its_extra(cli, monkeypatch, spec, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as when it is not installed
    r = cli("compare", "--models", spec, "--no-bench")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"models need {module}, which is not installed; pip install '{extra}'" in r.stderr


def test_a_text_model_without_a_known_input_is_told_what_to_give(monkeypatch):
    pytest.importorskip("transformers")
    from mbcost.zoo import external

    class Speech(torch.nn.Module):
        main_input_name = "input_values"
        config = object()

        def forward(self, input_values):  # noqa: ANN001, ANN202
            return input_values

    with pytest.raises(SpecError, match="give it with --input input_values=SHAPE"):
        external.default_inputs("hf", Speech(), 1)
