"""The integer update: pair signs, the threshold tau, one step per entry, alpha and its schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import dispatch, intmath, intupdate
from eggroll_np.config import NoiseKind


def _q(rng, shape, lim=127):
    return rng.integers(-lim, lim + 1, shape).astype(np.int8)


def _expected(params, state, fitness, count=1):
    """The contract's update of every int8 leaf, written from intmath's int64 pieces."""
    config = state.config
    pop = egg.ask(params, state)
    pairs = fitness[0::2] - fitness[1::2]
    c = np.sign(pairs).astype(np.int64) * (1 if config.maximize else -1)
    P = int(np.count_nonzero(c))
    alpha = config.int_update_fraction * config.schedule.lr(config.lr, count) / config.lr
    out = {}
    for i, path in enumerate(state.spec.path_strings):
        q = egg.tree.flatten(params)[0][i]
        kind = config.kinds[i]
        if q.dtype != np.int8 or kind is NoiseKind.FROZEN:
            continue
        if P == 0:
            out[path] = q
            continue
        if kind is NoiseKind.LOWRANK:
            a, b = pop.noise.factors(i)
            Z = intmath.contract_reference(a, b, c)
            v = 256 * math.sqrt(config.rank)
        else:
            e = pop.noise.full(i).astype(np.int64)
            Z = np.tensordot(c, e, axes=1)
            v = 16.0
        out[path] = intmath.threshold(q, Z, intmath.tau(alpha, v, P))
    return out


@pytest.mark.parametrize("backend", ["numpy", "core"])
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), pairs=st.integers(1, 12), rank=st.sampled_from([1, 4]),
    k=st.integers(0, 15), alpha=st.floats(0.01, 0.99), maximize=st.booleans(),
    ties=st.booleans(), m=st.integers(4, 20), n=st.integers(4, 20),
)  # fmt: skip
def test_tell_equals_the_contract(backend, seed, pairs, rank, k, alpha, maximize, ties, m, n):
    rng = np.random.default_rng(seed)
    params = {
        "W": _q(rng, (m, n)),
        "b": _q(rng, (n,)),
        "C": _q(rng, (4, 2, 3)),
        "f": rng.normal(size=(3,)).astype(np.float32),
    }
    state = egg.init(
        params, population=2 * pairs, rank=rank, seed=seed, int_sigma_shift=k,
        int_update_fraction=alpha, maximize=maximize, lowrank={"C": "lowrank"},
    )  # fmt: skip
    fitness = rng.integers(0, 2, 2 * pairs).astype(float) if ties else rng.normal(size=2 * pairs)
    with dispatch.use(backend):
        new, state2 = egg.tell(params, fitness, state)
    want = _expected(params, state, fitness)
    for path, q in want.items():
        np.testing.assert_array_equal(new[path], q, err_msg=path)
        assert new[path].dtype == np.int8
        assert np.abs(new[path].astype(int) - params[path]).max(initial=0) <= 1
    moved = sum(int((new[p] != params[p]).sum()) for p in want)
    assert state2.info["int_moved"] == moved
    assert new["f"].dtype == np.float32
    if np.any(fitness[0::2] != fitness[1::2]):  # a decided pair: the float leaf moves too
        assert not np.array_equal(new["f"], params["f"])


def test_float_leaves_keep_their_optimizer():
    rng = np.random.default_rng(1)
    f32 = rng.normal(size=(5, 3)).astype(np.float32)
    q = _q(rng, (6, 4))
    fitness = rng.normal(size=16)
    mixed = {"a": f32, "z": q}
    kw = dict(population=16, seed=5, optimizer="adam", lr=0.1)
    s_mixed = egg.init(mixed, **kw)
    s_frozen = egg.init(mixed, lowrank={"z": "frozen"}, **kw)
    new_mixed, st_m = egg.tell(mixed, fitness, s_mixed)
    new_frozen, _ = egg.tell(mixed, fitness, s_frozen)
    np.testing.assert_array_equal(new_mixed["a"], new_frozen["a"])
    assert list(st_m.opt_state.leaves) == [0]  # the int8 leaf has no optimizer state
    assert not np.array_equal(new_mixed["z"], q)


def test_no_decided_pair_moves_nothing():
    rng = np.random.default_rng(2)
    params = {"W": _q(rng, (8, 8)), "b": _q(rng, (8,))}
    state = egg.init(params, population=8, int_update_fraction=0.9)
    new, st2 = egg.tell(params, np.repeat(rng.normal(size=4), 2), state)
    for p in params:
        np.testing.assert_array_equal(new[p], params[p])
    assert st2.info["int_moved"] == 0


@pytest.mark.parametrize(("rank", "alpha"), [(1, 0.1), (4, 0.3), (1, 0.02)])
def test_about_alpha_of_the_entries_move_under_pure_noise(rank, alpha):
    rng = np.random.default_rng(3)
    params = {"W": np.zeros((96, 96), np.int8), "b": np.zeros(4096, np.int8)}
    state = egg.init(params, population=128, rank=rank, seed=9, int_update_fraction=alpha)
    new, _ = egg.tell(params, rng.normal(size=128), state)
    for p in params:
        frac = float((new[p] != 0).mean())
        assert 0.6 * alpha < frac < 1.4 * alpha, (p, frac)


def test_fitness_direction_is_followed():
    """Members whose noise raised sum(W) won their pair: the update raises sum(W) (and lowers
    it with maximize=False)."""
    params = {"W": np.zeros((16, 16), np.int8)}
    for maximize in (True, False):
        state = egg.init(params, population=64, rank=4, seed=1, maximize=maximize)
        pop = egg.ask(params, state)
        fitness = np.array([float(pop.member(i)["W"].astype(int).sum()) for i in range(64)])
        new, _ = egg.tell(params, fitness, state, population=pop)
        total = int(new["W"].astype(int).sum())
        assert total > 0 if maximize else total < 0


def test_schedule_scales_alpha():
    params = {"W": np.zeros((4, 4), np.int8)}
    state = egg.init(
        params, population=4, lr=0.5, int_update_fraction=0.3, lr_schedule="linear",
        lr_final=0.0, lr_decay_steps=10,
    )  # fmt: skip
    got = [intupdate.update_fraction(state.config, c) for c in (1, 6, 11, 20)]
    np.testing.assert_allclose(got, [0.3, 0.15, 0.0, 0.0])
    rng = np.random.default_rng(0)
    p, st2 = params, state
    for _ in range(12):  # alpha reaches 0 at update 11: nothing moves from then on
        before = p["W"].copy()
        p, st2 = egg.tell(p, rng.normal(size=4), st2)
    np.testing.assert_array_equal(p["W"], before)


def test_step_black_box_and_batched_agree():
    rng = np.random.default_rng(4)
    params = {"W": _q(rng, (6, 5), 20), "b": _q(rng, (5,), 20)}
    x = _q(rng, (3, 6))
    state = egg.init(params, population=8, rank=1, seed=2, int_sigma_shift=1)

    def member_fitness(p):
        return float(p["W"].astype(int).sum() + p["b"].astype(int).sum())

    def batched(pop):
        W = pop.perturbed("W").astype(int)
        return W.sum(axis=(1, 2)) + pop.perturbed("b").astype(int).sum(axis=1)

    a, _ = egg.step(params, member_fitness, state)
    b, _ = egg.step(params, batched, state, batched=True)
    for p in params:
        np.testing.assert_array_equal(a[p], b[p])
    del x


def test_tau_matches_the_normal_quantile():
    assert intmath.tau(0.3173105078629141, 1.0, 1) == 1  # Phi^-1(1 - 0.1587) = 1.0
    assert intmath.tau(0.05, 16.0, 100) == math.ceil(1.959963984540054 * 16 * 10)
