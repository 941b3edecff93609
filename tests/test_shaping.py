"""Tests of eggroll_np.shaping: every registered shaping, ties, invariances and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eggroll_np import shaping
from eggroll_np.shaping import SHAPINGS, centered_rank, group_zscore, shape_fitness, zscore

from .strategies import fitness_vectors


def _apply(name, f):
    return shape_fitness(f, name, group_size=2 if name == "group_zscore" else None)


@pytest.mark.parametrize("name", sorted(SHAPINGS))
@settings(max_examples=30, deadline=None)
@given(f=fitness_vectors(8))
def test_every_shaping_is_pure_float64_and_finite(name, f):
    before = f.copy()
    w = _apply(name, f)
    assert w.shape == f.shape
    assert w.dtype == np.float64
    assert np.all(np.isfinite(w))
    np.testing.assert_array_equal(f, before)  # input untouched


@pytest.mark.parametrize("name", ["centered_rank", "zscore", "group_zscore"])
@settings(max_examples=30, deadline=None)
@given(f=fitness_vectors(8))
def test_centering_shapings_sum_to_zero_and_are_antisymmetric(name, f):
    w = _apply(name, f)
    assert abs(w.sum()) < 1e-9
    np.testing.assert_allclose(_apply(name, -f), -w, atol=1e-12)


def test_none_is_identity_copy():
    f = np.array([3.0, -1.0, 2.0])
    w = shaping.none(f)
    np.testing.assert_array_equal(w, f)
    assert w is not f


def test_centered_rank_values_and_ties():
    np.testing.assert_allclose(centered_rank(np.array([10.0, -3.0, 7.0])), [0.5, -0.5, 0.0])
    # ranks 0..4 of [1, 5, 5, 2, 9]: 0, (2+3)/2, (2+3)/2, 1, 4 -> /4 - 0.5
    np.testing.assert_allclose(
        centered_rank(np.array([1.0, 5.0, 5.0, 2.0, 9.0])), [-0.5, 0.125, 0.125, -0.25, 0.5]
    )
    np.testing.assert_array_equal(centered_rank(np.full(4, 3.0)), np.zeros(4))
    np.testing.assert_array_equal(centered_rank(np.array([1.0])), [0.0])


@settings(max_examples=50, deadline=None)
@given(f=fitness_vectors(16))
def test_centered_rank_range_and_monotone_invariance(f):
    w = centered_rank(f)
    assert w.min() >= -0.5
    assert w.max() <= 0.5
    np.testing.assert_array_equal(centered_rank(4.0 * f), w)  # an exact increasing map
    np.testing.assert_allclose(centered_rank(-f), -w, atol=1e-15)
    order = np.argsort(f, kind="stable")
    assert np.all(np.diff(w[order]) >= 0)


def test_zscore():
    w = zscore(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose([w.mean(), w.std()], [0.0, 1.0], atol=1e-12)
    np.testing.assert_array_equal(zscore(np.full(5, 2.5)), np.zeros(5))
    # the float mean of three 0.1s is not 0.1: rounding noise must not become +-1 weights
    np.testing.assert_array_equal(zscore(np.full(3, 0.1)), np.zeros(3))
    np.testing.assert_array_equal(zscore(np.zeros(0)), np.zeros(0))


@pytest.mark.parametrize("name", sorted(SHAPINGS))
def test_extreme_fitness_values_stay_finite_without_warnings(name):
    for f in (np.array([1e308, -1e308, 5e307, 0.0]), np.array([1e-320, 0.0, 0.0, 5e-321])):
        w = _apply(name, f)  # filterwarnings=error: no overflow/underflow warning either
        assert np.all(np.isfinite(w))
    np.testing.assert_allclose(zscore(np.array([1e300, -1e300])), [1.0, -1.0])  # huge but exact


@settings(max_examples=30, deadline=None)
@given(f=fitness_vectors(12))
def test_zscore_is_one_group(f):
    np.testing.assert_array_equal(zscore(f), group_zscore(f, 12))


def test_group_zscore_normalises_each_group():
    f = np.array([1.0, 3.0, 10.0, 10.0, -4.0, 4.0])
    np.testing.assert_allclose(group_zscore(f, 2), [-1, 1, 0, 0, -1, 1])
    np.testing.assert_allclose(group_zscore(f, 6), zscore(f))


@given(st.integers(-3, 12).filter(lambda g: g < 1 or 12 % g))
def test_group_zscore_bad_group_size(g):
    with pytest.raises(ValueError, match="group_size"):
        group_zscore(np.zeros(12), g)


def test_shape_fitness_validation():
    with pytest.raises(ValueError, match=r"shaping must be one of \['centered_rank', 'group_z"):
        shape_fitness(np.zeros(2), "rank")
    with pytest.raises(ValueError, match="needs group_size"):
        shape_fitness(np.zeros(2), "group_zscore")


@settings(max_examples=200, deadline=None)
@given(
    f=st.lists(
        st.sampled_from([0.0, -0.0, 1.0, -2.5, 1e300, -1e-300, np.inf, -np.inf, np.nan])
        | st.floats(allow_nan=True),
        min_size=2,
        max_size=40,
    )
)
def test_centered_rank_has_the_bits_of_unique_tie_groups(f):
    # The weights as np.unique's tie groups give them (the definition: the mean rank of each
    # group of equal values), bit for bit: tell's update depends on every bit.
    f = np.array(f, dtype=np.float64)
    _, inverse, counts = np.unique(f, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts
    want = (first + (counts - 1) / 2.0)[inverse.reshape(-1)] / (f.size - 1) - 0.5
    assert centered_rank(f).tobytes() == want.tobytes()
