"""Tests of eggroll_np.population: members per the noise contract, matmul/perturbed vs dense."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import gradient, noise, noise_table
from eggroll_np.config import NoiseKind
from eggroll_np.tree import check_params

from .engine_helpers import fit_rank, unit_noise
from .strategies import float_dtypes, param_trees


def _pop(params, generation=0, **kw):
    state = egg.init(params, **kw)
    return egg.ask(params, dataclasses.replace(state, generation=generation)), state


@settings(max_examples=25, deadline=None)
@given(
    params=param_trees(),
    n_pairs=st.integers(1, 3),
    antithetic=st.booleans(),
    rank=st.integers(1, 4),
    seed=st.integers(0, 2**64 - 1),
    generation=st.integers(0, 9),
    noise_reuse=st.integers(1, 3),
    sigma=st.floats(1e-3, 1.0),
)
def test_members_follow_the_noise_contract(
    params, n_pairs, antithetic, rank, seed, generation, noise_reuse, sigma
):
    n = 2 * n_pairs
    rank = fit_rank(rank, params)  # init refuses a rank above min(m, n) of a low-rank leaf
    pop, state = _pop(
        params,
        generation,
        population=n,
        antithetic=antithetic,
        rank=rank,
        seed=seed,
        noise_reuse=noise_reuse,
        sigma=sigma,
    )
    leaves, spec, _ = check_params(params)
    epoch = generation // noise_reuse
    assert pop.epoch == epoch
    assert pop.size == n
    assert pop.sigma == sigma
    np.testing.assert_array_equal(pop.signs, noise.signs(n, antithetic))
    np.testing.assert_array_equal(pop.member_keys, noise.member_keys(n, antithetic))
    for i in range(n):
        member_leaves, member_spec, _ = check_params(pop.member(i))
        assert member_spec == spec
        key = i // 2 if antithetic else i
        s = -1.0 if antithetic and i % 2 else 1.0
        for leaf, (theta, theta_i) in enumerate(zip(leaves, member_leaves, strict=True)):
            kind = state.config.kinds[leaf]
            assert kind is (NoiseKind.LOWRANK if theta.ndim == 2 else NoiseKind.FULL)
            eps = unit_noise(seed, leaf, key, epoch, theta.shape, kind, rank)
            tol = 1e-5 if theta.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(
                theta_i.astype(np.float64) - theta,
                sigma * s * eps,
                atol=tol * (np.abs(theta).max() + sigma * np.abs(eps).max() + 1),
            )
            assert theta_i.dtype == theta.dtype


@st.composite
def matmul_case(draw):
    dtype = draw(float_dtypes())
    m, n = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    kind = draw(st.sampled_from(list(NoiseKind)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = {"W": rng.standard_normal((m, n)).astype(dtype), "b": np.zeros(3, dtype)}
    cfg = dict(
        population=2 * draw(st.integers(1, 4)),
        rank=draw(st.integers(1, min(4, m, n))),
        seed=draw(st.integers(0, 1000)),
        sigma=draw(st.floats(0.01, 1.0)),
        antithetic=draw(st.booleans()),
        lowrank={"W": kind},
    )
    transpose, shared = draw(st.booleans()), draw(st.booleans())
    bt = draw(st.integers(1, 4))
    cols = n if transpose else m
    shape = (bt, cols) if shared else (cfg["population"], bt, cols)
    x = rng.standard_normal(shape).astype(dtype)
    return params, cfg, x, transpose


@settings(max_examples=60, deadline=None)
@given(matmul_case())
def test_matmul_equals_dense_member_matmul(case):
    params, cfg, x, transpose = case
    pop, _ = _pop(params, **cfg)
    before = x.copy()
    out = pop.matmul(x, "W", transpose=transpose)
    np.testing.assert_array_equal(x, before)
    dtype = params["W"].dtype
    assert out.dtype == dtype
    assert out.shape == (pop.size, x.shape[-2], params["W"].shape[0 if transpose else 1])
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for i in range(pop.size):
        Wi = pop.member(i)["W"].astype(np.float64)
        xi = (x if x.ndim == 2 else x[i]).astype(np.float64)
        ref = xi @ (Wi.T if transpose else Wi)
        scale = np.abs(xi) @ np.abs(Wi.T if transpose else Wi) + 1
        np.testing.assert_array_less(np.abs(out[i] - ref), tol * scale)


def test_matmul_tuple_path_and_nested_tree():
    params = {"layers": [{"W": np.ones((3, 2), np.float32)}]}
    pop, _ = _pop(params, population=4)
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(pop.matmul(x, ("layers", 0, "W")), pop.matmul(x, "layers/0/W"))


@pytest.mark.parametrize("kind", list(NoiseKind))
def test_perturbed_stacks_members(kind):
    rng = np.random.default_rng(3)
    params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(5)}
    pop, _ = _pop(params, population=6, lowrank={"W": kind}, sigma=0.3)
    for path in ("W", "b"):
        stack = pop.perturbed(path)
        assert stack.shape == (6, *params[path].shape)
        for i in range(6):
            np.testing.assert_allclose(stack[i], pop.member(i)[path], rtol=1e-12, atol=1e-12)
    # the returned stacks are fresh arrays: writing to them changes nothing else
    pop.perturbed("b")[:] = 0
    np.testing.assert_allclose(pop.perturbed("b")[0], pop.member(0)["b"])


def test_frozen_leaves_are_not_perturbed():
    params = {"W": np.ones((2, 2)), "emb": np.arange(3.0)}
    pop, state = _pop(params, population=4, lowrank={"emb": NoiseKind.FROZEN})
    for i in range(4):
        np.testing.assert_array_equal(pop.member(i)["emb"], params["emb"])
    assert sorted(state.opt_state.leaves) == [0]  # no optimizer state for the frozen leaf


def test_slice_has_the_same_members_and_noise():
    rng = np.random.default_rng(4)
    params = {"W": rng.standard_normal((5, 4)).astype(np.float32), "b": np.zeros(4, np.float32)}
    pop, _ = _pop(params, population=8)
    part = pop.slice(3, 7)
    assert part.size == 4
    np.testing.assert_array_equal(part.signs, pop.signs[3:7])
    np.testing.assert_array_equal(part.member_keys, pop.member_keys[3:7])
    x = rng.standard_normal((2, 5)).astype(np.float32)
    np.testing.assert_allclose(part.matmul(x, "W"), pop.matmul(x, "W")[3:7], rtol=1e-6)
    np.testing.assert_array_equal(part.perturbed("b"), pop.perturbed("b")[3:7])
    for j in range(4):
        np.testing.assert_array_equal(part.member(j)["W"], pop.member(3 + j)["W"])
    assert pop.slice(2, 2).size == 0
    with pytest.raises(ValueError, match="stop"):
        pop.slice(5, 4)
    with pytest.raises(ValueError, match="start"):
        pop.slice(-1, 4)
    with pytest.raises(ValueError, match="whole population"):
        gradient.estimate(part.noise, np.zeros(4))


def test_noise_generated_once_per_generation_for_unique_keys(monkeypatch):
    calls = []
    batches = []
    real = noise.normals_many

    def counting(seed, epoch, keys, requests, *args, **kwargs):
        batches.append(len(requests))
        calls.extend((leaf, len(keys)) for leaf, offset, _ in requests if offset == 0)
        return real(seed, epoch, keys, requests, *args, **kwargs)

    monkeypatch.setattr(noise, "normals_many", counting)
    params = {"W": np.ones((6, 5), np.float32), "V": np.ones((5, 2), np.float32)}
    state = egg.init(params, population=8)
    x = np.ones((3, 6), np.float32)

    def fitness(pop):
        h = pop.matmul(x, "W")
        out = pop.matmul(h, "V")
        pop.member(0)
        return out.sum(axis=(1, 2))

    params2, state2 = egg.step(params, fitness, state, batched=True)
    assert sorted(calls) == [(0, 4), (1, 4)]  # once per leaf, K = N/2 keys (antithetic)
    assert batches == [4]  # A and B of both leaves in ONE generator call
    calls.clear()
    egg.step(params2, fitness, state2, batched=True)  # next epoch: regenerated once
    assert sorted(calls) == [(0, 4), (1, 4)]


def test_noise_reuse_is_explicit_and_gives_the_same_bits():
    params = {"W": np.ones((3, 3), np.float32)}
    state = egg.init(params, population=4, noise_reuse=2, optimizer="sgd", lr=0.0)
    f = lambda p: float(p["W"].sum())  # noqa: E731
    pop0 = egg.ask(params, state)
    p1, s1 = egg.tell(params, [f(pop0.member(i)) for i in range(4)], state, population=pop0)
    assert len(pop0.noise) == 1  # W's factors, generated once for forward and update
    pop1 = egg.ask(p1, s1, noise=pop0.noise)  # same epoch: reused
    assert pop1.epoch == pop0.epoch == 0
    assert pop1.noise is pop0.noise
    fresh = egg.ask(p1, s1)  # not passed: regenerated, the same numbers
    assert fresh.noise is not pop0.noise
    np.testing.assert_array_equal(fresh.member(1)["W"], pop1.member(1)["W"])
    _, s2 = egg.step(p1, f, s1)
    pop2 = egg.ask(p1, s2, noise=pop1.noise)  # another epoch: new noise, nothing held
    assert pop2.epoch == 1
    assert pop2.noise is not pop1.noise
    assert len(pop2.noise) == 0
    with pytest.raises(TypeError, match="noise must be a GenerationNoise"):
        egg.ask(p1, s2, noise=pop1)


def test_tell_reuses_or_regenerates_the_same_noise():
    rng = np.random.default_rng(7)
    params = {"W": rng.standard_normal((5, 4)), "b": rng.standard_normal(4)}
    state = egg.init(params, population=6, noise="full", optimizer="adam")
    pop = egg.ask(params, state)
    pop.perturbed("b")  # the forward holds b's dense noise; W's is regenerated by the update
    fitness = rng.standard_normal(6)
    a, sa = egg.tell(params, fitness, state, population=pop)
    b, sb = egg.tell(params, fitness, state)
    for k in params:
        np.testing.assert_array_equal(a[k], b[k])
    assert sa.info == sb.info
    with pytest.raises(ValueError, match="whole population"):
        egg.tell(params, fitness, state, population=pop.slice(0, 2))
    with pytest.raises(ValueError, match="generation 1"):
        egg.tell(a, fitness, sa, population=pop)
    with pytest.raises(TypeError, match="population must be the Population"):
        egg.tell(params, fitness, state, population=pop.noise)


def test_es_state_holds_no_noise():
    params = {"W": np.ones((3, 3), np.float32)}
    state = egg.init(params, population=4)
    assert {f.name for f in dataclasses.fields(state)} == {
        "config", "generation", "opt_state", "spec", "info"
    }


def test_black_box_full_rank_leaves_are_not_held():
    params = {"W": np.ones((40, 30)), "b": np.zeros(30)}
    state = egg.init(params, population=16, noise="full")
    pop = egg.ask(params, state)
    fitness = [float(pop.member(i)["b"].sum()) for i in range(pop.size)]
    egg.tell(params, fitness, state, population=pop)
    assert len(pop.noise) == 0  # full-rank noise regenerated per key, never N dense copies


def test_bad_population_queries():
    params = {"W": np.ones((3, 2), np.float32), "b": np.zeros(2, np.float32)}
    pop, _ = _pop(params, population=4)
    with pytest.raises(ValueError, match="2-D leaf, 'b'"):
        pop.matmul(np.ones((1, 2), np.float32), "b")
    with pytest.raises(ValueError, match=r"\(B, 3\) or \(4, B, 3\).*'W'"):
        pop.matmul(np.ones((1, 2), np.float32), "W")
    with pytest.raises(ValueError, match=r"'W' \(transposed\)"):
        pop.matmul(np.ones((1, 3), np.float32), "W", transpose=True)
    with pytest.raises(ValueError, match=r"\(4, B, 3\)"):
        pop.matmul(np.ones((3, 1, 3), np.float32), "W")
    with pytest.raises(ValueError, match="'V' is not a leaf"):
        pop.matmul(np.ones((1, 3), np.float32), "V")
    with pytest.raises(ValueError, match="member index"):
        pop.member(4)
    with pytest.raises(TypeError, match="member index"):
        pop.member(1.0)
    assert "size=4" in repr(pop)


@st.composite
def gradient_case(draw):
    dtype = draw(float_dtypes())
    m, n = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    antithetic = draw(st.booleans())
    population = draw(st.integers(1, 32)) * 2 if antithetic else draw(st.integers(2, 64))
    cfg = dict(
        population=population,
        antithetic=antithetic,
        rank=draw(st.integers(1, min(8, m, n))),
        seed=draw(st.integers(0, 2**64 - 1)),
        sigma=draw(st.floats(0.01, 1.0)),
        noise_reuse=draw(st.integers(1, 3)),
    )
    generation = draw(st.integers(0, 5))
    weights = draw(
        st.lists(st.floats(-3, 3), min_size=population, max_size=population).map(np.array)
    )
    params = {"W": np.zeros((m, n), dtype), "b": np.zeros(n, dtype)}
    return params, cfg, generation, weights


@settings(max_examples=40, deadline=None)
@given(gradient_case())
def test_gradient_equals_dense_sum_over_members(case):
    """g = 1/(N sigma) sum_i w_i s_i eps_i, with eps_i built densely per the contract."""
    params, cfg, generation, w = case
    pop, state = _pop(params, generation, **cfg)
    grads = gradient.estimate(pop.noise, w)
    n_pop, sigma = cfg["population"], cfg["sigma"]
    for leaf, path in enumerate(("W", "b")):
        theta = params[path]
        kind = state.config.kinds[leaf]
        ref = np.zeros(theta.shape)
        bound = np.zeros(theta.shape)
        for i in range(n_pop):
            key = i // 2 if cfg["antithetic"] else i
            s = -1.0 if cfg["antithetic"] and i % 2 else 1.0
            eps = unit_noise(cfg["seed"], leaf, key, pop.epoch, theta.shape, kind, cfg["rank"])
            ref += w[i] * s * eps
            bound += abs(w[i]) * np.abs(eps)
        ref /= n_pop * sigma
        bound /= n_pop * sigma
        assert grads[leaf].dtype == theta.dtype
        tol = 1e-5 if theta.dtype == np.float32 else 1e-12
        # rounding is relative to the size of the terms (|eps| of the largest entry), not to
        # each entry's own magnitude, which a low-rank sum can cancel
        np.testing.assert_allclose(grads[leaf], ref, rtol=0, atol=tol * (bound.max() + 1e-30))


def test_black_box_full_noise_is_generated_once_per_key_and_leaf(monkeypatch):
    # Antithetic pairs share a key: with two full-rank leaves each key's noise of each leaf is
    # generated once, not once per member (the reuse must be kept per leaf).
    calls = []
    real = noise.normals_batch

    def counting(seed, leaf, keys, *args, **kwargs):
        calls.append((leaf, tuple(int(k) for k in np.atleast_1d(keys))))
        return real(seed, leaf, keys, *args, **kwargs)

    monkeypatch.setattr(noise, "normals_batch", counting)
    params = {"a": np.zeros(3, np.float32), "b": np.zeros(2, np.float32)}
    state = egg.init(params, population=8, optimizer="sgd")
    pop = egg.ask(params, state)
    for i in range(pop.size):
        pop.member(i)
    assert sorted(calls) == sorted((leaf, (k,)) for leaf in (0, 1) for k in range(4))


@pytest.mark.parametrize("antithetic", [True, False])
@pytest.mark.parametrize("size", [1, 3, 4, 8, 20])
def test_chunks_cover_the_population_and_read_its_noise(antithetic, size):
    rng = np.random.default_rng(5)
    params = {"W": rng.standard_normal((5, 4)).astype(np.float32),
              "b": rng.standard_normal(4).astype(np.float32),
              "c": rng.standard_normal(3).astype(np.float32)}  # fmt: skip
    pop, _ = _pop(params, population=8, antithetic=antithetic, rank=2, seed=7)
    chunks = pop.chunks(size)
    starts = [members.start for members, _ in chunks]
    assert starts == list(range(0, 8, size))
    assert sum(sub.size for _, sub in chunks) == 8
    A, B = pop.noise.factors(0)
    b_noise = pop.noise.held_full(1)
    x = rng.standard_normal((2, 5)).astype(np.float32)
    whole = pop.linear(x, "W", "b", "tanh")
    for members, sub in chunks:
        assert sub.size == members.stop - members.start <= size
        np.testing.assert_array_equal(sub.signs, pop.signs[members])
        np.testing.assert_array_equal(sub.member_keys, pop.member_keys[members])
        # views of the population's arrays: the noise was made once, for everyone
        sA, sB = sub.noise.factors(0)
        assert np.shares_memory(sA, A)
        assert np.shares_memory(sB, B)
        assert np.shares_memory(sub.noise.held_full(1), b_noise)
        np.testing.assert_array_equal(sub.linear(x, "W", "b", "tanh"), whole[members])
        np.testing.assert_array_equal(sub.perturbed("c"), pop.perturbed("c")[members])
        for j in range(sub.size):
            np.testing.assert_array_equal(sub.member(j)["W"], pop.member(members.start + j)["W"])


@pytest.mark.parametrize("table", [None, 4096])
def test_a_chunked_fitness_gives_the_same_step_and_no_new_noise(monkeypatch, table):
    rng = np.random.default_rng(6)
    params = {"W": rng.standard_normal((6, 5)).astype(np.float32),
              "b": np.zeros(5, np.float32)}  # fmt: skip
    x = rng.standard_normal((3, 6)).astype(np.float32)
    state = egg.init(params, population=10, seed=3, noise_table=table)

    def whole(pop):
        return -(pop.linear(x, "W", "b", "relu") ** 2).mean(axis=(1, 2))

    def chunked(pop):
        f = np.empty(pop.size)
        for members, sub in pop.chunks(4):
            f[members] = whole(sub)
        return f

    want, _ = egg.step(params, whole, state, batched=True)
    calls = []
    module, name = (noise, "normals_many") if table is None else (noise_table, "read_many")
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    got, _ = egg.step(params, chunked, state, batched=True)
    assert len(calls) == 1  # one generation, one noise call: chunks and tell read it
    for key in ("W", "b"):
        np.testing.assert_array_equal(got[key], want[key])


def test_chunks_rejects_a_bad_size_naming_it():
    params = {"W": np.ones((3, 2), np.float32)}
    pop, _ = _pop(params, population=4)
    with pytest.raises(ValueError, match="size"):
        pop.chunks(0)
    with pytest.raises(TypeError, match="size"):
        pop.chunks(2.5)
