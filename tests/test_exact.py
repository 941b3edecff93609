"""Exactness (docs/noise-contract.md, "Exactness"): the same bits at every SIMD level, thread count
and input layout."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

import eggroll_np as egg
from eggroll_np import _ext, _optimizers, _reference, lowrank, noise, optim, tree

core = _ext.core
needs_core = pytest.mark.skipif(core is None, reason=f"C++ core not built: {_ext.core_error}")
LEVELS = core.available_simd_levels() if core is not None else []
U32 = st.integers(0, 2**32 - 1)


@contextlib.contextmanager
def kernels(level: str, threads: int) -> Iterator[None]:
    """Run the C++ core at one SIMD level and library thread count, then restore both."""
    before_level, before_threads = core.simd_level(), core.num_threads()
    core.set_simd_level(level)
    core.set_num_threads(threads)
    try:
        yield
    finally:
        core.set_simd_level(before_level)
        core.set_num_threads(before_threads)


def bits(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("=")).view(f"u{a.itemsize}")


# ---- normals ---------------------------------------------------------------------------------


@needs_core
def test_262144_normals_are_bit_identical_at_every_level_and_thread_count():
    # The case: baseline and AVX-512 disagreed on 11,620 of 262,144 values (FMA).
    ref = _reference.normals(2**40 + 12345, 3, 7, 11, 262_144)
    np.testing.assert_allclose(ref, _reference.normals_f64(2**40 + 12345, 3, 7, 11, 262_144),
                               rtol=0, atol=1e-5)  # fmt: skip
    for level in LEVELS:
        for threads in (1, 2):
            with kernels(level, threads):
                got = noise.normals_batch(2**40 + 12345, 3, [7], 11, 262_144)[0]
            np.testing.assert_array_equal(bits(got), bits(ref), err_msg=f"{level}, {threads}")


@needs_core
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**64 - 1),
    leaf=U32,
    keys=st.lists(U32, min_size=1, max_size=3),
    epoch=U32,
    count=st.integers(0, 5000),
    offset=st.integers(0, 2**20),
)
def test_every_level_matches_the_float32_reference_bit_for_bit(
    seed, leaf, keys, epoch, count, offset
):
    ref = np.stack([_reference.normals(seed, leaf, k, epoch, count, offset) for k in keys])
    for level in LEVELS:
        with kernels(level, 2):
            got = noise.normals_batch(seed, leaf, keys, epoch, count, offset)
        np.testing.assert_array_equal(bits(got), bits(ref), err_msg=level)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), leaf=U32, epoch=U32, count=st.integers(0, 4000))
def test_float32_reference_is_within_1e5_of_the_float64_formula(seed, leaf, epoch, count):
    got = _reference.normals(seed, leaf, 1, epoch, count)
    want = _reference.normals_f64(seed, leaf, 1, epoch, count)
    assert got.dtype == np.float32
    assert np.max(np.abs(got - want), initial=0.0) <= 1e-5


# ---- EGGROLL_SIMD ----------------------------------------------------------------------------

_PROBE = (
    "import hashlib, eggroll_np as egg\n"
    "from eggroll_np import _ext, noise\n"
    "z = noise.normals_batch(99, 2, [5, 6], 3, 70_000, 17)\n"
    "print(_ext.core.simd_level(), _ext.simd_forced, hashlib.sha256(z.tobytes()).hexdigest())\n"
)


def _python(args: list[str], tmp_path, simd: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != _ext.SIMD_ENV}
    if simd is not None:
        env[_ext.SIMD_ENV] = simd
    # -P and a neutral cwd: the child imports the installed package, as the tests do.
    return subprocess.run(
        [sys.executable, "-P", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


@needs_core
@pytest.mark.parametrize("level", LEVELS)
def test_eggroll_simd_forces_the_level_and_info_says_so(level, tmp_path):
    run = _python(["-c", _PROBE], tmp_path, level)
    assert run.returncode == 0, run.stderr
    got_level, forced, digest = run.stdout.split()
    assert (got_level, forced) == (level, "True")
    ref = np.stack([_reference.normals(99, 2, k, 3, 70_000, 17) for k in (5, 6)])
    assert digest == hashlib.sha256(ref.tobytes()).hexdigest()
    info = _python(["-m", "eggroll_np", "info"], tmp_path, level)
    assert info.returncode == 0, info.stderr
    assert f"SIMD level      {level} (forced by EGGROLL_SIMD)" in info.stdout


@needs_core
def test_without_eggroll_simd_the_best_level_is_used(tmp_path):
    info = _python(["-m", "eggroll_np", "info"], tmp_path, None)
    assert f"SIMD level      {LEVELS[0]} (best available)" in info.stdout
    run = _python(["-c", _PROBE], tmp_path, "")  # empty counts as unset
    assert run.stdout.split()[:2] == [LEVELS[0], "False"]


_FIRST_USE = (
    "import eggroll_np as egg\n"  # importing never raises
    "print('imported', flush=True)\n"
    "egg.noise.normals(1, 2, 3, 4, 10)\n"
)


@pytest.mark.parametrize("value", ["sse9", "AVX2", "avx-512"])
def test_eggroll_simd_unknown_value_is_a_clear_error_at_first_use(value, tmp_path):
    run = _python(["-c", _FIRST_USE], tmp_path, value)
    assert run.returncode != 0
    assert run.stdout.strip() == "imported"
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: EGGROLL_SIMD=")
    assert repr(value) in last
    assert "baseline, avx2, avx512" in last


def test_eggroll_simd_unknown_value_makes_info_a_one_line_error(tmp_path):
    info = _python(["-m", "eggroll_np", "info"], tmp_path, "foo")
    assert info.returncode == 2
    assert info.stdout == ""
    assert info.stderr.count("\n") == 1
    assert info.stderr.startswith("eggroll-np info: error: EGGROLL_SIMD='foo' is not a SIMD level")


class _CoreWithout:
    """A stand-in for a core on a processor that has only the baseline level."""

    def available_simd_levels(self) -> list[str]:
        return ["baseline"]

    def set_simd_level(self, name: str) -> None:  # pragma: no cover - must not be reached
        raise AssertionError("set_simd_level called for an unsupported level")


@pytest.mark.parametrize("value", ["avx2", "avx512", "avx512vnni"])
def test_eggroll_simd_level_the_cpu_lacks_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(_ext.SIMD_ENV, value)
    with pytest.raises(ValueError, match=f"EGGROLL_SIMD='{value}'.*does not support {value}.*"
                       "available here: baseline"):  # fmt: skip
        _ext._force_simd(_CoreWithout())
    monkeypatch.setenv(_ext.SIMD_ENV, "avx2")
    with pytest.raises(ValueError, match=re.escape("EGGROLL_SIMD='avx2' needs eggroll_np's C++")):
        _ext._force_simd(None)


# ---- the update contraction ------------------------------------------------------------------


@needs_core
@settings(max_examples=30, deadline=None)
@given(
    K=st.integers(0, 40),
    m=st.integers(1, 70),
    n=st.integers(1, 150),
    r=st.integers(1, 3),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_contract_is_the_reference_sum_at_every_level_and_thread_count(K, m, n, r, dtype, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((K, m, r)).astype(dtype)
    B = rng.standard_normal((K, n, r)).astype(dtype)
    w = rng.standard_normal(K)
    want = _reference.contract(A, B, (w * 0.37).astype(dtype))
    for level in LEVELS:
        for threads in (1, 2, 3):
            with kernels(level, threads):
                got = lowrank.contract(A, B, w, 0.37)
            assert got.dtype == dtype
            assert got.shape == (m, n)
            np.testing.assert_array_equal(bits(got), bits(want), err_msg=f"{level}, {threads}")


@needs_core
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("K", "r", "m", "n"),
    [(300, 1, 13, 70), (97, 3, 13, 70), (300, 1, 70, 13), (97, 3, 70, 13), (300, 1, 451, 525)],
)
def test_contract_over_many_blocks_is_the_reference_sum(K, r, m, n, dtype):
    # K * r spans several of the core's blocks of terms (it resumes each output element from
    # its stored sum), with a last row tile and a last column tile that are not whole. n = 13,
    # narrower than a column tile, runs transposed (b on the left); 451 x 300 values of the
    # left operand, above the core's L2 budget, run in groups of row tiles (the last not whole),
    # each group over every column tile.
    rng = np.random.default_rng(K * r + m)
    A = rng.standard_normal((K, m, r)).astype(dtype)
    B = rng.standard_normal((K, n, r)).astype(dtype)
    w = rng.standard_normal(K)
    want = _reference.contract(A, B, (w * 0.37).astype(dtype))
    for level in LEVELS:
        for threads in (1, 2):
            with kernels(level, threads):
                got = lowrank.contract(A, B, w, 0.37)
            np.testing.assert_array_equal(bits(got), bits(want), err_msg=f"{level}, {threads}")


@needs_core
def test_contract_full_is_the_reference_sum_at_every_level():
    rng = np.random.default_rng(5)
    E = rng.standard_normal((300, 7, 129)).astype(np.float32)
    w = rng.standard_normal(300)
    ones = np.ones((300, 1, 1), np.float32)
    want = _reference.contract(ones, E.reshape(300, -1, 1), w.astype(np.float32))[0]
    want = (want * np.float32(0.25)).reshape(7, 129)
    for level in LEVELS:
        for threads in (1, 2):
            with kernels(level, threads), threadpool_limits(threads, user_api="blas"):
                got = lowrank.contract_full(E, w, 0.25)
            np.testing.assert_array_equal(bits(got), bits(want), err_msg=level)


@needs_core
def test_core_contract_rejects_mixed_dtypes_and_shapes():
    a = np.zeros((3, 4, 1), np.float32)
    with pytest.raises(TypeError, match="same dtype"):
        core.contract(a, np.zeros((3, 5, 1)), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="agree on K"):
        core.contract(a, np.zeros((2, 5, 1), np.float32), np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        core.contract(*(x.astype(np.float16) for x in (a, a, np.zeros(3))))


# ---- Adam --------------------------------------------------------------------------------------


class _Adam:
    optimizer, lr, hyperparams = "adam", 0.01, optim.Adam(b1=0.9, b2=0.999, eps=1e-8)
    schedule = optim.Schedule()

    def __init__(self, weight_decay: float) -> None:
        self.weight_decay = weight_decay


@needs_core
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_fused_adam_step_is_numpys_step_bit_for_bit(wd):
    rng = np.random.default_rng(2)
    theta = {0: rng.standard_normal(70_001).astype(np.float32), 1: np.asarray(0.3, np.float32)}
    state = optim.init("adam", theta)
    cfg = _Adam(wd)
    for count in (1, 2, 3, 999, 123_456):
        state = state._replace(count=count - 1)
        grads = {i: (rng.standard_normal(np.shape(t)) * 10.0 ** min(count, 5)).astype(np.float32)
                 for i, t in theta.items()}  # fmt: skip
        deltas, want_state = optim.update(grads, state, theta, cfg)
        want = {i: np.asarray(theta[i] + deltas[i]) for i in theta}
        for level in LEVELS:
            with kernels(level, 2):
                got, got_state = optim.apply(grads, state, theta, cfg)
            for i in theta:
                np.testing.assert_array_equal(bits(got[i]), bits(want[i]), err_msg=level)
                for got_s, want_s in zip(got_state.leaves[i], want_state.leaves[i], strict=True):
                    np.testing.assert_array_equal(bits(got_s), bits(want_s))
        theta, state = want, want_state


# ---- tell: thread counts, SIMD levels, layouts -------------------------------------------------


def _params() -> dict[str, np.ndarray]:
    # Sizes where OpenBLAS's result depended on its thread count (the update's GEMM and GEMV).
    rng = np.random.default_rng(0)
    return {
        "W": rng.standard_normal((300, 200)).astype(np.float32),
        "V": rng.standard_normal((64, 3000)).astype(np.float32),
        "b": rng.standard_normal(5000).astype(np.float32),
        "d": rng.standard_normal((40, 30)),  # float64
    }


CONFIGS = [
    {"optimizer": "adam", "rank": 1},
    {"optimizer": "sgd", "rank": 3, "weight_decay": 0.01},
    {"optimizer": "momentum", "noise": "full"},
    {"optimizer": "adam", "noise": "full", "weight_decay": 0.1},
]


def _tell_twice(params, config: dict) -> tuple[list[np.ndarray], list[float]]:
    population = 256 if config.get("noise") == "full" else 512  # full noise: 128 keys
    state = egg.init(params, population=population, seed=3, sigma=0.05, **config)
    norms = []
    for g in range(2):
        fitness = np.random.default_rng(g).standard_normal(population)
        params, state = egg.tell(params, fitness, state)
        norms.append(state.info["update_norm"])
    arrays = tree.flatten(params)[0] + optim.state_arrays(state.opt_state)
    return arrays, norms


def _assert_same_run(a, b, what: str) -> None:
    (arrays_a, norms_a), (arrays_b, norms_b) = a, b
    assert norms_a == norms_b, what
    for x, y in zip(arrays_a, arrays_b, strict=True):
        assert x.dtype == y.dtype, what
        assert x.shape == y.shape, what
        np.testing.assert_array_equal(bits(x), bits(y), err_msg=what)


@needs_core
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_tell_is_bit_identical_for_any_blas_and_library_thread_count_and_level(config):
    params = _params()
    with kernels(LEVELS[0], 1), threadpool_limits(1, user_api="blas"):
        want = _tell_twice(params, config)
    for level in LEVELS:
        for blas, ours in ((2, 2), (2, 1), (1, 2)):
            with kernels(level, ours), threadpool_limits(blas, user_api="blas"):
                got = _tell_twice(params, config)
            _assert_same_run(got, want, f"{level}, BLAS {blas}, core {ours} threads")


def _layouts(params: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    def strided(x):
        wide = np.empty((*x.shape[:-1], 2 * x.shape[-1]), x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]

    return {
        "fortran": {k: np.asfortranarray(v) for k, v in params.items()},
        "strided": {k: strided(v) for k, v in params.items()},
        "big-endian": {k: v.astype(v.dtype.newbyteorder(">")) for k, v in params.items()},
        "reversed": {k: v[::-1].copy()[::-1] for k, v in params.items()},
    }


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_tell_is_bit_identical_for_any_input_layout(config):
    params = _params()
    want = _tell_twice(params, config)
    for name, other in _layouts(params).items():
        for k in params:
            np.testing.assert_array_equal(other[k], params[k])  # same values, other memory
        _assert_same_run(_tell_twice(other, config), want, name)


@needs_core
def test_forward_correction_is_bit_identical_at_every_level():
    # The rank-1 projection x @ A is a dot product: summed over fixed lanes, not per-ISA widths.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3, 1001), dtype=np.float32)
    a = rng.standard_normal((4, 1001, 1), dtype=np.float32)
    b = rng.standard_normal((4, 77, 1), dtype=np.float32)
    keys = np.array([0, 1, 2, 3, 1, 0], np.uint32)
    coef = rng.standard_normal(6).astype(np.float32)
    outs = []
    for level in LEVELS:
        with kernels(level, 2):
            out = np.zeros((6, 3, 77), np.float32)
            core.lowrank_correction(x, a, b, keys, coef, out)
            outs.append(out)
    for level, out in zip(LEVELS, outs, strict=True):
        np.testing.assert_array_equal(bits(out), bits(outs[0]), err_msg=level)


def _nearest_f32(exact) -> np.float32:
    """The float32 nearest a Fraction, ties to an even last bit (exact values in range only)."""
    from fractions import Fraction

    x = np.float32(float(exact))  # within one float32 ulp of the answer
    cands = [x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))]
    return min(
        (c for c in cands if np.isfinite(c)),
        key=lambda c: (abs(Fraction(float(c)) - exact), int(c.view(np.int32)) & 1),
    )


def test_fma32_is_the_exactly_rounded_fused_multiply_add():
    from fractions import Fraction

    rng = np.random.default_rng(8)
    a, b, c = (rng.standard_normal(4000).astype(np.float32) for _ in range(3))
    c *= np.float32(2.0) ** rng.integers(-30, 30, 4000).astype(np.float32)
    got = _reference.fma32(a, b, c)
    want = [
        _nearest_f32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))
        for x, y, z in zip(a, b, c, strict=True)
    ]
    np.testing.assert_array_equal(got, np.array(want, dtype=np.float32))
    # ... and it is not multiply-then-add: rounding twice differs on some of these.
    assert np.count_nonzero(got != a * b + c) > 10


@pytest.mark.parametrize("b", [0.9, 0.999, 0.5])
def test_bias_correction_power_is_accurate(b):
    # _optimizers.power squares in IEEE double (libm's pow may round differently elsewhere): its
    # relative error grows at most like n ulps, far below float32's resolution of 1 - b**n.
    from fractions import Fraction

    for n in (0, 1, 2, 3, 7, 64, 1000, 123_457):
        exact = Fraction(b) ** n
        got = _optimizers.power(b, n)
        tiny = Fraction(float(np.finfo(np.float64).smallest_subnormal))
        assert abs(Fraction(got) - exact) <= (2 * n + 1) * exact * Fraction(2) ** -53 + tiny
