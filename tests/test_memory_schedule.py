"""The MobileNetV2 paper's memory claim: tensors held whole, materialized vs streamed (mbcost memory)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from torch import nn

import mbcost
from mbcost.cost.schedule import memory_schedule, memory_schedules, streamable_blocks
from mbcost.zoo.mobilenet_v2 import V2_BOTTLENECKS, V2_LAST_CHANNELS

F16 = 2  # the paper's Table 3 assumes 16-bit activations


@pytest.fixture(scope="module")
def v1_v2():
    return memory_schedules("v1,v2", 224, batch=1, dtype="float16")


def test_the_papers_figures_1600k_and_400k(v1_v2):
    v1, v2 = v1_v2
    # V1: the first pointwise conv's output, 64 channels at 112x112 ("1600K")
    assert v1.streamed_largest_tensor_bytes == v1.largest_tensor_bytes == 112 * 112 * 64 * F16 == 1_605_632
    assert v1.largest_tensor_shape == (1, 64, 112, 112)
    # V2 streamed: the first bottleneck's output, 16 channels at 112x112 ("400K")
    assert v2.streamed_largest_tensor_bytes == 112 * 112 * 16 * F16 == 401_408
    assert v2.streamed_largest_tensor_shape == (1, 16, 112, 112)
    # V2 materialized: block 2's 1x1 expansion, 16 x t=6 = 96 channels, still at 112x112
    assert v2.largest_tensor_bytes == 112 * 112 * 96 * F16
    assert v2.largest_tensor_shape == (1, 96, 112, 112)


def test_peaks(v1_v2):
    v1, v2 = v1_v2
    # V1 materialized: the first pointwise BatchNorm's input and output (112x112x64 each), block 1's and the
    # pointwise Sequential's arguments (112x112x32 each, held through those calls), and the image
    assert v1.peak_activation_bytes == (2 * 112 * 112 * 64 + 2 * 112 * 112 * 32 + 3 * 224 * 224) * F16
    # V2 materialized: block 2's stride-2 depthwise conv: its 96x112x112 input, its 96x56x56 output,
    # oneDNN's blocked copy of the input and its 96x1x3x3 weight copy (CPU scratch, mbcost.cost.workspace),
    # block 2's 16x112x112 argument (held through the block) and the image
    assert v2.peak_activation_bytes == (2 * 96 * 112 * 112 + 96 * 56 * 56 + 96 * 9 + 16 * 112 * 112
                                        + 3 * 224 * 224) * F16
    # streamed: the image and block 1's output
    assert v2.streamed_peak_activation_bytes == 3 * 224 * 224 * F16 + 112 * 112 * 16 * F16


def test_v2_streamed_rows_follow_the_bottleneck_table(v1_v2):
    _, v2 = v1_v2
    expected = {(224, 224): 3}  # the image itself
    size = 112  # after the stride-2 stem
    for _t, c, _n, s in V2_BOTTLENECKS:
        size //= s
        expected[(size, size)] = max(expected.get((size, size), 0), c)
    expected[(7, 7)] = max(expected[(7, 7)], V2_LAST_CHANNELS)  # the last 1x1 conv is not in a block
    expected[(1, 1)] = V2_LAST_CHANNELS  # global average pooling
    rows = {r.size: r for r in v2.by_resolution}
    assert list(rows) == list(expected)  # largest resolution first
    for (h, w), c in expected.items():
        assert rows[(h, w)].streamed_max_channels == c
        assert rows[(h, w)].streamed_bytes == c * h * w * F16
    # materialized: the expanded tensors are the widest; at 112x112 the 96 of block 2 (t=6 x 16)
    assert rows[(112, 112)].max_channels == V2_BOTTLENECKS[1][0] * V2_BOTTLENECKS[0][1]


def test_without_blocks_streamed_equals_materialized(v1_v2):
    v1, _ = v1_v2
    assert v1.streamed_blocks == ()
    assert v1.streamed_peak_activation_bytes == v1.peak_activation_bytes
    assert all((r.max_channels, r.bytes) == (r.streamed_max_channels, r.streamed_bytes) for r in v1.by_resolution)
    widths = {r.size: r.max_channels for r in v1.by_resolution}
    assert widths == {(224, 224): 3, (112, 112): 64, (56, 56): 128, (28, 28): 256, (14, 14): 512, (7, 7): 1024,
                      (1, 1): 1024}


def test_torchvision_blocks_are_found_and_streamed():
    torchvision = pytest.importorskip("torchvision")
    torch = __import__("torch")
    with torch.device("meta"):
        model = torchvision.models.mobilenet_v2().to(torch.float16)  # a module given is analysed in its dtype
    blocks = streamable_blocks(model)
    assert blocks == tuple(f"features.{i}" for i in range(1, 18))
    (s,) = memory_schedules([model], 224, dtype="float16")
    assert s.streamed_largest_tensor_bytes == 112 * 112 * 16 * F16


class Block(nn.Module):
    """A toy block type named like the paper's, nested so only the outer one counts."""

    def __init__(self, cin: int, hidden: int, inner: bool = False) -> None:
        super().__init__()
        self.expand = nn.Conv2d(cin, hidden, 1)
        self.project = nn.Conv2d(hidden, cin, 1)
        self.inner = InvertedResidual(cin, 2, inner=False) if inner else None

    def forward(self, x):
        y = x + self.project(self.expand(x))
        return self.inner(y) if self.inner is not None else y


class InvertedResidual(Block):
    pass


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = InvertedResidual(4, 32, inner=True)
        self.head = nn.Conv2d(4, 8, 1)

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


def test_toy_model_stem_streams_with_the_first_block():
    model = Toy()
    cost = mbcost.analyze(model, (1, 3, 10, 10))  # float32: 4 bytes an element
    s = memory_schedule(cost, streamable_blocks(model))
    assert s.streamed_blocks == ("block",)
    # materialized: the 32-wide expansion; streamed: the head's output (the stem's and block's 4-wide are smaller)
    assert s.largest_tensor_bytes == 32 * 10 * 10 * 4
    assert s.streamed_largest_tensor_bytes == 8 * 10 * 10 * 4
    # streamed peak: the head's input + output (block: image 3 + output 4 channels is smaller)
    assert s.streamed_peak_activation_bytes == (4 + 8) * 10 * 10 * 4
    (row,) = s.by_resolution
    assert (row.max_channels, row.streamed_max_channels) == (32, 8)


# --- CLI ----------------------------------------------------------------------------------------------------


def test_cli_json_schema(cli):
    r = cli("memory", "v1,v2", "--dtype", "float16", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    v1, v2 = doc["models"]
    keys = {"name", "label", "dtype", "input", "largest_tensor_bytes", "streamed_largest_tensor_bytes",
            "peak_activation_bytes", "streamed_peak_activation_bytes", "by_resolution"}
    assert keys <= set(v1) and keys <= set(v2)
    assert (v1["name"], v2["name"], v2["dtype"], v2["input"]) == ("v1", "v2", "float16", [224, 224])
    assert v1["streamed_largest_tensor_bytes"] == 1_605_632 and v2["streamed_largest_tensor_bytes"] == 401_408
    row = v2["by_resolution"][1]
    assert row == {"size": [112, 112], "max_channels": 96, "bytes": 112 * 112 * 96 * F16,
                   "streamed_max_channels": 16, "streamed_bytes": 401_408}


def test_cli_table_markdown_csv(cli, tmp_path):
    r = cli("memory", "v1,v2", "--dtype", "float16")
    assert r.exit_code == 0, r.output
    assert "1,605,632" in r.stdout and "401,408" in r.stdout
    assert "1600K" in r.stdout and "400K" in r.stdout and "streamed" in r.stdout
    r = cli("memory", "v2", "--format", "markdown")
    assert r.stdout.startswith("**mbcost memory") and "| max |" in r.stdout
    out = tmp_path / "m.csv"
    r = cli("memory", "v1,v2", "--input", "160", "--format", "csv", "--output", str(out))
    assert r.exit_code == 0 and r.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {row["model"] for row in rows} == {"v1", "v2"}
    first_v2 = next(row for row in rows if row["model"] == "v2" and row["height"] == "80")
    assert int(first_v2["streamed_bytes"]) == 80 * 80 * 16 * F16


def test_cli_default_is_v1_v2_in_float16(cli):
    r = cli("memory", "--format", "json")
    assert r.exit_code == 0, r.output
    assert [m["name"] for m in json.loads(r.stdout)["models"]] == ["v1", "v2"]
    assert {m["dtype"] for m in json.loads(r.stdout)["models"]} == {"float16"}


@pytest.mark.parametrize("args,message", [
    (["memory", "resnet50"], "unknown model 'resnet50'"),
    (["memory", "v1,v2", "--dtype", "float8"], "float8"),
    (["memory", "v2", "--input", "16"], "too small"),
    (["memory", ","], "no models given"),
])
def test_cli_bad_input_one_line_exit_2(cli, args, message):
    r = cli(*args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mbcost: error:") and message in lines[0], r.stderr
    assert "Traceback" not in r.output
