"""Hypothesis strategies for parameter trees and their pieces, shared by the engine's tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "float_dtypes",
    "leaf_shapes",
    "float_arrays",
    "param_trees",
    "fitness_vectors",
    "matrix_problem",
]

_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=6)


def float_dtypes() -> st.SearchStrategy[np.dtype]:
    """float32 or float64."""
    return st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])


def leaf_shapes(max_dims: int = 3, max_side: int = 6) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes of 0 to max_dims dimensions, each side 1..max_side."""
    return hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=1, max_side=max_side)


def float_arrays(dtype: Any = None, shape: Any = None) -> st.SearchStrategy[np.ndarray]:
    """Arrays of finite values in [-10, 10] of a float dtype."""
    dtypes = float_dtypes() if dtype is None else st.just(np.dtype(dtype))
    shapes = leaf_shapes() if shape is None else st.just(shape)
    return st.tuples(dtypes, shapes).flatmap(
        lambda ds: hnp.arrays(ds[0], ds[1], elements=st.floats(-10, 10, width=ds[0].itemsize * 8))
    )


def param_trees(dtype: Any = None, max_leaves: int = 6) -> st.SearchStrategy[Any]:
    """Nested dict (str keys) / list / tuple trees of float arrays, at least one leaf."""
    leaves = float_arrays(dtype)
    tree = st.recursive(
        leaves,
        lambda children: st.one_of(
            st.dictionaries(_KEYS, children, min_size=1, max_size=3),
            st.lists(children, min_size=1, max_size=3),
            st.lists(children, min_size=1, max_size=3).map(tuple),
        ),
        max_leaves=max_leaves,
    )
    return tree


def fitness_vectors(n: int) -> st.SearchStrategy[np.ndarray]:
    """(n,) float64 fitness with ties likely (values from a small set) or spread out."""
    return st.one_of(
        hnp.arrays(np.float64, (n,), elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0])),
        hnp.arrays(np.float64, (n,), elements=st.floats(-1e6, 1e6)),
    )


@st.composite
def matrix_problem(draw: st.DrawFn, max_side: int = 64, max_rank: int = 8, max_keys: int = 64):
    """(A (K, m, r), B (K, n, r), w (K,)) with drawn shapes, rank, K and dtype."""
    dtype = draw(float_dtypes())
    m = draw(st.integers(1, max_side))
    n = draw(st.integers(1, max_side))
    r = draw(st.integers(1, max_rank))
    k = draw(st.integers(2, max_keys))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((k, m, r)).astype(dtype)
    B = rng.standard_normal((k, n, r)).astype(dtype)
    w = draw(hnp.arrays(np.float64, (k,), elements=st.floats(-5, 5)))
    return A, B, w
