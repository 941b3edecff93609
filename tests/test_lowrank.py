"""Tests of eggroll_np.lowrank: the update contraction and the population correction vs dense."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eggroll_np import _ext, dispatch, lowrank

from .strategies import float_dtypes, matrix_problem

_TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


def _close(got, ref, bound, dtype):
    """|got - ref| <= tol * bound, with bound the sum of |terms| (no cancellation assumed)."""
    assert got.dtype == dtype
    tol = _TOL[np.dtype(dtype)]
    np.testing.assert_array_less(np.abs(got - ref), tol * (bound + 1e-30) + 1e-300)


@settings(max_examples=60, deadline=None)
@given(matrix_problem(), st.floats(0.01, 100))
def test_contract_equals_dense_sum(problem, scale):
    A, B, w = problem
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    dense = np.einsum("kmr,knr->kmn", A64, B64)  # K dense matrices, the reference only
    ref = scale * np.einsum("k,kmn->mn", w.astype(A.dtype).astype(np.float64), dense)
    bound = scale * np.einsum("k,kmn->mn", np.abs(w), np.abs(A64) @ np.abs(B64).transpose(0, 2, 1))
    got = lowrank.contract(A, B, w, scale)
    assert got.shape == (A.shape[1], B.shape[1])
    _close(got, ref, bound, A.dtype)


def test_contract_is_high_rank():
    # sum_k w_k a_k b_k^T with rank-1 terms and independent vectors has rank K, unlike
    # (sum w_k a_k)(sum w_k b_k)^T which has rank 1.
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((3, 5, 1)), rng.standard_normal((3, 4, 1))
    g = lowrank.contract(A, B, np.array([1.0, -2.0, 0.5]), 1.0)
    assert np.linalg.matrix_rank(g) == 3


def test_contract_full():
    rng = np.random.default_rng(0)
    E = rng.standard_normal((6, 2, 3)).astype(np.float32)
    w = rng.standard_normal(6)
    got = lowrank.contract_full(E, w, 0.5)
    np.testing.assert_allclose(got, 0.5 * np.tensordot(w, E, axes=1), rtol=1e-5, atol=1e-6)
    assert got.shape == (2, 3)
    assert got.dtype == np.float32


@st.composite
def correction_case(draw):
    dtype = draw(float_dtypes())
    m, n, r = draw(st.integers(1, 24)), draw(st.integers(1, 24)), draw(st.integers(1, 8))
    k, bt = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    n_members = draw(st.integers(1, 12))
    shared = draw(st.booleans())
    transpose = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    A = rng.standard_normal((k, m, r)).astype(dtype)
    B = rng.standard_normal((k, n, r)).astype(dtype)
    keys = rng.integers(0, k, n_members).astype(np.uint32)
    coef = rng.standard_normal(n_members).astype(dtype)
    cols = n if transpose else m
    x_shape = (bt, cols) if shared else (n_members, bt, cols)
    x = rng.standard_normal(x_shape).astype(dtype)
    return A, B, keys, coef, x, transpose


def _reference_transposed(x, A, B, keys, coef, out):
    return lowrank.correction_reference(x, B, A, keys, coef, out)


_IMPLS = {
    "dispatch": (lowrank.correction, lowrank.correction_transposed),
    "reference": (lowrank.correction_reference, _reference_transposed),
}


@pytest.mark.parametrize("impl", sorted(_IMPLS))
@settings(max_examples=60, deadline=None)
@given(case=correction_case())
def test_correction_equals_dense(impl, case):
    A, B, keys, coef, x, transpose = case
    dtype = A.dtype
    rows = (B if transpose else A).shape[1]
    out_cols = (A if transpose else B).shape[1]
    base = np.random.default_rng(1).standard_normal((keys.size, x.shape[-2], out_cols))
    out = base.astype(dtype)
    start = out.copy()
    fn = _IMPLS[impl][1] if transpose else _IMPLS[impl][0]
    assert fn(x, A, B, keys, coef, out) is out
    xs = np.broadcast_to(x, (keys.size, *x.shape[-2:])).astype(np.float64)
    assert xs.shape[-1] == rows
    for i, k in enumerate(keys):
        P = A[k].astype(np.float64) @ B[k].astype(np.float64).T  # (m, n), dense reference
        if transpose:
            P = P.T
        ref = start[i] + float(coef[i]) * xs[i] @ P
        bound = np.abs(start[i]) + abs(float(coef[i])) * np.abs(xs[i]) @ (
            np.abs(A[k]) @ np.abs(B[k]).T if not transpose else (np.abs(A[k]) @ np.abs(B[k]).T).T
        )
        _close(out[i], ref, bound, dtype)


@pytest.mark.skipif(_ext.core is None, reason="C++ core not built")
@settings(max_examples=40, deadline=None)
@given(
    case=correction_case(),
    n_chunks=st.integers(1, 3),
)
def test_core_kernels_match_the_numpy_reference(case, n_chunks):
    A, B, keys, coef, x, transpose = case
    A, B = A[:, :, :1].astype(np.float32), B[:, :, :1].astype(np.float32)  # rank 1, float32
    x, coef = x.astype(np.float32), coef.astype(np.float32)
    if transpose:
        A, B = B, A
    out_shape = (keys.size, x.shape[-2], B.shape[1])
    start = np.random.default_rng(2).standard_normal(out_shape).astype(np.float32)
    assert dispatch.select("lowrank_correction", [start, A, B, None, x]) == lowrank.correction_core
    got = lowrank.correction(x, A, B, keys, coef, start.copy())
    # the reference, also through its chunked loop (chunks of n_chunks members)
    saved = lowrank._CHUNK_VALUES
    lowrank._CHUNK_VALUES = out_shape[1] * out_shape[2] * n_chunks
    try:
        want = lowrank.correction_reference(x, A, B, keys, coef, start.copy())
    finally:
        lowrank._CHUNK_VALUES = saved
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * (1 + np.abs(want).max()))


def test_reference_is_used_where_the_core_does_not_apply():
    ref = lowrank.correction_reference
    A = np.ones((1, 2, 9), np.float32)  # rank 9: past the ranks the kernels were measured to win
    out = np.zeros((1, 1, 2), np.float32)
    assert dispatch.select("lowrank_correction", [out, A, A, None, out[0]]) == ref
    A1 = np.ones((1, 2, 1))
    out1 = np.zeros((1, 1, 2))
    assert dispatch.select("lowrank_correction", [out1, A1, A1, None, out1[0]]) == ref  # float64


def test_correction_shared_x_uses_each_key_once():
    # members with the same key and opposite coef get exactly opposite corrections
    rng = np.random.default_rng(2)
    A, B = rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 3, 2))
    x = rng.standard_normal((5, 4))
    out = np.zeros((4, 5, 3))
    lowrank.correction(x, A, B, np.array([0, 0, 1, 1]), np.array([1.0, -1.0, 2.0, -2.0]), out)
    np.testing.assert_array_equal(out[0], -out[1])
    np.testing.assert_array_equal(out[2], -out[3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_correction_keeps_dtype(dtype):
    A = np.ones((1, 2, 1), dtype)
    B = np.ones((1, 3, 1), dtype)
    out = np.zeros((2, 1, 3), dtype)
    lowrank.correction(np.ones((1, 2), dtype), A, B, np.zeros(2, np.uint32), np.ones(2, dtype), out)
    np.testing.assert_array_equal(out, 2.0)
    assert out.dtype == dtype


@pytest.mark.parametrize("transpose", [False, True])
def test_correction_with_base_sets_out_from_the_shared_product(transpose):
    # base (Bt, n) = x @ W of a shared x: out[i] = base + correction, out's old contents unread.
    rng = np.random.default_rng(3)
    A = rng.standard_normal((3, 5, 2)).astype(np.float32)
    B = rng.standard_normal((3, 4, 2)).astype(np.float32)
    keys, coef = np.array([2, 0, 1, 2], np.uint32), rng.standard_normal(4).astype(np.float32)
    x = rng.standard_normal((6, 4 if transpose else 5)).astype(np.float32)
    base = rng.standard_normal((6, 5 if transpose else 4)).astype(np.float32)
    fn = lowrank.correction_transposed if transpose else lowrank.correction
    want = fn(x, A, B, keys, coef, np.broadcast_to(base, (4, *base.shape)).copy())
    out = np.full((4, *base.shape), np.nan, np.float32)
    assert fn(x, A, B, keys, coef, out, base) is out
    np.testing.assert_array_equal(out, want)
