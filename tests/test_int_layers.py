"""Integer population layers (linear, embed, member, perturbed) equal the int64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import dispatch, intmath, intops

BACKENDS = ["numpy", "core"]  # "core": the compiled int8 rows where the build has them


def _q(rng: np.random.Generator, shape: tuple[int, ...], lim: int = 127) -> np.ndarray:
    return rng.integers(-lim, lim + 1, shape).astype(np.int8)


@st.composite
def linear_cases(draw: st.DrawFn) -> dict:
    return dict(
        seed=draw(st.integers(0, 2**32 - 1)),
        m=draw(st.integers(1, 40)),
        n=draw(st.integers(1, 24)),
        B=draw(st.integers(1, 5)),
        pairs=draw(st.integers(1, 4)),
        rank=draw(st.sampled_from([1, 4])),
        k=draw(st.integers(0, 15)),
        shared=draw(st.booleans()),
        bias=draw(st.sampled_from(["none", "full", "frozen"])),
        kind=draw(st.sampled_from(["lowrank", "lowrank", "full", "frozen"])),
        relu=draw(st.booleans()),
        big=draw(st.booleans()),
    )


def _setup(c: dict):
    rng = np.random.default_rng(c["seed"])
    lim = 127 if c["big"] else 9
    params = {"W": _q(rng, (c["m"], c["n"]), lim)}
    if c["bias"] != "none":
        params["b"] = _q(rng, (c["n"],))
    rank = min(c["rank"], c["m"], c["n"])
    rank = 4 if rank == 4 else 1
    lowrank = {"W": c["kind"]}
    if "b" in params:
        lowrank["b"] = c["bias"]
    state = egg.init(
        params, population=2 * c["pairs"], rank=rank, seed=c["seed"], int_sigma_shift=c["k"],
        lowrank=lowrank,
    )  # fmt: skip
    return rng, params, state


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=30, deadline=None)
@given(c=linear_cases())
def test_linear_equals_reference(backend, c):
    rng, params, state = _setup(c)
    pop = egg.ask(params, state)
    N = pop.size
    x = _q(rng, (c["B"], c["m"]) if c["shared"] else (N, c["B"], c["m"]))
    act = "relu" if c["relu"] else None
    b = "b" if "b" in params else None
    with dispatch.use(backend):
        y = pop.linear(x, "W", b, act)
    assert y.dtype == np.int8
    assert y.shape == (N, c["B"], c["n"])
    signs = pop.signs.astype(np.int64)
    keys = pop.noise.local
    bias = None if b is None else pop.perturbed("b")
    if c["kind"] == "full":
        e = pop.noise.full(0)
        Wi = intmath.perturb_full(params["W"], e, keys, signs, c["k"])
        want = intmath.linear_full_reference(x, Wi, bias, c["relu"])
    else:
        a, bb = pop.noise.factors(0) if c["kind"] == "lowrank" else (None, None)
        want = intmath.linear_reference(x, params["W"], a, bb, keys, signs, bias, c["k"], c["relu"])
    np.testing.assert_array_equal(y, want)
    assert y.min() >= (0 if c["relu"] else -127)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), V=st.integers(1, 30), d=st.integers(1, 16),
    L=st.integers(0, 7), pairs=st.integers(1, 4), rank=st.sampled_from([1, 4]),
    k=st.integers(0, 15), per_member=st.booleans(),
)  # fmt: skip
def test_embed_equals_reference(backend, seed, V, d, L, pairs, rank, k, per_member):
    rng = np.random.default_rng(seed)
    rank = rank if rank <= min(V, d) else 1
    params = {"E": _q(rng, (V, d))}
    state = egg.init(params, population=2 * pairs, rank=rank, seed=seed, int_sigma_shift=k)
    pop = egg.ask(params, state)
    ids = rng.integers(0, V, (pop.size, L) if per_member else (L,))
    with dispatch.use(backend):
        y = pop.embed(ids, "E", per_member=per_member)
    a, b = pop.noise.factors(0)
    want = intmath.embed_reference(ids, params["E"], a, b, pop.noise.local, pop.signs, k)
    np.testing.assert_array_equal(y, want)
    # the weight-space member agrees with the batched rows here (no rounding in between)
    for i in range(pop.size):
        rows = ids[i] if per_member else ids
        np.testing.assert_array_equal(y[i], pop.member(i)["E"][rows])


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), m=st.integers(1, 12), n=st.integers(1, 12),
    rank=st.sampled_from([1, 4]), k=st.integers(0, 15),
)  # fmt: skip
def test_member_and_perturbed_follow_the_rules(seed, m, n, rank, k):
    rng = np.random.default_rng(seed)
    rank = rank if rank <= min(m, n) else 1
    params = {"W": _q(rng, (m, n)), "b": _q(rng, (n,)), "C": _q(rng, (4, 2, 2))}
    lowrank = {"W": "lowrank", "b": "full", "C": "lowrank"}
    state = egg.init(params, population=4, rank=rank, seed=seed, int_sigma_shift=k, lowrank=lowrank)
    pop = egg.ask(params, state)
    h = intmath.rank_shift(rank)
    iW, iC, ib = (state.spec.index(p) for p in ("W", "C", "b"))
    for i in range(pop.size):
        member = pop.member(i)
        j, s = int(pop.noise.local[i]), int(pop.signs[i])
        a, b = (f[j] for f in pop.noise.factors(iW))
        np.testing.assert_array_equal(
            member["W"], intmath.member_lowrank(params["W"], a, b, s, k, h)
        )
        a, b = (f[j] for f in pop.noise.factors(iC))  # C's matrix view (4, 4)
        np.testing.assert_array_equal(
            member["C"], intmath.member_lowrank(params["C"], a, b, s, k, h)
        )
        e = pop.noise.full(ib)
        np.testing.assert_array_equal(
            member["b"], intmath.perturb_full(params["b"], e, [j], [s], k)[0]
        )
        for path in ("W", "b", "C"):
            np.testing.assert_array_equal(pop.perturbed(path)[i], member[path])
        assert all(v.dtype == np.int8 and v.min() >= -127 for v in member.values())


def test_quantized_noise_is_the_rounded_normals():
    params = {"W": np.zeros((6, 5), np.int8), "b": np.zeros(5, np.int8)}
    state = egg.init(params, population=4, rank=4, seed=3)
    pop = egg.ask(params, state)
    A, B = egg.noise.factors(3, 0, pop.noise.keys, 0, (6, 5), 4)
    a, b = pop.noise.factors(0)
    np.testing.assert_array_equal(a, np.clip(np.rint(A * 16), -127, 127).astype(np.int8))
    np.testing.assert_array_equal(b, np.clip(np.rint(B * 16), -127, 127).astype(np.int8))
    z = egg.noise.normals_batch(3, 1, pop.noise.keys, 0, 5)
    np.testing.assert_array_equal(pop.noise.full(1), intmath.quantize(z))


def test_quantize_rounds_half_to_even_and_clips():
    z = np.array([0.03125, 0.09375, -0.03125, 7.9, -9.0, 100.0], np.float32)  # 16z = .5, 1.5, ...
    np.testing.assert_array_equal(intmath.quantize(z), [0, 2, 0, 126, -127, 127])


def test_shift_floor_is_floor_division():
    v = np.arange(-70, 70, dtype=np.int64)
    for s in range(0, 8):
        np.testing.assert_array_equal(intmath.shift_floor(v, s), v // 2**s)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None)
@given(
    M=st.integers(1, 9), K=st.sampled_from([1, 3, 64, 1023, 1025, 2000]), n=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_gemm_is_exact_at_every_depth(backend, M, K, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (M, K)).astype(np.int8)  # -128 too: the kernel takes any int8
    w = rng.integers(-128, 128, (K, n)).astype(np.int8)
    x[0] = -128
    with dispatch.use(backend):
        out = intops.gemm(x, w)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, intmath.gemm_reference(x, w))


def test_exact_float_bounds():
    assert intops.exact_float(1024, 128 * 128) is np.float32
    assert intops.exact_float(1025, 128 * 128) is np.float64
    assert intops.exact_float(2**40, 128 * 128) is None


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None)
@given(
    K=st.integers(1, 9), m=st.integers(1, 9), n=st.integers(1, 9), r=st.sampled_from([1, 4]),
    seed=st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_contract_equals_reference(backend, K, m, n, r, seed):
    rng = np.random.default_rng(seed)
    a, b = _q(rng, (K, m, r)), _q(rng, (K, n, r))
    c = rng.integers(-1, 2, K).astype(np.int8)
    with dispatch.use(backend):
        Z = intops.contract(a, b, c)
    np.testing.assert_array_equal(Z, intmath.contract_reference(a, b, c))


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_normals_are_the_quantized_normals(backend):
    keys = np.array([0, 3, 7, 2**32 - 1], np.uint32)
    requests = [(0, 0, 5000), (3, 17, 999), (2**32 - 1, 2**34 - 10, 10)]
    z = egg.noise.normals_many(5, 9, keys, requests)
    with dispatch.use(backend):
        q = egg.noise.normals_many(5, 9, keys, requests, dtype=np.int8)
    for zj, qj in zip(z, q, strict=True):
        assert qj.dtype == np.int8
        np.testing.assert_array_equal(qj, intmath.quantize(zj))
    with pytest.raises(ValueError, match="dtype must be float32 or int8"):
        egg.noise.normals_many(5, 9, keys, requests, dtype=np.int16)


def _levels() -> list[str]:
    from eggroll_np import _ext

    return [] if _ext.core is None else list(_ext.core.available_simd_levels())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("level", _levels())
def test_layer_and_update_bits_at_every_simd_level_and_thread_count(level, threads):
    from eggroll_np import _ext

    core = _ext.core
    before = core.simd_level(), core.num_threads()
    rng = np.random.default_rng(7)
    params = {"W": _q(rng, (70, 33)), "b": _q(rng, (33,)), "E": _q(rng, (20, 16))}
    state = egg.init(params, population=12, rank=4, seed=3, int_sigma_shift=3)
    x = _q(rng, (12, 5, 70))
    ids = rng.integers(0, 20, (6,))
    fitness = rng.normal(size=12)
    try:
        core.set_simd_level(level)
        core.set_num_threads(threads)
        pop = egg.ask(params, state)
        got = (pop.linear(x, "W", "b", "relu"), pop.embed(ids, "E"))
        new, _ = egg.tell(params, fitness, state, population=pop)
    finally:
        core.set_simd_level(before[0])
        core.set_num_threads(before[1])
    with dispatch.use("numpy"):
        pop = egg.ask(params, state)
        want = (pop.linear(x, "W", "b", "relu"), pop.embed(ids, "E"))
        new_ref, _ = egg.tell(params, fitness, state, population=pop)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    for p in params:
        np.testing.assert_array_equal(new[p], new_ref[p])
