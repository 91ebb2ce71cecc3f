"""``compare_conv``: exact counts against the MobileNet paper's closed form 1/N + 1/K^2."""

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbcost.cost.conv import compare_conv
from mbcost.errors import SpecError


def test_mobilenet_layer_example():
    c = compare_conv(512, 512, 3, 14)
    assert c.standard.macs == 3 * 3 * 512 * 512 * 14 * 14
    assert c.separable.macs == (3 * 3 * 512 + 512 * 512) * 14 * 14
    assert c.standard.params == 3 * 3 * 512 * 512
    assert c.separable.params == 3 * 3 * 512 + 512 * 512
    assert c.macs_ratio == c.formula_ratio == Fraction(1, 512) + Fraction(1, 9)
    assert 8 < 1 / c.macs_ratio < 9  # "8 to 9 times less computation"
    assert [layer.category for layer in c.separable.layers] == ["dwconv", "pwconv"]


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 96), n=st.integers(1, 96), k=st.sampled_from([1, 3, 5, 7]), f=st.integers(1, 40),
       stride=st.integers(1, 3), extra_pad=st.integers(0, 2))
def test_exact_ratio_equals_closed_form_without_bias(m, n, k, f, stride, extra_pad):
    """Stride and padding change both output sizes equally, so the MAC ratio stays 1/N + 1/K^2."""
    pad = (k - 1) // 2 + extra_pad
    c = compare_conv(m, n, k, f, stride=stride, padding=pad)
    assert c.macs_ratio == Fraction(1, n) + Fraction(1, k * k)
    assert c.params_ratio == c.formula_ratio


def test_bias_breaks_the_parameter_ratio_but_not_macs():
    c = compare_conv(32, 64, 3, 56, bias=True)
    assert c.standard.params == 9 * 32 * 64 + 64
    assert c.separable.params == (9 * 32 + 32) + (32 * 64 + 64)
    assert c.params_ratio != c.formula_ratio
    assert c.macs_ratio == c.formula_ratio
    assert any("bias" in note for note in c.notes)


def test_stride_two_output_size():
    c = compare_conv(32, 64, 3, 112, stride=2)
    assert c.output_size == (56, 56)
    assert c.to_dict()["output"] == [56, 56]


@pytest.mark.parametrize("kwargs", [dict(in_channels=0, out_channels=4), dict(in_channels=4, out_channels=4, kernel=0),
                                    dict(in_channels=4, out_channels=4, stride=0),
                                    dict(in_channels=4, out_channels=4, kernel=9, size=2, padding=0)])
def test_bad_conv_arguments(kwargs):
    with pytest.raises(SpecError):
        compare_conv(**kwargs)
