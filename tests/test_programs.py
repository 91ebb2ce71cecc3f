"""The walk's own copy of the module tree, and layer programs (recorded once, replayed after).

The reference for a replayed layer is the same layer traced op by op through the dispatch mode
(``replay=False``): a different path through torch's dispatcher, the layer's Python forward and
the walk's generic bookkeeping. Totals against torchvision's published figures are checked in
``test_torchvision.py``.
"""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

import mbcost
from mbcost.cost import programs
from mbcost.cost import walk as walk_module
from mbcost.cost.walker import trace_model
from mbcost.inputs import resolve_inputs


def _trace_facts(trace):
    return (trace.layers, trace.params, trace.uncounted, trace.peak_activation_bytes, trace.peak_op,
            trace.train_peak_activation_bytes, trace.train_peak_op)


class _Replays:
    """Counts the op calls a walk replays from layer and block programs."""

    def __init__(self, monkeypatch) -> None:
        self.count = self.blocks = 0
        original = walk_module.Walk.replay_program

        def counted(walk, program, *args):
            self.count += sum(type(step) is programs.Step for step in program.steps)
            self.blocks += len(args) > 2 and args[2] is not None  # a block's modules
            return original(walk, program, *args)

        monkeypatch.setattr(walk_module.Walk, "replay_program", counted)


CASES = [
    ("mobilenet_v3_small", 224, False),
    ("mobilenet_v3_small", 160, True),  # training: the backward's costs and the training peak
    ("resnet18", 224, False),
    ("efficientnet_b0", 224, False),
    ("convnext_tiny", 224, False),
    ("vit_b_16", 224, False),
    ("regnet_y_400mf", 224, True),
    ("squeezenet1_1", 224, False),
    # timm's own blocks (functional calls, views, attention), replayed as blocks
    ("timm:mobilevit_xxs", 160, False),
    ("timm:ghostnet_100", 160, False),
    ("timm:deit_tiny_patch16_224", 224, False),
    ("timm:convnext_atto", 160, False),
]


def _model(name):
    if name.startswith("timm:"):
        return pytest.importorskip("timm").create_model(name[5:], pretrained=False).eval()
    return pytest.importorskip("torchvision").models.get_model(name, weights=None).eval()


@pytest.mark.parametrize(("name", "size", "train"), CASES, ids=[f"{n}-{s}{'-train' if t else ''}" for n, s, t in CASES])
def test_replayed_layers_record_what_traced_layers_record(name, size, train, monkeypatch):
    model = _model(name)
    inputs = resolve_inputs(size)
    programs.forget()
    traced = trace_model(model, inputs, execute="meta", replay=False, train=train)
    replays = _Replays(monkeypatch)
    # a program is recorded on a layer's or block's third meeting: the first walk records the layers and
    # blocks it meets three times, the third the rest (the model's own block among them), the fourth replays
    walks = [trace_model(model, inputs, execute="meta", train=train) for _ in range(3)]
    recorded = replays.count
    walks.append(trace_model(model, inputs, execute="meta", train=train))
    assert replays.count - recorded > 50, "the fourth walk replayed (almost) nothing"
    for walk in walks:
        assert _trace_facts(walk) == _trace_facts(traced)


def test_a_text_model_with_token_ids_replays_as_it_traces():
    model = nn.Sequential(nn.Embedding(100, 16), nn.LayerNorm(16), nn.Linear(16, 16), nn.GELU(), nn.Dropout(0.1))
    inputs = resolve_inputs((2, 12), dtype="int64")
    traced = trace_model(model, inputs, execute="meta", replay=False)
    for _ in range(4):  # recorded on the third meeting, replayed from the fourth
        assert _trace_facts(trace_model(model, inputs, execute="meta")) == _trace_facts(traced)


def test_a_layer_changed_in_place_between_analyses_is_analysed_as_it_now_is():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    before = mbcost.analyze(model, 32)
    model[0].stride = (2, 2)  # the same objects, new settings
    after = mbcost.analyze(model, 32)
    strided = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    fresh = mbcost.analyze(strided, 32)
    assert after.layers[0].output_shape == (1, 8, 16, 16) != before.layers[0].output_shape
    assert [(r.name, r.output_shape, r.macs, r.output_bytes) for r in after.layers] == \
        [(r.name, r.output_shape, r.macs, r.output_bytes) for r in fresh.layers]
    model[0].padding = [0, 0]  # a list, as a user may set it: unhashable, so traced, still on meta
    listed = mbcost.analyze(model, 32, execute="meta")
    assert listed.layers[0].output_shape == (1, 8, 15, 15)


def test_weights_converted_in_place_are_seen_by_the_next_analysis():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
    inputs = (1, 3, 16, 16)
    as_float = mbcost.analyze(model, inputs)
    model.to(torch.float16)  # same modules, parameters in another dtype
    as_half = mbcost.analyze(model, inputs, dtype="float16")
    assert as_half.layers[0].weight_bytes * 2 == as_float.layers[0].weight_bytes
    assert as_half.layers[0].output_bytes * 2 == as_float.layers[0].output_bytes


def test_a_layer_with_hooks_runs_them_and_its_ops_are_its_own():
    conv = nn.Conv2d(3, 4, 3)
    calls = []
    conv.register_forward_pre_hook(lambda m, args: (args[0] * 2,))  # an op of the hook's: a mul
    conv.register_forward_hook(lambda m, args, out: calls.append(tuple(out.shape)))
    model = nn.Sequential(conv, nn.ReLU())
    for _ in range(2):
        cost = mbcost.analyze(model, 8)
        assert [(r.module, r.op) for r in cost.layers[:2]] == [("0", "mul"), ("0", "convolution")]
    assert calls == [(1, 4, 6, 6)] * 2


def test_another_tools_global_module_hooks_still_see_every_call():
    from torch.nn.modules.module import register_module_forward_hook

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    plain = mbcost.analyze(model, 8)
    seen = []
    handle = register_module_forward_hook(lambda m, args, out: seen.append(type(m).__name__))
    try:
        hooked = mbcost.analyze(model, 8)
    finally:
        handle.remove()
    assert seen == ["Conv2d", "BatchNorm2d", "ReLU", "Sequential"]
    assert hooked.layers == plain.layers


def test_a_forward_that_rebinds_its_children_changes_only_the_walks_copy():
    class Rebinder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            self.conv.bias = None  # a parameter unregistered ...
            self.conv.register_buffer("seen", torch.ones(1))  # ... a buffer added ...
            self.last_shape = tuple(x.shape)  # ... and an attribute set, all on the module being run
            return self.conv(x)

    model = Rebinder()
    bias = model.conv.bias
    cost = mbcost.analyze(model, 8)
    assert cost.layers[0].op == "convolution"
    assert model.conv.bias is bias and "seen" not in model.conv._buffers and not hasattr(model, "last_shape")


def test_modules_reached_through_plain_lists_and_dicts_are_attributed_and_left_unchanged():
    class Stages(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3)
            self.b = nn.Conv2d(4, 4, 3)
            self.order = [self.a, self.b]  # plain containers of registered children
            self.by_name = {"first": self.a}

        def forward(self, x):
            for stage in self.order:
                stage.calls = getattr(stage, "calls", 0) + 1  # rebinds an attribute of the child
                x = stage(x)
            return x + self.by_name["first"].bias.sum()

    model = Stages()
    cost = mbcost.analyze(model, 16)
    assert [(r.module, r.op) for r in cost.layers][:2] == [("a", "convolution"), ("b", "convolution")]
    assert not hasattr(model.a, "calls") and model.order[0] is model.a


def test_a_class_with_its_own_train_method_has_it_called_on_the_walks_copy():
    class FrozenDropout(nn.Module):
        train_calls = 0

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.drop = nn.Dropout(0.5)

        def train(self, mode: bool = True):
            FrozenDropout.train_calls += 1
            super().train(mode)
            self.drop.eval()  # this model never drops, even in training
            return self

        def forward(self, x):
            return self.drop(self.fc(x))

    model = FrozenDropout().eval()
    cost = mbcost.analyze(model, (2, 4), mode="train")
    assert FrozenDropout.train_calls == 2  # once by eval() above, once on the walk's copy
    assert not model.training and not model.drop.training  # the user's flags are as they were
    assert [(r.module, r.op) for r in cost.layers] == [("fc", "addmm")]  # a training dropout would add 2 ops
    plain = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    assert [r.module for r in mbcost.analyze(plain, (2, 4), mode="train").layers] == ["0", "1", "1"]


def test_a_walk_leaves_nothing_for_the_cyclic_collector():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    programs.forget()
    for _ in range(4):  # walks that record programs (the first three) and one that replays the model's
        gc.collect()
        gc.disable()
        try:
            mbcost.analyze(model, 224)
            unreachable = gc.collect()
        finally:
            gc.enable()
        assert unreachable < 100  # a walk's copies (about 1,000 objects here) go when it ends


def test_a_block_that_rebinds_its_own_state_is_traced_on_each_call():
    class Alternating(nn.Module):
        """A convolution on odd calls, a ReLU on even ones: what it does depends on what it rebinds."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.odd = False

        def forward(self, x):
            self.odd = not self.odd
            return self.conv(x) if self.odd else x.relu()

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Alternating()

        def forward(self, x):
            return self.block(self.block(self.block(self.block(x))))

    model, inputs = Twice().eval(), resolve_inputs(8)
    traced = trace_model(model, inputs, execute="meta", replay=False)
    assert [r.op for r in traced.layers] == ["convolution", "relu", "convolution", "relu"]
    for _ in range(4):  # recorded on the third meeting, replayed from the fourth
        assert _trace_facts(trace_model(model, inputs, execute="meta")) == _trace_facts(traced)


def test_a_block_called_with_one_tensor_twice_or_two_tensors_replays_each_as_traced():
    class Pair(nn.Module):
        def forward(self, a, b):
            return a * 2 if a is b else a + b

    class Calls(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pair = Pair()

        def forward(self, x):
            return self.pair(x, x) + self.pair(x, x.neg())

    model, inputs = Calls().eval(), resolve_inputs(8)
    traced = trace_model(model, inputs, execute="meta", replay=False)
    assert [r.op for r in traced.layers] == ["mul", "add", "add"]
    for _ in range(4):  # recorded on the third meeting, replayed from the fourth
        assert _trace_facts(trace_model(model, inputs, execute="meta")) == _trace_facts(traced)


def test_a_block_whose_class_forward_is_patched_is_recorded_again():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x)

    model, inputs = nn.Sequential(*(Block() for _ in range(4))).eval(), resolve_inputs(8)
    assert [r.op for r in trace_model(model, inputs, execute="meta").layers] == ["convolution"] * 4  # 4th replayed
    Block.forward = lambda self, x: self.conv(x).relu()
    traced = trace_model(model, inputs, execute="meta", replay=False)
    assert [r.op for r in traced.layers] == ["convolution", "relu"] * 4
    assert _trace_facts(trace_model(model, inputs, execute="meta")) == _trace_facts(traced)


def test_settings_equal_in_value_but_not_in_type_are_different_blocks():
    class Scale(nn.Module):
        def __init__(self, factor) -> None:
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    x = torch.ones(1, 3, 8, 8, dtype=torch.int64)
    model = nn.Sequential(Scale(2), Scale(2.0)).eval()  # int64 * 2 stays int64; * 2.0 becomes float32
    inputs = resolve_inputs(x)
    traced = trace_model(model, inputs, execute="meta", replay=False)
    assert [r.output_bytes for r in traced.layers] == [1536, 768]
    for _ in range(4):  # recorded on the third meeting, replayed from the fourth
        assert _trace_facts(trace_model(model, inputs, execute="meta")) == _trace_facts(traced)


class _Unit(nn.Module):
    """A block of a class of this file (not torch.nn's), as a user's model has."""

    def __init__(self, c: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return (self.bn(self.conv(x)) + x if self.conv.stride == (1, 1) else self.bn(self.conv(x))).relu()


def test_a_block_met_once_is_traced_and_one_met_again_is_replayed_in_the_first_walk(monkeypatch):
    model = nn.Sequential(_Unit(8, 2), _Unit(8), _Unit(8), _Unit(8), _Unit(8), _Unit(8)).eval()
    inputs = resolve_inputs((1, 8, 16, 16))
    traced = trace_model(model, inputs, execute="meta", replay=False)
    programs.forget()
    replays = _Replays(monkeypatch)
    first = trace_model(model, inputs, execute="meta")
    blocks = [key for key in programs.PROGRAMS if key[1][0] is programs.BLOCK]
    # the strided unit and the Sequential are met once: no program; the five others are one block, recorded on
    # its third meeting and replayed on the fourth and fifth
    assert len(blocks) == 1 and programs.PROGRAMS[blocks[0]] is not None
    assert replays.blocks == 2
    assert _trace_facts(first) == _trace_facts(traced)


def test_a_block_changed_in_place_after_its_program_was_recorded_is_analysed_as_it_now_is():
    # the block's hint, kept from the first analyses, is stale after the change: it may only cost time
    model = nn.Sequential(*(_Unit(8) for _ in range(5))).eval()
    inputs = resolve_inputs((1, 8, 16, 16))
    programs.forget()
    for _ in range(3):
        trace_model(model, inputs, execute="meta")
    model[3].conv.stride = (2, 2)  # the fourth unit, replayed until now, is a strided unit from here on
    model[3].conv.padding = (1, 1)
    traced = trace_model(model, inputs, execute="meta", replay=False)
    assert [r.output_shape for r in traced.layers if r.module == "3.conv"] == [(1, 8, 8, 8)]
    for _ in range(3):
        assert _trace_facts(trace_model(model, inputs, execute="meta")) == _trace_facts(traced)


class _NoHash:
    def __hash__(self):
        raise ValueError("no hash")


class _Odd(nn.Module):
    """A block whose attribute cannot be hashed, or with a nested-tensor buffer (no sizes): traced, not replayed."""

    def __init__(self, nested: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        if nested:
            self.register_buffer("nt", torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]))
        else:
            self.odd = _NoHash()

    def forward(self, x):
        return self.conv(x)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")
@pytest.mark.parametrize("nested", [False, True], ids=["unhashable_attribute", "nested_buffer"])
def test_a_block_that_cannot_be_keyed_is_traced(nested):
    model, inputs = nn.Sequential(_Odd(nested), _Odd(nested)).eval(), resolve_inputs((1, 3, 8, 8))
    traced = trace_model(model, inputs, execute="meta", replay=False)
    programs.forget()
    for _ in range(4):
        assert _trace_facts(trace_model(model, inputs, execute="meta")) == _trace_facts(traced)


def test_modules_of_a_replayed_block_reached_from_outside_it_are_the_walks_copies():
    class Reach(nn.Module):
        """A stage replayed as a block, one of its units then called on its own, a Sequential's units called
        one by one, and a setting of a later block's unit changed before that block is called."""

        def __init__(self) -> None:
            super().__init__()
            self.stage = nn.Sequential(*(_Unit(8) for _ in range(3)))
            self.head = nn.Sequential(_Unit(8), _Unit(8))
            self.tail = nn.Sequential(_Unit(8), _Unit(8))

        def forward(self, x):
            x = self.stage(x)
            x = self.stage[1](x)
            for unit in self.head:
                x = unit(x)
            self.tail[0].conv.stride = (2, 2)  # on the walk's copy: the tail's first unit is strided
            return self.tail(x)

    model, inputs = Reach().eval(), resolve_inputs((1, 8, 16, 16))
    traced = trace_model(model, inputs, execute="meta", replay=False)
    expected = [("stage.0.conv", (1, 8, 16, 16)), ("stage.1.conv", (1, 8, 16, 16)), ("stage.2.conv", (1, 8, 16, 16)),
                ("stage.1.conv", (1, 8, 16, 16)), ("head.0.conv", (1, 8, 16, 16)), ("head.1.conv", (1, 8, 16, 16)),
                ("tail.0.conv", (1, 8, 8, 8)), ("tail.1.conv", (1, 8, 8, 8))]
    assert [(r.module, r.output_shape) for r in traced.layers if r.op == "convolution"] == expected
    programs.forget()
    for _ in range(5):  # blocks recorded on their third meeting, replayed after
        assert _trace_facts(trace_model(model, inputs, execute="meta")) == _trace_facts(traced)
    assert model.tail[0].conv.stride == (1, 1) and all("_call_impl" not in m.__dict__ for m in model.modules())


def test_a_block_not_copied_yet_is_keyed_with_the_training_flags_its_copies_get():
    def unit():
        return nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Dropout(0.5))

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stage = nn.Sequential(unit(), unit())

        def forward(self, x):
            return self.stage(x)

    class Frozen(Plain):
        def train(self, mode: bool = True):  # its own train, which leaves its children's flags as they are
            self.training = mode
            return self

    plain, frozen = Plain().eval(), Frozen()
    for u in plain.stage:  # the user's flags are the same in both: each unit's own off, its layers' on
        u.train()
        u.training = False
    frozen.stage.training = False
    for u in frozen.stage:
        u.training = False
    inputs = resolve_inputs((1, 8, 16, 16))
    programs.forget()
    for _ in range(3):  # the units' program, recorded with their layers in eval mode, as every copy of them is
        trace_model(plain, inputs, execute="meta")
    traced = trace_model(frozen, inputs, execute="meta", replay=False)
    # the copies keep the user's flags: each unit's dropout scales its mask and multiplies by it
    assert [r.op for r in traced.layers] == ["convolution", "div", "mul"] * 2
    for _ in range(3):  # so its units are other blocks than the plain model's
        assert _trace_facts(trace_model(frozen, inputs, execute="meta")) == _trace_facts(traced)
