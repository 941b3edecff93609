"""Tests of eggroll_np.optim: exact sgd, momentum and adam against hand-written loops, purity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from eggroll_np import _ext, optim


@dataclass
class Cfg:
    optimizer: str = "sgd"
    lr: float = 0.1
    weight_decay: float = 0.0
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    schedule: optim.Schedule = optim.Schedule()

    @property
    def hyperparams(self):
        """The chosen optimizer's own hyperparameters, as ESConfig carries them."""
        every = {"momentum": self.momentum, "b1": self.b1, "b2": self.b2, "eps": self.eps}
        fields = optim.get(self.optimizer).hyperparams.__dataclass_fields__
        return optim.hyperparams(self.optimizer, **{k: every[k] for k in fields})


def _run(cfg, grads, theta):
    state = optim.init(cfg.optimizer, {0: theta})
    for g in grads:
        deltas, state = optim.update({0: g}, state, {0: theta}, cfg)
        theta = theta + deltas[0]
    return theta, state


def _grads(dtype, n=5):
    rng = np.random.default_rng(1)
    return [rng.standard_normal(4).astype(dtype) for _ in range(n)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_is_exactly_theta_plus_lr_g(dtype):
    theta = np.arange(4, dtype=dtype)
    g = _grads(dtype, 1)[0]
    state = optim.init("sgd", {0: theta})
    deltas, _ = optim.update({0: g}, state, {0: theta}, Cfg(lr=0.05))
    np.testing.assert_array_equal(theta + deltas[0], theta + 0.05 * g)
    assert deltas[0].dtype == dtype


def test_momentum_matches_reference():
    grads, theta0 = _grads(np.float64), np.ones(4)
    theta, v = theta0.copy(), np.zeros(4)
    for g in grads:
        v = 0.8 * v + g
        theta = theta + 0.1 * v
    got, state = _run(Cfg(optimizer="momentum", momentum=0.8), grads, theta0)
    np.testing.assert_allclose(got, theta, rtol=1e-12)
    np.testing.assert_allclose(state.leaves[0].mu, v, rtol=1e-12)
    assert state.count == len(grads)


def test_adam_matches_reference_with_bias_correction():
    grads, theta0 = _grads(np.float64), np.ones(4)
    theta, m, v = theta0.copy(), np.zeros(4), np.zeros(4)
    for t, g in enumerate(grads, 1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        theta = theta + 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    got, _ = _run(Cfg(optimizer="adam"), grads, theta0)
    np.testing.assert_allclose(got, theta, rtol=1e-12)
    # First adam step moves every coordinate by ~lr * sign(g).
    first, _ = _run(Cfg(optimizer="adam"), grads[:1], theta0)
    np.testing.assert_allclose(first - theta0, 0.1 * np.sign(grads[0]), rtol=1e-6)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_decoupled_weight_decay(name):
    theta = np.full(4, 2.0)
    zero = np.zeros(4)
    state = optim.init(name, {0: theta})
    deltas, _ = optim.update({0: zero}, state, {0: theta}, Cfg(optimizer=name, weight_decay=0.5))
    # direction 0 (g = 0): theta <- theta + lr * (0 - wd * theta)
    np.testing.assert_allclose(deltas[0], -0.1 * 0.5 * theta)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_is_pure_and_keeps_dtype(name, dtype):
    theta = np.ones(4, dtype)
    g = _grads(dtype, 1)[0]
    state = optim.init(name, {0: theta})
    state = optim.update({0: g}, state, {0: theta}, Cfg(optimizer=name))[1]
    snapshot = [v.copy() for v in optim.state_arrays(state)]
    deltas, new = optim.update({0: g}, state, {0: theta}, Cfg(optimizer=name, weight_decay=0.1))
    for v, was, now in zip(optim.state_arrays(state), snapshot, optim.state_arrays(new), strict=True):
        np.testing.assert_array_equal(v, was)
        assert now is not v
    assert deltas[0].dtype == dtype
    assert all(v.dtype == dtype for v in optim.state_arrays(new))
    np.testing.assert_array_equal(theta, 1)


def test_state_is_the_optimizers_own_plain_data():
    state = optim.init("adam", {0: np.zeros(3), 2: np.zeros((2, 2))})
    assert state.count == 0
    assert sorted(state.leaves) == [0, 2]
    assert all(type(s) is optim.AdamState for s in state.leaves.values())
    assert state.leaves[2].nu.shape == (2, 2)
    arrays = optim.state_arrays(state)
    assert all(isinstance(v, np.ndarray) for v in arrays)
    rebuilt = optim.state_from_arrays(state, 5, arrays)
    assert rebuilt.count == 5
    assert all(a is b for a, b in zip(optim.state_arrays(rebuilt), arrays, strict=True))
    assert optim.init("momentum", {1: np.ones(2)}).leaves[1]._fields == ("mu",)
    assert optim.init("sgd", {1: np.ones(2)}).leaves[1] == optim.SGDState()


def test_unknown_optimizer_lists_valid_ones():
    with pytest.raises(ValueError, match=r"\['adam', 'momentum', 'sgd'\].*'rmsprop'"):
        optim.init("rmsprop", {})


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_apply_is_theta_plus_update(name, dtype):
    rng = np.random.default_rng(3)
    theta = {0: rng.standard_normal((5, 3)).astype(dtype), 2: np.ones((), dtype)}
    cfg = Cfg(optimizer=name, weight_decay=0.01)
    state = optim.init(name, theta)
    for _ in range(3):  # a few steps so that the moments matter
        before = [v.copy() for v in optim.state_arrays(state)]
        grads = {i: rng.standard_normal(t.shape).astype(dtype) for i, t in theta.items()}
        deltas, want_state = optim.update(grads, state, theta, cfg)
        got, got_state = optim.apply(grads, state, theta, cfg)
        for i, t in theta.items():
            want = t + deltas[i]
            assert isinstance(got[i], np.ndarray)
            assert got[i].dtype == dtype
            assert got[i].shape == t.shape
            fused = name == "adam" and dtype == np.float32 and _ext.core is not None
            if fused:  # the C++ step: same formula, float32 rounding in another order
                np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)
            else:
                np.testing.assert_array_equal(got[i], want)
        assert got_state.count == want_state.count
        for g_, w_ in zip(*map(optim.state_arrays, (got_state, want_state)), strict=True):
            np.testing.assert_allclose(g_, w_, rtol=1e-5, atol=1e-7)
        for v, was in zip(optim.state_arrays(state), before, strict=True):
            np.testing.assert_array_equal(v, was)  # untouched
        state, theta = got_state, got


def test_hyperparameters_belong_to_their_optimizer():
    assert optim.hyperparams("adam", b1=0.5) == optim.Adam(b1=0.5, b2=0.999, eps=1e-8)
    assert optim.hyperparams("sgd") == optim.SGD()
    with pytest.raises(ValueError, match="momentum is a hyperparameter of momentum, not of"):
        optim.hyperparams("adam", momentum=0.5)
    with pytest.raises(TypeError, match="'beta'"):
        optim.hyperparams("adam", beta=0.5)
    with pytest.raises(ValueError, match="b2 must be finite"):
        optim.hyperparams("adam", b2=1.0)
    with pytest.raises(TypeError, match="momentum must be a real number"):
        optim.hyperparams("momentum", momentum=True)
