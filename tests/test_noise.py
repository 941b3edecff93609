"""The noise contract: Philox known answers, C++ core vs NumPy reference, layout, distribution."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eggroll_np import _ext, _reference, noise

U32 = st.integers(0, 2**32 - 1)
SEEDS = st.integers(0, 2**64 - 1)

KNOWN_ANSWERS = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]

needs_core = pytest.mark.skipif(_ext.core is None, reason=f"C++ core not built: {_ext.core_error}")


@pytest.mark.parametrize(("ctr", "key", "expected"), KNOWN_ANSWERS)
@pytest.mark.parametrize("impl", ["public", "reference"])
def test_philox_known_answers(ctr, key, expected, impl):
    fn = noise.philox4x32_10 if impl == "public" else _reference.philox4x32_10
    out = fn(np.array([ctr], dtype=np.uint32), np.array(key, dtype=np.uint32))
    assert out.dtype == np.uint32
    assert out.shape == (1, 4)
    assert out[0].tolist() == expected


@pytest.mark.skipif(
    _ext.core is None and os.environ.get("EGGROLL_NP_REQUIRE_CORE") != "1",
    reason=f"C++ core not built ({_ext.core_error}); set EGGROLL_NP_REQUIRE_CORE=1 to fail instead",
)
def test_core_is_the_default_cpu_path():
    # A built package carries the compiled core; the reference is only a fallback.
    assert _ext.core is not None, _ext.core_error
    assert _ext.core.simd_level() in set(_ext.SIMD_LEVELS)


@needs_core
@settings(max_examples=40, deadline=None)
@given(
    ctrs=st.lists(st.tuples(U32, U32, U32, U32), min_size=0, max_size=70), key=st.tuples(U32, U32)
)
def test_core_philox_blocks_match_reference(ctrs, key):
    c = np.array(ctrs, dtype=np.uint32).reshape(-1, 4)
    k = np.array(key, dtype=np.uint32)
    np.testing.assert_array_equal(noise.philox4x32_10(c, k), _reference.philox4x32_10(c, k))


@needs_core
@settings(max_examples=60, deadline=None)
@given(
    seed=SEEDS,
    leaf=U32,
    member_key=U32,
    epoch=U32,
    count=st.one_of(st.integers(0, 300), st.integers(0, 10**5)),
    offset=st.integers(0, 1000),
)
def test_core_normals_match_reference(seed, leaf, member_key, epoch, count, offset):
    got = noise.normals_batch(seed, leaf, [member_key], epoch, count, offset)[0]
    ref = _reference.normals(seed, leaf, member_key, epoch, count, offset)
    assert got.dtype == np.float32
    assert got.shape == (count,)
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))  # bit for bit


@needs_core
@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, leaf=U32, epoch=U32, count=st.integers(0, 2000))
def test_core_normals_within_1e5_of_float64_formula(seed, leaf, epoch, count):
    # The contract's tolerance is against a float64 evaluation of the same formula, computed
    # here from the reference's exact uint32 blocks (not from the rounded float32 reference).
    got = noise.normals(seed, leaf, 5, epoch, count)
    blocks = (count + 3) // 4
    ctr = np.zeros((blocks, 4), dtype=np.uint32)
    ctr[:, 0] = np.arange(blocks, dtype=np.uint32)
    ctr[:, 1], ctr[:, 2], ctr[:, 3] = leaf, 5, epoch
    bits = _reference.philox4x32_10(ctr, np.array([seed & 0xFFFFFFFF, seed >> 32], np.uint32))
    u = ((bits >> 9).astype(np.float64) + 0.5) * 2.0**-23
    r01 = np.sqrt(-2 * np.log(u[:, 0]))
    r23 = np.sqrt(-2 * np.log(u[:, 2]))
    z = np.stack(
        [
            r01 * np.cos(2 * math.pi * u[:, 1]),
            r01 * np.sin(2 * math.pi * u[:, 1]),
            r23 * np.cos(2 * math.pi * u[:, 3]),
            r23 * np.sin(2 * math.pi * u[:, 3]),
        ],
        axis=1,
    ).reshape(-1)[:count]
    assert np.max(np.abs(got.astype(np.float64) - z), initial=0.0) <= 1e-5


@needs_core
def test_extreme_uniforms_stay_accurate():
    # u closest to 1 (x >> 9 = 2^23 - 1) is where sqrt(-2 ln u) is most sensitive; u closest to 0
    # gives the largest normal. Find Philox outputs near both ends in a fixed stream.
    seed = 7
    got = noise.normals(seed, 0, 0, 0, 1 << 20)
    ref = _reference.normals(seed, 0, 0, 0, 1 << 20)
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))
    np.testing.assert_allclose(got, _reference.normals_f64(seed, 0, 0, 0, 1 << 20), atol=1e-5)
    assert np.isfinite(got).all()


def test_stream_offsets_are_consistent():
    # Value k of a stream is the same whether read from 0 or from any offset.
    full = noise.normals(123, 4, 9, 2, 1000)
    for offset, count in [(0, 0), (1, 3), (3, 61), (64, 64), (65, 500), (997, 3)]:
        part = noise.normals_batch(123, 4, [9], 2, count, offset)[0]
        np.testing.assert_array_equal(part, full[offset : offset + count])


def test_streams_differ_by_each_counter_field():
    base = noise.normals(1, 2, 3, 4, 64)
    for args in [(2, 2, 3, 4), (1, 3, 3, 4), (1, 2, 4, 4), (1, 2, 3, 5)]:
        assert not np.array_equal(base, noise.normals(*args, 64))


def test_seed_splits_into_key_words():
    # key = (seed & 0xffffffff, seed >> 32): check against the block function directly.
    seed = (0xA4093822 << 32) | 0x299F31D0  # hi word, lo word
    z = _reference.philox4x32_10(
        np.array([[0, 1, 2, 3]], np.uint32), np.array([0x299F31D0, 0xA4093822], np.uint32)
    )
    u = ((z[0] >> 9).astype(np.float64) + 0.5) * 2.0**-23
    r = math.sqrt(-2 * math.log(u[0]))
    expected = r * math.cos(2 * math.pi * u[1])
    assert noise.normals(seed, 1, 2, 3, 1)[0] == pytest.approx(expected, abs=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    seed=SEEDS,
    leaf=U32,
    keys=st.lists(U32, min_size=0, max_size=5),
    epoch=U32,
    m=st.integers(1, 40),
    n=st.integers(1, 40),
    rank=st.integers(1, 8),
)
def test_factor_layout_is_a_then_b_in_c_order(seed, leaf, keys, epoch, m, n, rank):
    a, b = noise.factors(seed, leaf, keys, epoch, (m, n), rank)
    assert a.shape == (len(keys), m, rank)
    assert b.shape == (len(keys), n, rank)
    assert a.dtype == b.dtype == np.float32
    for i, k in enumerate(keys):
        stream = noise.normals(seed, leaf, k, epoch, (m + n) * rank)
        np.testing.assert_array_equal(a[i], stream[: m * rank].reshape(m, rank))
        np.testing.assert_array_equal(b[i], stream[m * rank :].reshape(n, rank))


def test_member_keys_signs_and_epochs():
    np.testing.assert_array_equal(noise.member_keys(6, True), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(noise.member_keys(3, False), [0, 1, 2])
    np.testing.assert_array_equal(noise.signs(4, True), [1, -1, 1, -1])
    np.testing.assert_array_equal(noise.signs(3, False), [1, 1, 1])
    assert [noise.epoch_of(g, 3) for g in range(7)] == [0, 0, 0, 1, 1, 1, 2]


def test_multithreaded_fill_matches_single_thread():
    if _ext.core is None:
        pytest.skip("C++ core not built")
    keys = np.arange(37, dtype=np.uint32)
    before = _ext.core.num_threads()
    try:
        _ext.core.set_num_threads(1)
        one = noise.normals_batch(9, 1, keys, 0, 50_001)
        _ext.core.set_num_threads(2)
        two = noise.normals_batch(9, 1, keys, 0, 50_001)
    finally:
        _ext.core.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_distribution_of_a_million_normals():
    # Fixed seeds: these statistics are deterministic. The bounds are ~6 standard errors wide
    # (mean: 6/sqrt(n) = 0.006; variance: 6*sqrt(2/n) = 0.0085; KS: the 1e-9 tail is ~0.0033),
    # so a correct generator cannot fail them by chance, while a biased one fails clearly.
    n = 10**6
    for seed in (0, 2**63 + 11):
        z = noise.normals(seed, 3, 1, 0, n).astype(np.float64)
        assert abs(z.mean()) < 0.006
        assert abs(z.var() - 1.0) < 0.0085
        zs = np.sort(z)
        cdf = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in zs[:: n // 20000]]))
        # KS on the subsampled order statistics against the exact ECDF positions.
        ecdf = (np.arange(n)[:: n // 20000] + 0.5) / n
        assert np.max(np.abs(cdf - ecdf)) < 0.0033
        # Pairs from the same block must be uncorrelated too (Box-Muller's two outputs).
        assert abs(np.corrcoef(z[0::2], z[1::2])[0, 1]) < 0.01


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 2**64}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"leaf": 2**32}, ValueError, "leaf"),
        ({"member_key": -3}, ValueError, "member_key"),
        ({"epoch": 2**32}, ValueError, "epoch"),
        ({"count": -1}, ValueError, "count"),
    ],
)
def test_normals_bad_input(kwargs, exc, word):
    args = {"seed": 0, "leaf": 0, "member_key": 0, "epoch": 0, "count": 4} | kwargs
    with pytest.raises(exc, match=word):
        noise.normals(**args)


@pytest.mark.parametrize(
    ("shape", "rank", "exc", "word"),
    [
        ((3, 4), 0, ValueError, "rank"),
        ((3, 4), -2, ValueError, "rank"),
        ((3, 4), 1.0, TypeError, "rank"),
        ((3,), 1, ValueError, "shape"),
        ((), 1, ValueError, "shape"),
        ((3, 4, -5), 1, ValueError, r"shape\[2\]"),
        ((3, -4), 1, ValueError, r"shape\[1\]"),
    ],
)
def test_factors_bad_input(shape, rank, exc, word):
    with pytest.raises(exc, match=word):
        noise.factors(0, 0, [0, 1], 0, shape, rank)


def test_factors_bad_member_keys():
    with pytest.raises(ValueError, match="member_keys"):
        noise.factors(0, 0, [[0, 1]], 0, (2, 2), 1)
    with pytest.raises(TypeError, match="member_keys"):
        noise.factors(0, 0, [0.5], 0, (2, 2), 1)
    with pytest.raises(ValueError, match="member_keys"):
        noise.factors(0, 0, [-1], 0, (2, 2), 1)


def test_philox_bad_input():
    with pytest.raises(TypeError, match="counters"):
        noise.philox4x32_10(np.zeros((2, 4), np.int64), np.zeros(2, np.uint32))
    with pytest.raises(ValueError, match="counters"):
        noise.philox4x32_10(np.zeros((2, 3), np.uint32), np.zeros(2, np.uint32))
    with pytest.raises(TypeError, match="key"):
        noise.philox4x32_10(np.zeros((2, 4), np.uint32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="key"):
        noise.philox4x32_10(np.zeros((2, 4), np.uint32), np.zeros(3, np.uint32))


def test_cupy_request_without_gpu_is_a_clear_error():
    if _ext.cuda_device_count() > 0:
        pytest.skip("a CUDA device is present")
    with pytest.raises((ValueError, RuntimeError), match=r"(?i)cupy|cuda"):
        noise.normals(0, 0, 0, 0, 8, xp="cupy")


def test_normals_many_equals_separate_reads():
    keys = np.array([3, 0, 7], np.uint32)
    requests = [(0, 0, 100), (0, 100, 37), (5, 3, 1), (2, 0, 0), (9, 64, 5000)]
    outs = noise.normals_many(11, 4, keys, requests)
    assert len(outs) == len(requests)
    for (leaf, offset, count), out in zip(requests, outs, strict=True):
        assert out.shape == (3, count)
        np.testing.assert_array_equal(out, noise.normals_batch(11, leaf, keys, 4, count, offset))


def test_normals_many_bad_request_names_it():
    with pytest.raises(ValueError, match=r"requests\[1\] offset"):
        noise.normals_many(0, 0, [0], [(0, 0, 4), (0, -1, 4)])


def test_factors_of_an_ndim3_leaf_use_the_matrix_view():
    # (3, 4, 5) is perturbed as the (3, 20) matrix: the same stream reads as a (3, 20) leaf.
    A, B = noise.factors(7, 2, [0, 5], 1, (3, 4, 5), 2)
    A2, B2 = noise.factors(7, 2, [0, 5], 1, (3, 20), 2)
    assert A.shape == (2, 3, 2)
    assert B.shape == (2, 20, 2)
    np.testing.assert_array_equal(A, A2)
    np.testing.assert_array_equal(B, B2)
