"""``mbcost weights`` and ``mbcost report --weights``: dead kernels of synthetic checkpoints with known answers."""

from __future__ import annotations

import json

import pytest
import torch

from mbcost.weights import checkpoint_health, kernel_health
from mbcost.zoo.spec import build_model

DW = "features.1.dw.0.weight"  # v1's first depthwise conv: 8 kernels of 3x3 at width 0.25


@pytest.fixture(scope="module")
def v1_checkpoint(tmp_path_factory):
    """v1@0.25 with known damage: depthwise kernels 0 and 2 zeroed, kernel 5 shrunk by 1e-6 (dead, not zero);
    one pointwise weight set to exactly 0 (a zero weight, no dead kernel)."""
    torch.manual_seed(0)
    state = build_model("v1@0.25").state_dict()
    state[DW][[0, 2]] = 0
    state[DW][5] *= 1e-6
    state["features.1.pw.0.weight"][3, 0, 0, 0] = 0
    path = tmp_path_factory.mktemp("ckpt") / "v1.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def v2_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "v2.pt"
    torch.save({"state_dict": build_model("v2@0.35").state_dict()}, path)  # nested, as training scripts save it
    return path


def test_known_dead_kernels_are_found(v1_checkpoint):
    h = checkpoint_health(v1_checkpoint, "v1@0.25")
    layer = next(la for la in h.layers if la.name == "features.1.dw.0")
    assert (layer.category, layer.kernels, layer.dead_kernels) == ("dwconv", 8, 3)
    assert layer.zero_fraction == 18 / 72  # two kernels of 9 zeros
    pw = next(la for la in h.layers if la.name == "features.1.pw.0")
    assert (pw.dead_kernels, pw.zero_weights, pw.kernels) == (0, 1, 16)
    cats = h.categories
    assert cats["dwconv"].dead_kernels == 3 and cats["pwconv"].dead_kernels == 0
    assert cats["dwconv"].kernels == sum(la.kernels for la in h.layers if la.category == "dwconv")
    assert cats["conv"].kernels == 8 and cats["linear"].kernels == 1000  # stem conv, classifier rows


def test_threshold_decides_what_is_dead(v1_checkpoint):
    assert checkpoint_health(v1_checkpoint, "v1@0.25", threshold=1e-7).categories["dwconv"].dead_kernels == 2
    assert checkpoint_health(v1_checkpoint, "v1@0.25", threshold=0).categories["dwconv"].dead_kernels == 2


def test_all_zero_layer_counts_every_kernel_dead():
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=4, bias=False))
    state = {"0.weight": torch.zeros(4, 1, 3, 3)}
    (layer,) = kernel_health(model, state).layers
    assert (layer.category, layer.dead_kernels, layer.zero_fraction) == ("dwconv", 4, 1.0)


def test_transposed_conv_kernels_are_its_output_channels():
    """ConvTranspose2d stores [in, out/groups, k, k]: a kernel is weight[:, o], not weight[i]."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(32, 16, 3, bias=False))
    weight = model[0].weight.detach().clone()
    weight[:, [1, 4, 9, 15]] = 0  # output channels 1, 4, 9 and 15
    (layer,) = kernel_health(model, {"0.weight": weight}).layers
    assert (layer.kernels, layer.dead_kernels) == (16, 4)
    assert layer.zero_fraction == 4 / 16  # 4 kernels of 32 x 9 weights, of 16 x 32 x 9


def test_grouped_transposed_conv_kernels_follow_the_groups():
    """groups=2: in 8 -> out 6, weight [8, 3, 2, 2]; output channel 4 is group 1's local channel 1,
    its kernel is weight[4:8, 1] (16 weights); zeroing only that block kills one kernel."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(8, 6, 2, groups=2, bias=False))
    weight = model[0].weight.detach().clone()
    assert weight.shape == (8, 3, 2, 2)
    weight[4:8, 1] = 0
    (layer,) = kernel_health(model, {"0.weight": weight}).layers
    assert (layer.kernels, layer.dead_kernels, layer.zero_weights) == (6, 1, 16)
    weight[0:4, 1] = 0  # group 0's local channel 1 = output channel 1: a second dead kernel
    (layer,) = kernel_health(model, {"0.weight": weight}).layers
    assert (layer.kernels, layer.dead_kernels, layer.zero_weights) == (6, 2, 32)


def test_cli_weights_on_a_transposed_conv(cli, tmp_path, monkeypatch):
    """The issue's case through the command: ConvTranspose2d(32, 16) with 4 output channels zeroed."""
    (tmp_path / "tconvmods.py").write_text(
        "import torch\n"
        "def net():\n"
        "    return torch.nn.Sequential(torch.nn.ConvTranspose2d(32, 16, 4, stride=2, bias=False))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    state = torch.nn.Sequential(torch.nn.ConvTranspose2d(32, 16, 4, stride=2, bias=False)).state_dict()
    state["0.weight"][:, :4] = 0
    torch.save(state, tmp_path / "t.pt")
    result = cli("weights", str(tmp_path / "t.pt"), "--model", "tconvmods:net", "--format", "json")
    assert result.exit_code == 0, result.output
    (layer,) = json.loads(result.output)["layers"]
    assert (layer["kernels"], layer["dead_kernels"], layer["zero_fraction"]) == (16, 4, 0.25)


def test_cli_json_has_exactly_the_documented_shape(cli, v1_checkpoint):
    r = cli("weights", str(v1_checkpoint), "--model", "v1@0.25", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc) == {"layers", "categories"}
    assert set(doc["layers"][0]) == {"name", "category", "kernels", "dead_kernels", "dead_fraction", "zero_fraction"}
    assert set(doc["categories"]) == {"conv", "dwconv", "pwconv", "linear"}
    assert set(doc["categories"]["dwconv"]) == {"kernels", "dead_kernels", "dead_fraction", "zero_fraction"}
    dw = next(la for la in doc["layers"] if la["name"] == "features.1.dw.0")
    assert dw["dead_kernels"] == 3 and dw["dead_fraction"] == 3 / 8
    table = cli("weights", str(v1_checkpoint), "--model", "v1@0.25")
    assert table.exit_code == 0 and "features.1.dw.0" in table.stdout and "37.50%" in table.stdout


def _one_line_exit_2(r, *fragments):
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mbcost: error:"), r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_mismatched_checkpoint_names_the_first_mismatches(cli, v1_checkpoint):
    _one_line_exit_2(cli("weights", str(v1_checkpoint), "--model", "v1"), "does not match v1",
                     "shape: features.0.0.weight [8, 3, 3, 3] (model [32, 3, 3, 3])")
    _one_line_exit_2(cli("weights", str(v1_checkpoint), "--model", "v2@0.35"), "missing: features.1.conv.0.0.weight",
                     "unexpected: features.1.dw.0.weight")


class NeedsCode:
    pass


def test_bad_checkpoints_are_one_line_exit_2(cli, tmp_path):
    pickled = tmp_path / "code.pt"
    torch.save({"w": NeedsCode()}, pickled)
    _one_line_exit_2(cli("weights", str(pickled), "--model", "v1"), "needs code to unpickle", "weights only")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    _one_line_exit_2(cli("weights", str(corrupt), "--model", "v1"), "not a readable torch checkpoint")
    _one_line_exit_2(cli("weights", str(tmp_path / "missing.pt"), "--model", "v1"), "no such file")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    _one_line_exit_2(cli("weights", str(tensor), "--model", "v1"), "holds no state_dict")
    _one_line_exit_2(cli("weights", str(corrupt), "--model", "v1", "--threshold", "-1"), "--threshold")


def test_a_checkpoint_of_another_pickle_protocol_is_one_line_without_torchs_warnings(tmp_path):
    # torch.save(..., pickle_protocol=4) (a plain pickle too): torch's weights-only unpickler warned twice on stderr
    # ("Detected pickle protocol 4 ...") above the error line, which did not say what it could not read
    import warnings

    from mbcost.weights import CheckpointError, load_state_dict

    path = tmp_path / "p4.pt"
    torch.save({"w": torch.zeros(2)}, path, pickle_protocol=4)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(CheckpointError) as err:
        warnings.simplefilter("always")
        load_state_dict(path)
    assert [str(w.message) for w in caught] == []
    assert "not a readable torch checkpoint" in str(err.value) and "Unsupported operand" in str(err.value)


@pytest.mark.parametrize("spec, fragment", [("v1", "expected MODEL=CHECKPOINT"), ("=x.pt", "expected MODEL"),
                                            ("v1=missing.pt", "no such file"), ("nope=x.pt", "unknown model")])
def test_report_bad_weights_are_one_line_exit_2(cli, tmp_path, monkeypatch, spec, fragment):
    monkeypatch.chdir(tmp_path)
    if spec == "nope=x.pt":
        torch.save({"w": torch.zeros(1)}, tmp_path / "x.pt")
    _one_line_exit_2(cli("report", "--no-bench", "--weights", spec, "--out", "r.html"), fragment)
    assert not (tmp_path / "r.html").exists()


def test_report_compares_the_checkpoints(cli, tmp_path, v1_checkpoint, v2_checkpoint):
    out = tmp_path / "w.html"
    hostile = tmp_path / "<b>v1&.pt"  # a file name is user text: escaped on the page
    hostile.write_bytes(v1_checkpoint.read_bytes())
    r = cli("report", "--models", "v2@0.35", "--input", "96", "--no-bench", "--weights", f"v1@0.25={v1_checkpoint}",
            "--weights", f"v2@0.35={v2_checkpoint}", "--weights", f"v1@0.25={hostile}", "--out", str(out))
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    assert "<b>v1" not in page and "&lt;b&gt;v1&amp;.pt" in page  # the last v1@0.25 checkpoint is shown
    assert "data-claim='dead_kernels'" in page
    row = page[page.index("<tr data-claim='dead_kernels'>"):]
    row = row[: row.index("</tr>")]
    assert "holds" in row and "v1@0.25: 0.2% of depthwise kernels dead" in row  # 3 of 1240
    assert f"--weights v1@0.25={v1_checkpoint}" in page  # the command line in the footer
