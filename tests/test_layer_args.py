"""Population layers given ragged lists or absurd conv2d geometry: a ValueError naming the
argument (issue 25), not NumPy's "setting an array element with a sequence", "maximum allowed
dimension exceeded" or an OverflowError."""

from __future__ import annotations

import numpy as np
import pytest

import eggroll_np as egg


@pytest.fixture(scope="module")
def pop():
    params = {
        "W": np.zeros((4, 3), np.float32),
        "b": np.zeros(3, np.float32),
        "E": np.zeros((5, 2), np.float32),
        "K": np.zeros((2, 1, 3, 3), np.float32),
    }
    return egg.ask(params, egg.init(params, population=8))


_RAGGED = [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]]


def test_ragged_x_of_linear_names_x(pop):
    with pytest.raises(ValueError, match=r"^x is a ragged nested list"):
        pop.linear(_RAGGED, "W", "b")


def test_ragged_x_of_matmul_names_x(pop):
    with pytest.raises(ValueError, match=r"^x is a ragged nested list"):
        pop.matmul(_RAGGED, "W")


def test_ragged_x_of_conv2d_names_x(pop):
    with pytest.raises(ValueError, match=r"^x is a ragged nested list"):
        pop.conv2d([[[[1.0, 2.0, 3.0], [1.0]]]], "K")


def test_ragged_ids_of_embed_name_ids(pop):
    with pytest.raises(ValueError, match=r"^ids is a ragged nested list"):
        pop.embed([[1, 2], [3]], "E")


def test_rectangular_lists_still_work(pop):
    assert pop.linear([[1.0, 2.0, 3.0, 4.0]], "W").shape == (8, 1, 3)
    assert pop.embed([[1, 2], [3, 4]], "E").shape == (8, 2, 2, 2)


_X = np.zeros((1, 1, 5, 5), np.float32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"padding": 2**40}, r"padding must be in \[0, 2\^31\), got 1099511627776"),
        ({"padding": (0, 2**63)}, r"padding must be in \[0, 2\^31\)"),
        ({"stride": 2**63}, r"stride must be in \[1, 2\^31\), got 9223372036854775808"),
        ({"stride": (1, 2**40)}, r"stride must be in \[1, 2\^31\)"),
        ({"padding": 2**30}, r"padding \(1073741824, 1073741824\) makes the padded input"),
    ],
)
def test_huge_conv2d_stride_or_padding_is_a_value_error_naming_it(pop, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pop.conv2d(_X, "K", **kwargs)


def test_a_stride_beyond_the_input_is_still_legal(pop):
    # torch semantics: one output position per axis
    assert pop.conv2d(_X, "K", stride=2**30).shape == (8, 1, 2, 1, 1)
