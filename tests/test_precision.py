"""The int8 analysis (``analyze(..., precision="int8")``, ``compare --precision int8``): weight bytes against a
hand count and against ONNX Runtime's own quantized model, activation bytes against the float32 walk."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mbcost.cost.analyze import analyze
from mbcost.cost.precision import int8_weight_bytes
from mbcost.errors import SpecError


class SmallNet(nn.Module):
    """A standard conv with bias, a depthwise conv with bias, a 1x1 conv without, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c3 = nn.Conv2d(8, 16, 1, bias=False)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        return self.fc(self.c3(x).mean((2, 3)))


# int8 weight bytes by hand: weight elements x 1 + output channels x (4-byte scale + 1-byte zero point),
# biases x 4 (int32):
#   c1 8*3*3*3 = 216 + 8*5 = 40 + 8*4 = 32  -> 288
#   c2 8*1*3*3 = 72  + 8*5 = 40 + 8*4 = 32  -> 144
#   c3 16*8    = 128 + 16*5 = 80            -> 208
#   fc 10*16   = 160 + 10*5 = 50 + 10*4 = 40 -> 250
SMALL_NET_INT8_WEIGHT_BYTES = 288 + 144 + 208 + 250  # 890 (float32: 4 x 602 params = 2408)


def test_int8_weight_bytes_by_hand():
    cost = analyze(SmallNet(), (1, 3, 16, 16), precision="int8")
    assert cost.params == 224 + 80 + 128 + 170 and cost.precision == "int8"
    assert cost.weight_bytes == SMALL_NET_INT8_WEIGHT_BYTES
    assert analyze(SmallNet(), (1, 3, 16, 16)).weight_bytes == 4 * 602
    assert cost.macs == analyze(SmallNet(), (1, 3, 16, 16)).macs  # unchanged: int8 MACs


def test_int8_weight_bytes_of_other_layers():
    # ConvTranspose2d(8, 4, 2, groups=2): weight [8, 2, 2, 2] = 64, its output-channel axis is 1 (2 scales,
    # ONNX's axis for ConvTranspose): 64 + 2*5 + bias 4*4 = 90; BatchNorm2d(4) affine 8 floats = 32.
    # A Linear sharing the embedding's table: quantized once, 20*6 + 20*5 = 220, no bias.
    emb = nn.Embedding(20, 6)
    head = nn.Linear(6, 20, bias=False)
    head.weight = emb.weight
    assert int8_weight_bytes(nn.Sequential(nn.ConvTranspose2d(8, 4, 2, groups=2), nn.BatchNorm2d(4))) == 90 + 32
    assert int8_weight_bytes(nn.ModuleList([emb, head])) == 220


def _ort_weight_bytes(onnx_path) -> tuple[int, int]:
    """Bytes of the quantized weights in an ONNX QDQ model: every DequantizeLinear of an initializer (a
    weight: its int8 values, scales and zero points; a bias, int32: its values only, as mbcost's rule
    counts them), and the bias scales and zero points ONNX Runtime adds on top."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    counted = derived = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        values, params = inits[node.input[0]], [inits[n] for n in node.input[1:] if n]
        counted += values.nbytes
        if values.dtype.name == "int32":
            derived += sum(p.nbytes for p in params)
        else:
            counted += sum(p.nbytes for p in params)
    return counted, derived


def test_int8_weight_bytes_equal_onnx_runtime_quantize_static(tmp_path):
    """An independent check: ONNX Runtime's static QDQ quantization, per channel, of the same network."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    torch.manual_seed(0)
    model = SmallNet().eval()
    float_path, int8_path = tmp_path / "f.onnx", tmp_path / "q.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(float_path), input_names=["x"], dynamo=True)

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"x": rng.standard_normal((1, 3, 16, 16), dtype=np.float32)} for _ in range(4)])

        def get_next(self):  # noqa: ANN202
            return next(self.batches, None)

    quantize_static(str(float_path), str(int8_path), Batches(), quant_format=QuantFormat.QDQ, per_channel=True)
    counted, derived = _ort_weight_bytes(int8_path)
    assert counted == analyze(model, (1, 3, 16, 16), precision="int8").weight_bytes == SMALL_NET_INT8_WEIGHT_BYTES
    assert derived == 8 * (8 + 8 + 10)  # the bias scales (float32) and zero points (int32) ORT stores too


def test_int8_activation_bytes_are_one_byte_per_float_element():
    """A float32 model's tensors are all floating point: at int8 every activation figure is a quarter."""
    f32, i8 = analyze("v1@0.25", 64), analyze("v1@0.25", 64, precision="int8")
    assert i8.activation_bytes * 4 == f32.activation_bytes
    assert i8.peak_activation_bytes * 4 == f32.peak_activation_bytes and i8.peak_op == f32.peak_op
    assert i8.largest_op_bytes * 4 == f32.largest_op_bytes
    assert [lc.output_bytes * 4 for lc in i8.layers] == [lc.output_bytes for lc in f32.layers]
    assert i8.peak_memory_bytes == i8.weight_bytes + i8.buffer_bytes + i8.peak_activation_bytes
    assert analyze("v1@0.25", 64).activation_bytes == f32.activation_bytes  # the int8 walk left no cached bytes


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(100, 8)
        self.fc = nn.Linear(8, 4)

    def forward(self, ids):
        return self.fc(self.emb(ids))


def test_int8_keeps_integer_tensors_at_their_dtype():
    """Token ids stay int64: 16 ids x 8 bytes = 128. Embedding out 16 x 8 floats, linear out 16 x 4."""
    f32 = analyze(Tokens(), "1x16:int64")
    i8 = analyze(Tokens(), "1x16:int64", precision="int8")
    # the peak, at the linear: ids (held by the caller) + the embedding's output + the linear's output
    assert f32.peak_activation_bytes == 128 + 16 * 8 * 4 + 16 * 4 * 4  # 896
    assert i8.peak_activation_bytes == 128 + 16 * 8 + 16 * 4  # 320: only the ids keep 8 bytes an element
    (fc,) = i8.layers  # the embedding has no formula (an uncounted op)
    assert (fc.input_bytes, fc.output_bytes, fc.weight_bytes) == (16 * 8, 16 * 4, 32 + 4)  # weights read: 1 byte
    # Embedding(100, 8) stays float32 (800 x 4), Linear(8, 4): 32 + 4 x 5 + 4 x 4 (int32 bias)
    assert i8.weight_bytes == 3200 + 32 + 20 + 16


@pytest.mark.parametrize("kwargs, fragment", [
    ({"precision": "int4"}, "unknown precision 'int4'; choose one of float32, int8"),
    ({"precision": "int8", "dtype": "float16"}, "drop --dtype float16"),
    ({"precision": "int8", "mode": "train"}, "inference analysis"),
])
def test_int8_refusals(kwargs, fragment):
    with pytest.raises(SpecError, match=fragment):
        analyze("v1@0.25", 32, **kwargs)


def test_cli_compare_precision_int8(cli):
    table = cli("compare", "--models", "v1@0.25,v2@0.35", "--input", "64", "--precision", "int8", "--no-bench")
    assert table.exit_code == 0, table.output
    assert "int8" in table.output.splitlines()[0]
    assert "MACs (int8)" in table.output and "weights (int8, per-channel scales)" in table.output
    assert "int32 accumulation" in table.output  # the rule is stated under the table
    doc = cli("compare", "--models", "v1@0.25", "--input", "64", "--precision", "int8", "--no-bench",
              "--format", "json")
    (m,) = json.loads(doc.output)["models"]
    cost = analyze("v1@0.25", 64, precision="int8")
    assert (m["precision"], m["weight_bytes"], m["peak_activation_bytes"]) == (
        "int8", cost.weight_bytes, cost.peak_activation_bytes)
    assert m["weight_bytes"] < analyze("v1@0.25", 64).weight_bytes / 3  # about a quarter, plus the scales
    csv = cli("compare", "--models", "v1@0.25", "--input", "64", "--precision", "int8", "--no-bench", "--format", "csv")
    assert "precision" in csv.output.splitlines()[0] and ",int8," in csv.output


@pytest.mark.parametrize("args, fragment", [
    (("--precision", "int8", "--dtype", "bfloat16", "--no-bench"), "drop --dtype bfloat16"),
])
def test_cli_compare_precision_refusals_are_one_line_exit_2(cli, args, fragment):
    r = cli("compare", "--models", "v1@0.25", "--input", "32", *args)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mbcost: error:") and fragment in lines[0]


class Branches(nn.Module):
    """Data-dependent: the meta walk stops at the branch and the analysis falls back to a real CPU forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y * 2 if y.sum() > 0 else y


def test_int8_real_fallback_counts_and_memory_guard(monkeypatch):
    """The real CPU run counts the same int8 bytes as the meta walk, and its memory guard still estimates the
    float32 forward it will run (the activations traced before the branch at 4 bytes, not 1)."""
    meta = analyze(nn.Conv2d(3, 8, 3, padding=1), 16, precision="int8")
    real = analyze(Branches(), 16, precision="int8")
    assert real.execution == "real" and real.layers[0].output_bytes == meta.layers[0].output_bytes == 8 * 16 * 16
    monkeypatch.setattr("mbcost.host.available_cpu_memory", lambda: 1)
    from mbcost.errors import AnalysisError

    messages = []
    for precision in ("float32", "int8"):
        with pytest.raises(AnalysisError) as err:
            analyze(Branches(), 16, precision=precision)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "activations 8.20 kB" in messages[0]  # 8 x 16 x 16 x 4 + the 4-byte sum
