"""Full-rank (naive ES) leaves in the batched forward: chunked over keys, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import perturbation


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("antithetic", [False, True])
def test_chunked_full_rank_matmul_equals_dense_members(monkeypatch, transpose, shared, antithetic):
    # Tiny limits: the leaf's noise is never cached and comes in chunks of 3 keys.
    monkeypatch.setattr(perturbation, "PREFETCH_FULL_VALUES", 0)
    monkeypatch.setattr(perturbation, "FULL_CHUNK_VALUES", 3 * 20)
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((5, 4)).astype(np.float32)}
    state = egg.init(params, population=10, noise="full", antithetic=antithetic, seed=7)
    pop = egg.ask(params, state)
    cols = 4 if transpose else 5
    x = rng.standard_normal((3, cols) if shared else (10, 3, cols)).astype(np.float32)
    out = pop.matmul(x, "W", transpose=transpose)
    assert len(pop.noise) == 0  # nothing held: the leaf's noise came chunk by chunk
    for i in range(pop.size):
        Wi = pop.member(i)["W"]
        xi = x if shared else x[i]
        np.testing.assert_allclose(out[i], xi @ (Wi.T if transpose else Wi), rtol=1e-5, atol=1e-5)
    part = pop.slice(3, 8)
    xs = x if shared else x[3:8]
    np.testing.assert_allclose(
        part.matmul(xs, "W", transpose=transpose), out[3:8], rtol=1e-6, atol=1e-6
    )


def _naive_step_peak(layer: str) -> tuple[int, int]:
    """(tracemalloc peak of one naive-ES step through pop.<layer>, bytes of all unique noise)."""
    params = {"W": np.zeros((512, 512), np.float32), "b": np.zeros(512, np.float32)}  # 1 MiB
    n = 128
    state = egg.init(params, population=n, noise="full", optimizer="sgd")
    x = np.ones((n, 1, 512), np.float32)  # one row per member, as the rl benchmark

    def fitness(pop):
        if layer == "matmul":
            return -pop.matmul(x, "W")[:, 0, :].sum(axis=1)
        return -pop.linear(x, "W", "b", activation="relu")[:, 0, :].sum(axis=1)

    tracemalloc.start()
    try:
        egg.step(params, fitness, state, batched=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, n // 2 * params["W"].nbytes  # every unique perturbation at once: 64 MiB


@pytest.mark.parametrize("layer", ["matmul", "linear"])
def test_naive_es_forward_and_update_never_hold_all_dense_perturbations(layer):
    peak, unique = _naive_step_peak(layer)
    # before chunking: 64 MiB of held noise plus a 128 MiB per-member gather
    assert peak < unique / 2


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
def test_chunked_full_rank_linear_equals_the_held_path(monkeypatch, shared, transpose):
    rng = np.random.default_rng(3)
    params = {"W": rng.standard_normal((5, 4)).astype(np.float32), "b": np.ones(4, np.float32)}
    if transpose:
        params["b"] = np.ones(5, np.float32)
    state = egg.init(params, population=10, noise="full", seed=7)
    cols = 4 if transpose else 5
    x = rng.standard_normal((3, cols) if shared else (10, 3, cols)).astype(np.float32)
    held = egg.ask(params, state).linear(x, "W", "b", activation="tanh", transpose=transpose)
    monkeypatch.setattr(perturbation, "PREFETCH_FULL_VALUES", 0)
    monkeypatch.setattr(perturbation, "FULL_CHUNK_VALUES", 3 * 20)
    pop = egg.ask(params, state)
    chunked = pop.linear(x, "W", "b", activation="tanh", transpose=transpose)
    assert pop.noise.held_full(0) is None  # W's noise came chunk by chunk
    np.testing.assert_allclose(chunked, held, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("noise_mode", ["lowrank", "full"])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_matmul_is_linear_without_bias_on_one_path(monkeypatch, noise_mode, transpose, shared):
    # One code path: matmul(x, w) is linear(x, w) bit for bit, and a slice's chunked full-rank
    # noise gives its members' rows of the whole population's result.
    rng = np.random.default_rng(5)
    params = {"W": rng.standard_normal((6, 4)).astype(np.float32)}
    state = egg.init(params, population=10, noise=noise_mode, rank=2, seed=3)
    cols = 4 if transpose else 6
    x = rng.standard_normal((3, cols) if shared else (10, 3, cols)).astype(np.float32)
    pop = egg.ask(params, state)
    got = pop.matmul(x, "W", transpose=transpose)
    np.testing.assert_array_equal(got, pop.linear(x, "W", transpose=transpose))
    monkeypatch.setattr(perturbation, "PREFETCH_FULL_VALUES", 0)
    monkeypatch.setattr(perturbation, "FULL_CHUNK_VALUES", 2 * 24)
    part = egg.ask(params, state).slice(3, 8)
    xs = x if shared else x[3:8]
    np.testing.assert_allclose(part.matmul(xs, "W", transpose=transpose), got[3:8], rtol=1e-6)
