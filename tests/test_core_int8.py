"""The C++ core's integer kernels equal an int64 NumPy reference bit for bit, at every SIMD level
(EGGROLL_SIMD's levels, forced one by one) and thread count."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eggroll_np import _ext, noise

from .test_exact import kernels

core = _ext.core
pytestmark = pytest.mark.skipif(core is None, reason=f"C++ core not built: {_ext.core_error}")
LEVELS = core.available_simd_levels() if core is not None else []
SETTINGS = [(level, threads) for level in LEVELS for threads in (1, 2)]


# ---- the int64 reference of the kernels' formulas (DESIGN.md "Integer leaves") ------------------


def _i64(v: np.ndarray) -> np.ndarray:
    return np.asarray(v).astype(np.int64)


def _clip8(v: np.ndarray, lo: int = -127) -> np.ndarray:
    return np.clip(v, lo, 127).astype(np.int8)


def linear_reference(
    x,
    w,
    a=None,
    b=None,
    keys=None,
    signs=None,
    lr_shift=0,
    bias=None,
    bias_noise=None,
    bias_shift=0,
    out_shift=0,
    relu=False,
    N=None,
):
    """out (N, B, n) int8 of _core.int8_linear, in int64 with plain loops over members."""
    N = N if N is not None else (len(keys) if keys is not None else x.shape[0])
    out = []
    for i in range(N):
        k = int(keys[i]) if keys is not None else 0
        s = int(signs[i]) if signs is not None else 1
        xi = _i64(x[0 if x.shape[0] == 1 else i])
        acc = xi @ _i64(w if w.ndim == 2 else w[i])
        if a is not None:
            acc = acc + ((s * ((xi @ _i64(a[k])) @ _i64(b[k]).T)) >> lr_shift)
        if bias is None:
            bi = np.zeros(acc.shape[-1], np.int64)
        elif bias.ndim == 2:
            bi = _i64(bias[i])
        elif bias_noise is not None:
            bi = _i64(_clip8(_i64(bias) + ((s * _i64(bias_noise[k])) >> bias_shift)))
        else:
            bi = _i64(bias)
        out.append(_clip8((acc >> out_shift) + bi, 0 if relu else -127))
    return np.stack(out) if out else np.zeros((0, x.shape[1], w.shape[-1]), np.int8)


def contract_reference(a, b, c) -> np.ndarray:
    z = np.zeros((a.shape[1], b.shape[1]), np.int64)
    for k in range(a.shape[0]):
        z += int(c[k]) * (_i64(a[k]) @ _i64(b[k]).T)
    return z


def i8(rng, shape, lo=-128):
    return rng.integers(lo, 128, shape, dtype=np.int8)


# ---- the GEMM --------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    M=st.integers(0, 40),
    K=st.integers(0, 300),
    N=st.integers(0, 150),
    seed=st.integers(0, 2**32 - 1),
)
def test_gemm_is_exact_at_every_level_and_thread_count(M, K, N, seed):
    rng = np.random.default_rng(seed)
    a, b = i8(rng, (M, K)), i8(rng, (K, N))
    want = _i64(a) @ _i64(b)
    for level, threads in SETTINGS:
        with kernels(level, threads):
            got = core.gemm_s8s8s32(a, b)
        assert got.dtype == np.int32
        assert got.shape == (M, N)
        np.testing.assert_array_equal(got, want, err_msg=f"{level}, {threads} threads")


def test_gemm_at_the_largest_depth_and_extreme_values():
    # -128 * -128 everywhere at K = 131071: 2^31 - 2^14, the largest exact int32 sum.
    K = 131071
    a = np.full((7, K), -128, np.int8)
    b = np.full((K, 3), -128, np.int8)
    b[:, 1] = 127
    want = _i64(a) @ _i64(b)
    out = np.zeros((7, 3), np.int32)
    for level in LEVELS:
        with kernels(level, 2):
            core.gemm_s8s8s32(a, b, out)
        np.testing.assert_array_equal(out, want, err_msg=level)
    with pytest.raises(ValueError, match="K is 131072, above 131071"):
        core.gemm_s8s8s32(np.zeros((1, K + 1), np.int8), np.zeros((K + 1, 1), np.int8))


def test_gemm_rejects_bad_buffers():
    a = np.zeros((3, 4), np.int8)
    with pytest.raises(TypeError, match="a must be a int8 ndarray"):
        core.gemm_s8s8s32(a.astype(np.int16), a.T.copy())
    with pytest.raises(ValueError, match="agree on K"):
        core.gemm_s8s8s32(a, a)
    with pytest.raises(ValueError, match="b must be C-contiguous"):
        core.gemm_s8s8s32(a, a.T)
    with pytest.raises(ValueError, match="out must have shape"):
        core.gemm_s8s8s32(a, a.T.copy(), np.zeros((3, 4), np.int32))
    with pytest.raises(TypeError, match="out must be a int32"):
        core.gemm_s8s8s32(a, a.T.copy(), np.zeros((3, 3), np.int64))


# ---- the fused linear layer ---------------------------------------------------------------------


@st.composite
def linear_cases(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    N = draw(st.integers(1, 6))
    B = draw(st.integers(1, 4))
    m = draw(st.integers(1, 200))
    n = draw(st.integers(1, 140))
    r = draw(st.sampled_from([0, 1, 4, 2]))
    K = draw(st.integers(1, 4))
    shared_x = draw(st.booleans())
    per_member_w = draw(st.booleans())
    bias_kind = draw(st.sampled_from(["none", "shared", "member", "noise"]))
    kw = dict(
        lr_shift=draw(st.integers(0, 24)),
        out_shift=draw(st.integers(0, 12)),
        relu=draw(st.booleans()),
    )
    x = i8(rng, (1 if shared_x else N, B, m))
    w = i8(rng, (N, m, n) if per_member_w else (m, n), lo=-127)
    keys = rng.integers(0, K, N).astype(np.uint32)
    signs = np.where(np.arange(N) % 2 == 0, 1, -1).astype(np.int8)
    kw.update(keys=keys, signs=signs if draw(st.booleans()) else None)
    if r:
        kw.update(a=i8(rng, (K, m, r), lo=-127), b=i8(rng, (K, n, r), lo=-127))
    if bias_kind == "shared":
        kw.update(bias=i8(rng, n, lo=-127))
    elif bias_kind == "member":
        kw.update(bias=i8(rng, (N, n), lo=-127))
    elif bias_kind == "noise":
        kw.update(
            bias=i8(rng, n, lo=-127),
            bias_noise=i8(rng, (K, n), lo=-127),
            bias_shift=draw(st.integers(0, 15)),
        )
    return x, w, N, kw


@settings(max_examples=30, deadline=None)
@given(case=linear_cases())
def test_linear_is_the_reference_at_every_level_and_thread_count(case):
    x, w, N, kw = case
    want = linear_reference(x, w, N=N, **kw)
    for level, threads in SETTINGS:
        out = np.full((N, x.shape[1], w.shape[-1]), 99, np.int8)
        with kernels(level, threads):
            core.int8_linear(x, w, out, **kw)
        np.testing.assert_array_equal(out, want, err_msg=f"{level}, {threads} threads")


def test_linear_low_rank_term_needs_64_bits():
    # (x @ a) @ b.T reaches 127^3 * m * r > 2^36 here: an int32 sum would wrap.
    m, n, r, N = 4096, 9, 16, 2
    x = np.full((1, 1, m), 127, np.int8)
    w = np.zeros((m, n), np.int8)
    a = np.full((1, m, r), 127, np.int8)
    b = np.full((1, n, r), -127, np.int8)
    keys = np.zeros(N, np.uint32)
    signs = np.array([1, -1], np.int8)
    kw = dict(a=a, b=b, keys=keys, signs=signs, lr_shift=20, out_shift=8)
    want = linear_reference(x, w, **kw)
    assert 127**3 * m * r > 2**36  # the case does need 64 bits
    assert want[0].min() == -127
    assert want[1].max() == 127
    for level in LEVELS:
        out = np.zeros((N, 1, n), np.int8)
        with kernels(level, 2):
            core.int8_linear(x, w, out, **kw)
        np.testing.assert_array_equal(out, want, err_msg=level)


def test_linear_epilogue_and_xa_match_the_fused_pass():
    rng = np.random.default_rng(1)
    N, B, m, n, r, K = 6, 3, 70, 90, 4, 3
    x, w = i8(rng, (N, B, m)), i8(rng, (m, n), lo=-127)
    a, b = i8(rng, (K, m, r), lo=-127), i8(rng, (K, n, r), lo=-127)
    keys = np.array([0, 0, 2, 2, 1, 1], np.uint32)
    signs = np.array([1, -1] * 3, np.int8)
    bias = i8(rng, (N, n), lo=-127)
    kw = dict(keys=keys, signs=signs, bias=bias, relu=True)
    want = linear_reference(x, w, a, b, lr_shift=9, out_shift=7, **kw)
    for level, threads in SETTINGS:
        with kernels(level, threads):
            acc = core.gemm_s8s8s32(x.reshape(N * B, m), w).reshape(N, B, n)
            xa = core.int8_xa(x, a, keys)
            np.testing.assert_array_equal(
                xa, np.stack([_i64(x[i]) @ _i64(a[keys[i]]) for i in range(N)])
            )
            out = np.zeros((N, B, n), np.int8)
            core.int8_epilogue(out, acc, xa, None, b, keys, signs, bias, 9, 7, True)
            np.testing.assert_array_equal(out, want, err_msg=f"{level}, {threads}")
            # shared acc (B, n) and xa rows chosen per member
            xs = x[:1]
            acc1 = core.gemm_s8s8s32(xs[0], w)
            xa1 = core.int8_xa(xs, a, np.arange(K, dtype=np.uint32))
            core.int8_epilogue(out, acc1, xa1, keys, b, keys, signs, bias, 9, 7, True)
            np.testing.assert_array_equal(
                out, linear_reference(xs, w, a, b, lr_shift=9, out_shift=7, **kw)
            )


def test_linear_rejects_bad_arguments():
    x = np.zeros((2, 1, 5), np.int8)
    w = np.zeros((5, 3), np.int8)
    out = np.zeros((2, 1, 3), np.int8)
    a, b = np.zeros((1, 5, 1), np.int8), np.zeros((1, 3, 1), np.int8)
    keys = np.zeros(2, np.uint32)
    with pytest.raises(TypeError, match="x must be a int8"):
        core.int8_linear(x.astype(np.float32), w, out)
    with pytest.raises(ValueError, match="w must have shape"):
        core.int8_linear(x, w.T.copy(), out)
    with pytest.raises(ValueError, match="keys are needed"):
        core.int8_linear(x, w, out, a, b)
    with pytest.raises(ValueError, match="keys must be < 1"):
        core.int8_linear(x, w, out, a, b, np.array([0, 1], np.uint32))
    with pytest.raises(ValueError, match="signs must be"):
        core.int8_linear(x, w, out, a, b, keys, np.array([1, 0], np.int8))
    with pytest.raises(ValueError, match="lr_shift must be in"):
        core.int8_linear(x, w, out, a, b, keys, lr_shift=63)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        core.int8_linear(x, w, out)


# ---- the update contraction ---------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    K=st.integers(0, 40),
    m=st.integers(1, 70),
    n=st.integers(1, 150),
    r=st.sampled_from([1, 4, 3]),
    tau=st.integers(-2, 3000),
    seed=st.integers(0, 2**32 - 1),
)
def test_contract_and_update_are_exact_at_every_level_and_thread_count(K, m, n, r, tau, seed):
    rng = np.random.default_rng(seed)
    a, b = i8(rng, (K, m, r), lo=-127), i8(rng, (K, n, r))
    c = rng.integers(-1, 2, K).astype(np.int8)
    q = i8(rng, (m, n), lo=-127)
    z = contract_reference(a, b, c)
    step = np.sign(z) * (np.abs(z) >= tau)
    want_q = _clip8(_i64(q) + step)
    for level, threads in SETTINGS:
        with kernels(level, threads):
            got = core.int8_contract(a, b, c)
            got_q = core.int8_update(q, a, b, c, tau)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, z, err_msg=f"{level}, {threads}")
        np.testing.assert_array_equal(got_q, want_q, err_msg=f"{level}, {threads}")


def test_update_full_rank_leaf_as_a_row():
    rng = np.random.default_rng(2)
    E = i8(rng, (33, 500), lo=-127)  # 33 pairs' noise of a 500-entry leaf
    c = rng.integers(-1, 2, 33).astype(np.int8)
    q = i8(rng, (1, 500), lo=-127)
    ones = np.ones((33, 1, 1), np.int8)
    z = (c.astype(np.int64)[:, None] * _i64(E)).sum(0)
    for level in LEVELS:
        with kernels(level, 2):
            np.testing.assert_array_equal(core.int8_contract(ones, E[:, :, None], c)[0], z)
            np.testing.assert_array_equal(
                core.int8_update(q, ones, E[:, :, None], c, 40)[0],
                _clip8(_i64(q[0]) + np.sign(z) * (np.abs(z) >= 40)),
            )


def test_contract_rejects_bad_arguments():
    a = np.zeros((2, 3, 1), np.int8)
    with pytest.raises(ValueError, match="c must be in"):
        core.int8_contract(a, a, np.array([2, 0], np.int8))
    a[0, 0, 0] = -128
    with pytest.raises(ValueError, match="a must lie in"):
        core.int8_contract(a, a, np.array([1, 0], np.int8))
    with pytest.raises(ValueError, match="agree on K"):
        core.int8_contract(a, a[:1], np.array([1, 0], np.int8))
    with pytest.raises(ValueError, match="q must have shape"):
        core.int8_update(np.zeros((3, 2), np.int8), a * 0, a * 0, np.zeros(2, np.int8), 1)


# ---- quantized noise ----------------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), count=st.integers(0, 9000), offset=st.integers(0, 99))
def test_int8_noise_is_the_quantized_normals(seed, count, offset):
    keys = np.array([0, 5, 2**32 - 1], np.uint32)
    z = noise.normals_batch(seed, 3, keys, 7, count, offset)
    want = np.clip(np.rint(np.float32(16) * z), -127, 127).astype(np.int8)
    for level, threads in SETTINGS:
        with kernels(level, threads):
            outs = [np.zeros((3, count), np.int8), np.zeros((3, 5), np.int8)]
            core.fill_int8_noise_many(seed, [3, 3], keys, 7, [offset, 0], outs)
        np.testing.assert_array_equal(outs[0], want, err_msg=f"{level}, {threads}")
        np.testing.assert_array_equal(
            outs[1],
            np.clip(np.rint(16 * noise.normals_batch(seed, 3, keys, 7, 5, 0)), -127, 127).astype(
                np.int8
            ),
        )


def test_int8_noise_rounds_half_to_even():
    from eggroll_np import _reference

    # 16 z lands exactly on k + 0.5 for a few of 200000 float32 normals: rint takes the even k.
    z = _reference.normals(11, 0, 0, 0, 200000, 0)
    v = np.float32(16) * z
    halves = np.flatnonzero(v == np.floor(v) + 0.5)
    out = np.zeros((1, 200000), np.int8)
    core.fill_int8_noise_many(11, [0], np.zeros(1, np.uint32), 0, [0], [out])
    np.testing.assert_array_equal(out[0], np.clip(np.rint(v), -127, 127).astype(np.int8))
    assert (np.abs(out[0]) <= 127).all()
    if halves.size:  # rint of k + 0.5 is the even neighbour
        assert (out[0][halves] % 2 == 0).all()


# ---- EGGROLL_SIMD forces each level for the int8 kernels too --------------------------------


def test_eggroll_simd_forces_the_int8_level_in_a_fresh_process():
    code = (
        "import numpy as np; from eggroll_np import _ext; c = _ext.core; "
        "print(c.simd_level()); a = np.arange(-60, 60, dtype=np.int8).reshape(8, 15); "
        "print(int(c.gemm_s8s8s32(a, a.T.copy()).sum()))"
    )
    want = str(
        int(
            (
                _i64(np.arange(-60, 60).reshape(8, 15)) @ _i64(np.arange(-60, 60).reshape(8, 15)).T
            ).sum()
        )
    )
    for level in LEVELS:
        env = dict(os.environ, EGGROLL_SIMD=level)
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            cwd=os.path.dirname(__file__) + "/..",
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == [level, want]
