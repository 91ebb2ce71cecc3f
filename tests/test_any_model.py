"""Any model, any input: the one walker on models and inputs beyond an image classifier.

References are derived apart from the engine: torch's ``FlopCounterMode`` on a real CPU forward
(its FLOPs / 2 are the convolution and matrix-product MACs), or the arithmetic in the comment.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import mbcost
from mbcost.errors import AnalysisError, SpecError


def torch_macs(model: nn.Module, *args, **kwargs) -> int:
    """Conv + matmul MACs of a real CPU forward, as torch's FlopCounterMode counts them.

    Grad stays enabled: under no_grad, nn.TransformerEncoderLayer takes a fused fast path
    (``_transformer_encoder_layer_fwd``) that FlopCounterMode does not count at all.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        copy.deepcopy(model).eval()(*args, **kwargs)
    return counter.get_total_flops() // 2


class TextEncoder(nn.Module):
    """Token ids (int64) and a keyword attention mask, as a BERT-style encoder takes them."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 32)
        self.pos = nn.Parameter(torch.zeros(1, 16, 32))
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 3)

    def forward(self, ids, attention_mask=None):
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]
        x = self.encoder(x, src_key_padding_mask=None if attention_mask is None else attention_mask == 0)
        return self.head(x[:, 0])


def attention_macs(batch: int, length: int, width: int, layers: int) -> int:
    """q @ k^T and weights @ v over all heads: 2 x B x L x L x E per layer. FlopCounterMode does not
    count the CPU kernel that computes them (``_scaled_dot_product_flash_attention_for_cpu``)."""
    return layers * 2 * batch * length * length * width


def test_text_encoder_with_int64_ids_and_keyword_mask():
    model = TextEncoder()
    cost = mbcost.analyze(model, {"ids": "2x16:int64", "attention_mask": "2x16:int64"})
    ids = torch.randint(0, 100, (2, 16))
    seen_by_torch = torch_macs(model, ids, attention_mask=torch.ones(2, 16, dtype=torch.long))
    assert cost.macs == seen_by_torch + attention_macs(2, 16, 32, 2)
    assert cost.params == sum(p.numel() for p in model.parameters())
    assert [i.to_dict() for i in cost.inputs] == [{"shape": [2, 16], "dtype": "int64", "name": "ids"},
                                                  {"shape": [2, 16], "dtype": "int64", "name": "attention_mask"}]
    assert cost.to_dict()["inputs"][0] == {"shape": [2, 16], "dtype": "int64", "name": "ids"}
    assert cost.execution == "meta"


def test_a_tensor_gives_its_shape_and_dtype_never_its_data():
    model = TextEncoder()
    ids = torch.randint(0, 100, (3, 16))
    cost = mbcost.analyze(model, ids)
    assert cost.inputs[0].shape == (3, 16) and cost.inputs[0].dtype == "int64"
    assert cost.macs == torch_macs(model, ids) + attention_macs(3, 16, 32, 2)
    assert mbcost.analyze(model, ids, execute="real").macs == cost.macs  # the fused fast path is kept off


class TwoImages(nn.Module):
    """Two positional images (a siamese / optical-flow style input)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2))
        self.fuse = nn.Conv2d(16, 4, 1)

    def forward(self, a, b):
        return self.fuse(torch.cat([self.features(a), self.features(b)], dim=1))


def test_two_positional_inputs_and_a_module_called_twice():
    model = TwoImages()
    cost = mbcost.analyze(model, ((1, 3, 32, 32), (1, 3, 32, 32)))
    a, b = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    assert cost.macs == torch_macs(model, a, b)
    # features runs twice: its convs appear twice, the second call labelled #2; its params count once
    names = [layer.name for layer in cost.layers if layer.kind == "conv"]
    assert names == ["features.0", "features.2", "features.0#2", "features.2#2", "fuse"]
    assert cost.params == sum(p.numel() for p in model.parameters())
    assert cost.input_label == "1x3x32x32 + 1x3x32x32"


def test_video_shape():
    model = nn.Sequential(nn.Conv3d(3, 8, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3)), nn.BatchNorm3d(8),
                          nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 5))
    cost = mbcost.analyze(model, "1x3x16x112x112")
    assert cost.macs == 1 * 8 * 16 * 56 * 56 * (3 * 3 * 7 * 7) + 8 * 5  # out elements x (C_in x kernel) + fc
    assert cost.macs == torch_macs(model, torch.randn(1, 3, 16, 112, 112))
    assert cost.input == (1, 3, 16, 112, 112) and cost.input_label == "1x3x16x112x112"


class SharedPositionEncoding(nn.Module):
    """One conditional position encoding (a depthwise conv) registered under every block: tied parameters."""

    def __init__(self) -> None:
        super().__init__()
        cpe = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.blocks = nn.ModuleList()
        for _ in range(3):
            block = nn.Module()
            block.cpe = cpe
            block.mlp = nn.Conv2d(16, 16, 1)
            self.blocks.append(block)

    def forward(self, x):
        for block in self.blocks:
            x = x + block.cpe(x)
            x = block.mlp(x)
        return x


def test_tied_parameters_count_once_and_every_call_costs():
    model = SharedPositionEncoding()
    cost = mbcost.analyze(model, (1, 16, 8, 8))
    unique = {id(p): p.numel() for p in model.parameters()}
    assert cost.params == sum(unique.values()) == (16 * 9 + 16) + 3 * (16 * 16 + 16)
    # three calls of the shared depthwise conv, three pointwise convs
    assert cost.macs == 3 * (16 * 8 * 8 * 9) + 3 * (16 * 8 * 8 * 16)
    assert cost.macs == torch_macs(model, torch.randn(1, 16, 8, 8))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.big = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 1e9:  # never true for random data: the branch depends on values
            y = self.big(y)
        return y.flatten(1)[:, torch.nonzero(y.flatten(1)[0] > -1e9).flatten()]


def test_data_dependent_forward_falls_back_to_a_real_cpu_run():
    model = DataDependent()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cost = mbcost.analyze(model, 16)
    assert cost.execution == "real"
    assert "meta" in cost.execution_note and "item" in cost.execution_note.lower() or "nonzero" in cost.execution_note
    assert cost.macs == 4 * 14 * 14 * 27 == torch_macs(model, torch.randn(1, 3, 16, 16))
    assert cost.to_dict()["execution"] == "real"
    assert model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(AnalysisError, match=r"meta device.*module \(root\) \(DataDependent\).*--execute real"):
        mbcost.analyze(model, 16, execute="meta")
    assert mbcost.analyze(model, 16, execute="real").macs == cost.macs


def test_meta_device_model_runs_real_after_materialising_a_copy():
    with torch.device("meta"):
        model = DataDependent()
    cost = mbcost.analyze(model, 16)
    assert cost.execution == "real" and cost.macs == 4 * 14 * 14 * 27
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_a_spec_runs_real_at_the_analysed_dtype(dtype):
    # the real run's model is built at --dtype as its inputs are (it was float32 whatever --dtype said)
    meta = mbcost.analyze("v1@0.25", 32, dtype=dtype)
    real = mbcost.analyze("v1@0.25", 32, dtype=dtype, execute="real")
    assert real.execution == "real" and real.dtype == dtype
    assert (real.params, real.macs, real.activation_bytes) == (meta.params, meta.macs, meta.activation_bytes)


def test_forward_that_fails_on_meta_and_on_cpu_names_the_module_and_op():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(4, 8, 3))  # the second conv expects 4 channels
    with pytest.raises(AnalysisError) as err:
        mbcost.analyze(model, 16)
    text = str(err.value)
    assert "module 1 (Conv2d)" in text and "aten.convolution" in text
    assert "meta device" in text and "on the CPU" in text and "\n" not in text


def test_a_real_run_that_would_not_fit_is_refused_with_the_estimate(monkeypatch):
    monkeypatch.setattr("mbcost.host.available_cpu_memory", lambda: 1_000_000)  # 1 MB free
    with pytest.raises(AnalysisError, match=r"real CPU forward would need about .* MB .* only 1.00 MB"):
        mbcost.analyze(DataDependent(), 512)  # the input alone is 3 MB


def test_the_caller_module_keeps_its_attributes_after_a_meta_run():
    class Caches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.anchors = [torch.ones(2)]

        def forward(self, x):
            self.anchors = [a.to(x.device) for a in self.anchors]  # rebinds an attribute to the input's device
            return self.conv(x)

    model = Caches()
    mbcost.analyze(model, 8)
    assert model.anchors[0].device.type == "cpu"
    assert model.training


def test_a_cache_the_forward_fills_in_place_is_filled_on_the_walks_copy():
    """timm's LeViT and EfficientFormer cache their attention biases in a dict attribute, filled in place by
    the first eval forward: the walk's meta tensor must not land in the caller's dict, and every analysis
    sees the op that fills it, as the first did."""

    class CachedBias(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(8, 8))
            self.idx = (0, 2, 4, 6)
            self.cache: dict = {}
            self.seen: list = []

        def forward(self, x):
            key = str(x.device)
            if key not in self.cache:
                self.cache[key] = self.bias[list(self.idx)]  # an ``index`` op on the first forward only
                self.seen.append(key)
            return x @ self.cache[key]

    class NestedCache(CachedBias):  # the cache one level down, and a set
        def __init__(self) -> None:
            super().__init__()
            self.cache = {"bias": {}, "keys": set()}
            self.seen = [[]]

        def forward(self, x):
            cache = self.cache["bias"]
            if str(x.device) not in cache:
                cache[str(x.device)] = self.bias[list(self.idx)]
                self.cache["keys"].add(str(x.device))
                self.seen[0].append(str(x.device))
            return x @ cache[str(x.device)]

    x = torch.zeros(2, 4)
    for model, empty in ((CachedBias().eval(), ({}, [])), (NestedCache().eval(), ({"bias": {}, "keys": set()}, [[]]))):
        first, again = mbcost.analyze(model, x), mbcost.analyze(model, x)
        assert [u.op for u in first.uncounted] == ["index"]
        assert again.uncounted == first.uncounted and again.layers == first.layers
        assert (model.cache, model.seen) == empty


@pytest.mark.parametrize(("inputs", "message"), [
    ("abc", "bad input size"),
    ("1x3x0x8", "out of range"),
    ("1x128:int3", "unknown input dtype"),
    ({"1bad": 224}, "bad keyword input name"),
    ([], "no inputs"),
])
def test_bad_inputs_raise_one_line_spec_errors(inputs, message):
    with pytest.raises(SpecError, match=message):
        mbcost.analyze(nn.Conv2d(3, 3, 1), inputs)


# -- layouts and dtypes the shortcuts must get right (each model runs in PyTorch itself) ------------


class IntDivision(nn.Module):
    def forward(self, a, b):
        return (a / b).mean(-1)  # int / int is a float


class ExpandedToken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Parameter(torch.randn(1, 4, 8))

    def forward(self, x):
        return nn.functional.gelu(self.tok.expand(x.shape[0], -1, -1)).view(-1, 8).sum() + x  # dense result


class TransposedSoftmax(nn.Module):
    def forward(self, x):
        return torch.softmax(x.transpose(1, 2), -1).view(x.shape[0], -1)  # softmax returns contiguous


class PromotedAdd(nn.Module):
    def forward(self, ids, x):
        return (ids + x.transpose(1, 2)).view(ids.shape[0], -1)  # the first operand decides the layout


class ChannelsLastView(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1).view(x.shape[0], -1)


@pytest.mark.parametrize(("model", "inputs"), [
    (IntDivision(), (torch.randint(1, 5, (2, 8)), torch.randint(1, 5, (2, 8)))),
    (ExpandedToken(), torch.randn(2, 16)),
    (TransposedSoftmax(), torch.randn(2, 8, 6)),
    (PromotedAdd(), (torch.randint(0, 5, (2, 6, 8)), torch.randn(2, 8, 6))),
    (ChannelsLastView(), torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_valid_models_run_on_meta_as_they_run_in_pytorch(model, inputs):
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    model(*args)  # PyTorch runs it
    assert mbcost.analyze(model, inputs, execute="meta").execution == "meta"


@pytest.mark.parametrize("model", [nn.ConvTranspose2d(3, 4, 3, stride=1, output_padding=1),
                                   nn.MaxPool2d(2, padding=2)], ids=["output_padding", "pool_padding"])
def test_models_pytorch_refuses_are_refused(model):
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 3, 8, 8))
    with pytest.raises(AnalysisError, match="meta device"):
        mbcost.analyze(model, (1, 3, 8, 8), execute="meta")


_UPSAMPLINGS = [
    ("upsample_nearest1d", 1, ()), ("_upsample_nearest_exact1d", 1, ()), ("upsample_linear1d", 1, (False,)),
    ("upsample_nearest2d", 2, ()), ("_upsample_nearest_exact2d", 2, ()), ("upsample_bilinear2d", 2, (True,)),
    ("upsample_bicubic2d", 2, (False,)), ("upsample_nearest3d", 3, ()), ("_upsample_nearest_exact3d", 3, ()),
    ("upsample_trilinear3d", 3, (False,))]


def _kernel_or_error(op, args, kwargs):
    try:
        kernel = op(*args, **kwargs)
    except RuntimeError:
        return "refused"
    return kernel.shape, kernel.stride(), kernel.dtype


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "one_channel", "transposed"])
@pytest.mark.parametrize(("name", "dims", "extra"), _UPSAMPLINGS, ids=[u[0] for u in _UPSAMPLINGS])
def test_an_upsampling_is_answered_as_its_meta_kernel_answers(name, dims, extra, layout):
    from mbcost.cost.ops import SHORTCUTS

    shortcut, op = SHORTCUTS[name], getattr(torch.ops.aten, name)
    keywords = {"align_corners": extra[0]} if extra else {}
    answered = 0
    for dtype, spatial in ((torch.float16, 5), (torch.float32, 1), (torch.float32, 0)):
        x = torch.empty(2, 1 if layout == "one_channel" else 3, *(spatial,) * dims, dtype=dtype, device="meta")
        if layout == "channels_last" and dims > 1:
            x = x.contiguous(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)
        elif layout == "transposed":
            x = x.transpose(1, 2)
        for size in ([7] * dims, [1] * dims, [0] * dims, [7] * (dims + 1)):
            calls = [(op.default, (x, size, *extra), {}), (op.vec, (x, size, *extra, None), {}),
                     (op.vec, (x, size, *extra, [2.0] * dims), {}),  # both: refused by the kernel
                     (op.default, (x,), {"output_size": size, **keywords})]
            for overload, args, kwargs in calls:
                answer = shortcut(args, kwargs)
                if answer is not None:  # else the kernel runs, and answers or refuses as it does
                    answered += 1
                    assert (answer.shape, answer.stride(), answer.dtype) == _kernel_or_error(overload, args, kwargs)
    if layout == "contiguous" or layout == "channels_last" and dims == 2:  # the layouts models give it: answered
        assert answered > 0


# -- the walker's memo of shortcut answers (one signature, one answer) -------------------------------------------


class MixedScalars(nn.Module):
    """The same shapes reach one op with different dtypes, layouts and scalar types: a memo keyed on
    shapes alone would hand the later calls the first call's answer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x, ids):
        a = self.conv(x)
        b = self.conv(x.contiguous(memory_format=torch.channels_last))  # same shapes, channels-last out
        flat = b.permute(0, 2, 3, 1).view(-1)  # a view only of a channels-last b
        c = (ids * 2).sum() + (ids * 2.0).sum()  # 2 == 2.0, but int64 x int stays int64, x float is float
        return a.sum() + flat.sum(), c


def _layers(cost):
    return [(r.name, r.op, r.input_shape, r.output_shape, r.macs, r.other_ops, r.input_bytes, r.output_bytes,
             r.weight_bytes) for r in cost.layers]


def test_memoised_answers_match_a_fresh_walk_and_the_real_cpu_run():
    from mbcost.cost import answers

    model = MixedScalars().eval()
    inputs = (torch.randn(2, 4, 8, 8), torch.randint(0, 5, (2, 8), dtype=torch.int64))
    answers.forget()
    cold = mbcost.analyze(model, inputs, execute="meta")
    assert answers.remembered(), "the walk memoised nothing"
    warm = mbcost.analyze(model, inputs, execute="meta")  # every shortcut op answered from the memo
    real = mbcost.analyze(model, inputs, execute="real")  # PyTorch's own kernels on the CPU
    assert _layers(cold) == _layers(warm) == _layers(real)
    assert cold.peak_activation_bytes == warm.peak_activation_bytes


class MetaKernels(nn.Module):
    """Ops answered by their meta kernel (no shortcut): a flip and a ``cat`` (new tensors), in-place and plain
    views (which share their argument's storage, so the walk's lifetimes must see them as views)."""

    def forward(self, x):
        y = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False).flip(2)
        z = torch.cat([y, y * 2], dim=1)
        v = z.view(z.shape[0], -1).unsqueeze_(1)  # unsqueeze_ changes v's shape in place
        # the same shapes with other dtypes and layouts as keywords: each keyword is part of the answer's key
        wide, half = z.to(dtype=torch.float64), z.to(dtype=torch.float16)
        last = z.clone(memory_format=torch.channels_last)
        return torch.tanh(v) + v.sum(), torch.tanh(wide) + torch.tanh(half).double(), last.permute(0, 2, 3, 1).view(-1)


def test_meta_kernel_answers_and_views_are_memoised_and_in_place_ops_are_not(monkeypatch):
    from mbcost.cost import answers
    from mbcost.cost.walk import Walk

    model, x = MetaKernels().eval(), torch.randn(2, 3, 8, 8)
    answers.forget()
    cold = mbcost.analyze(model, x, execute="meta")
    ran: list[str] = []
    run_meta = Walk.run_meta

    def counted(walk, func, *args):
        ran.append(func.overloadpacket.__name__)
        return run_meta(walk, func, *args)

    monkeypatch.setattr(Walk, "run_meta", counted)
    warm = mbcost.analyze(model, x, execute="meta")
    real = mbcost.analyze(model, x, execute="real")  # PyTorch's own kernels on the CPU
    # the flip's meta kernel and the views ran in the cold walk only (a view's answer is a view of its
    # argument's storage); the in-place unsqueeze_ runs every time
    assert not {"flip", "view", "permute"} & set(ran) and "unsqueeze_" in ran
    assert _layers(cold) == _layers(warm) == _layers(real)
    assert cold.peak_activation_bytes == warm.peak_activation_bytes


def test_the_walk_leaves_the_garbage_collector_as_it_found_it():
    import gc

    assert gc.isenabled()
    mbcost.analyze(nn.Linear(4, 4), (1, 4))
    assert gc.isenabled()
    with pytest.raises(AnalysisError):
        mbcost.analyze(nn.Linear(4, 4), (1, 5), execute="meta")  # fails inside the paused walk
    assert gc.isenabled()
    gc.disable()
    try:
        mbcost.analyze(nn.Linear(4, 4), (1, 4))
        assert not gc.isenabled()  # a caller who paused it keeps it paused
    finally:
        gc.enable()


def test_integer_division_follows_the_default_dtype_of_each_analysis():
    model = IntDivision()
    ids = (torch.randint(1, 5, (2, 8)), torch.randint(1, 5, (2, 8)))
    before = torch.get_default_dtype()
    try:
        for dtype, size in ((torch.float32, 4), (torch.float64, 8), (torch.float32, 4)):
            torch.set_default_dtype(dtype)
            real = model(*ids)
            assert real.dtype == dtype
            cost = mbcost.analyze(model, ids, execute="meta")
            div = next(r for r in cost.layers if r.op.startswith("div"))
            assert div.output_bytes == 2 * 8 * size  # int / int: the default dtype at the time, not a memo's
    finally:
        torch.set_default_dtype(before)


class Recurrent(nn.Module):
    """A two-layer recurrent network over a (batch, time, features) sequence, then a linear head."""

    def __init__(self, kind: str, **settings) -> None:
        super().__init__()
        self.rnn = getattr(nn, kind)(16, 32, num_layers=2, batch_first=True, **settings)
        self.head = nn.Linear(self.rnn.proj_size or 32 * (2 if self.rnn.bidirectional else 1), 4)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


# Per time step and sample, a recurrent layer multiplies its input (I) and its hidden state (H) by
# each gate's weights: gates x (I + H) x H MACs, 4 gates for an LSTM, 3 for a GRU, 1 for a plain RNN;
# a second direction doubles a layer, and the next layer's input is H (2H when bidirectional, P with
# an LSTM projection of size P, which adds P x H per step). Batch 3, 10 steps, I = 16, H = 32, head 4.
RECURRENT_CASES = {
    # layer 0: 4 x (16 + 32) x 32 = 6144, layer 1: 4 x (32 + 32) x 32 = 8192; head 32 x 4 once per sample
    "lstm": (("LSTM", {}), 30 * (6144 + 8192) + 3 * 32 * 4),
    # both directions: layer 0: 2 x 4 x (16 + 32) x 32 = 12288, layer 1: 2 x 4 x (64 + 32) x 32 = 24576
    "lstm-bidirectional": (("LSTM", {"bidirectional": True}), 30 * (12288 + 24576) + 3 * 64 * 4),
    # projection P = 8: layer 0: 4 x 32 x (16 + 8) + 8 x 32 = 3328, layer 1: 4 x 32 x (8 + 8) + 8 x 32 = 2304
    "lstm-projection": (("LSTM", {"proj_size": 8}), 30 * (3328 + 2304) + 3 * 8 * 4),
    # layer 0: 3 x (16 + 32) x 32 = 4608, layer 1: 3 x (32 + 32) x 32 = 6144
    "gru": (("GRU", {}), 30 * (4608 + 6144) + 3 * 32 * 4),
    # layer 0: (16 + 32) x 32 = 1536, layer 1: (32 + 32) x 32 = 2048
    "rnn": (("RNN", {}), 30 * (1536 + 2048) + 3 * 32 * 4),
}


def meta_flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    """FlopCounterMode's FLOPs of a forward of a meta-device copy of ``model``, where no fused CPU kernel
    hides a product."""
    with torch.device("meta"):
        twin = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter:
        twin(torch.empty(shape, device="meta"))
    return counter.get_total_flops()


@pytest.mark.parametrize("case", list(RECURRENT_CASES))
def test_recurrent_layers_cost_the_same_on_the_cpu_as_on_meta(case):
    """On the CPU an LSTM runs as oneDNN's fused ``mkldnn_rnn_layer`` (FlopCounterMode counts 0 for it);
    the real run must still see and count its products, as the meta run does."""
    (kind, settings), by_hand = RECURRENT_CASES[case]
    torch.manual_seed(0)
    model = Recurrent(kind, **settings)
    with torch.device("meta"):
        on_meta = Recurrent(kind, **settings)
    # the CPU model runs on meta too: torch checks its weights' device before issuing any op
    meta = mbcost.analyze(model, [3, 10, 16], execute="meta")
    assert _layers(meta) == _layers(mbcost.analyze(on_meta, [3, 10, 16], execute="meta"))
    real = mbcost.analyze(model, [3, 10, 16], execute="real")
    assert real.execution == "real" and meta.execution == "meta"
    assert meta.macs == by_hand == meta_flops(model, (3, 10, 16)) // 2
    assert real.macs == by_hand
    # every elementwise op too (the first layer's input projection is one matmul + bias add for the whole
    # sequence on the CPU, a bias add per step on meta: the same adds, filed apart)
    assert real.elementwise_ops == meta.elementwise_ops
    assert not real.uncounted and not meta.uncounted
    assert all(p.device.type == "cpu" for p in model.parameters()) and torch.backends.mkldnn.enabled
    assert all(not w.is_meta for w in model.rnn._flat_weights)  # the caller's layer is unchanged
    train, train_real = (mbcost.analyze(model, [3, 10, 16], mode="train", execute=e) for e in ("meta", "real"))
    assert train.backward_macs == train_real.backward_macs > 0


def test_a_data_dependent_model_with_an_lstm_keeps_its_macs_on_the_real_fallback():
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(16, 32, batch_first=True)

        def forward(self, x):
            out = self.rnn(x)[0]
            return out if out.sum() > 0 else -out  # reads the data: the meta run stops here

    with torch.device("meta"):
        model = Gated()
    cost = mbcost.analyze(model, [2, 5, 16])
    assert cost.execution == "real"
    assert cost.macs == 2 * 5 * 4 * (16 + 32) * 32  # batch x steps x gates x (I + H) x H


class _HeadReadByItsParent(nn.Module):
    """A head whose weights the parent's own op reads, and a branch the forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.head = nn.Linear(8, 10)
        self.spare = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.body(x).mean((2, 3)), self.head.weight, self.head.bias)


def test_params_no_op_used_are_listed_by_the_top_of_each_subtree():
    model = _HeadReadByItsParent()
    cost = mbcost.analyze(model, 16)

    def owned(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert [(u.module, u.module_type, u.params) for u in cost.unattributed] == [
        ("head", "Linear", owned(model.head)), ("spare", "Sequential", owned(model.spare))]
    assert cost.params - cost.unattributed_params == owned(model.body)
    assert mbcost.analyze("v1@0.25", 32).unattributed == ()
