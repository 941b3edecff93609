"""Tests of eggroll_np.es: the update formula, step modes, determinism, config and bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import optim, tree
from eggroll_np.config import ESConfig, NoiseKind, make_config
from eggroll_np.tree import check_params

from .engine_helpers import FakeGpuArray, fit_rank, patch_fake_cupy, unit_noise
from .strategies import param_trees


def _params(dtype=np.float32):
    rng = np.random.default_rng(0)
    return {
        "layers": [
            {"W": rng.standard_normal((4, 3)).astype(dtype), "b": np.zeros(3, dtype)},
            {"W": rng.standard_normal((3, 2)).astype(dtype), "b": np.zeros(2, dtype)},
        ],
        "scale": np.ones((), dtype),
    }


def _fitness(p):
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    h = np.tanh(x @ p["layers"][0]["W"] + p["layers"][0]["b"])
    y = (h @ p["layers"][1]["W"] + p["layers"][1]["b"]) * p["scale"]
    return -float(((y - 0.5) ** 2).sum())


def _snapshot(params, state):
    leaves = tree.flatten(params)[0]
    return (
        leaves,
        [x.copy() for x in leaves],
        state.generation,
        [v.copy() for v in optim.state_arrays(state.opt_state)],
        dict(state.info),
        state.opt_state,
    )


def _assert_unchanged(params, state, snap):
    leaves, copies, generation, opt, info, opt_obj = snap
    now = tree.flatten(params)[0]
    assert all(a is b for a, b in zip(now, leaves, strict=True))
    for a, b in zip(now, copies, strict=True):
        np.testing.assert_array_equal(a, b)
    assert state.generation == generation
    assert state.info == info
    assert state.opt_state is opt_obj
    now_opt = optim.state_arrays(state.opt_state)
    assert len(now_opt) == len(opt)
    for a, b in zip(now_opt, opt, strict=True):
        np.testing.assert_array_equal(a, b)


# ---- the normative update -----------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    params=param_trees(dtype=np.float64, max_leaves=4),
    antithetic=st.booleans(),
    rank=st.integers(1, 3),
    seed=st.integers(0, 2**64 - 1),
    lr=st.floats(0.0, 2.0),
    sigma=st.floats(0.01, 1.0),
)
def test_black_box_members_and_sgd_update_follow_design(params, antithetic, rank, seed, lr, sigma):
    n = 6
    rank = fit_rank(rank, params)  # init refuses a rank above min(m, n) of a low-rank leaf
    state = egg.init(
        params,
        population=n,
        antithetic=antithetic,
        rank=rank,
        seed=seed,
        lr=lr,
        sigma=sigma,
        optimizer="sgd",
        shaping="none",
    )
    leaves, _, _ = check_params(params)
    recorded = []

    def fitness(member):
        recorded.append(check_params(member)[0])
        return float(sum(np.sin(x).sum() for x in recorded[-1]))

    new_params, new_state = egg.step(params, fitness, state)
    assert len(recorded) == n
    assert new_state.generation == 1
    f = np.array([float(sum(np.sin(x).sum() for x in r)) for r in recorded])
    for leaf, theta in enumerate(leaves):
        kind = state.config.kinds[leaf]
        g = np.zeros(theta.shape)
        for i in range(n):
            key = i // 2 if antithetic else i
            s = -1.0 if antithetic and i % 2 else 1.0
            eps = unit_noise(seed, leaf, key, 0, theta.shape, kind, rank)
            np.testing.assert_allclose(recorded[i][leaf] - theta, sigma * s * eps, atol=1e-12)
            g += f[i] * s * eps
        expected = theta + lr / (n * sigma) * g
        got = check_params(new_params)[0][leaf]
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    params=param_trees(max_leaves=4),
    n_pairs=st.integers(1, 4),
    optimizer=st.sampled_from(["sgd", "momentum", "adam"]),
    shaping_name=st.sampled_from(["none", "centered_rank", "zscore"]),
    noise_mode=st.sampled_from(["lowrank", "full"]),
    antithetic=st.booleans(),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_black_box_and_batched_steps_agree_bit_for_bit(
    params, n_pairs, optimizer, shaping_name, noise_mode, antithetic, seed, data
):
    n = 2 * n_pairs
    fitness = data.draw(st.lists(st.floats(-100, 100), min_size=n, max_size=n))
    cfg = dict(
        population=n,
        optimizer=optimizer,
        shaping=shaping_name,
        noise=noise_mode,
        antithetic=antithetic,
        seed=seed,
    )
    calls = iter(fitness)

    def black_box(member):
        check_params(member)
        return next(calls)

    def batched(pop):
        for path in pop.paths:  # touch every leaf's noise, as a real forward would
            pop.perturbed(path)
        return np.array(fitness)

    # separate states: each step generates (and caches) its own noise
    p_bb, s_bb = egg.step(params, black_box, egg.init(params, **cfg))
    p_b, s_b = egg.step(params, batched, egg.init(params, **cfg), batched=True)
    for a, b in zip(check_params(p_bb)[0], check_params(p_b)[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert s_bb.info == s_b.info


def test_tell_equals_step():
    params = _params()
    state = egg.init(params, population=6)
    pop = egg.ask(params, state)
    fitness = np.array([_fitness(pop.member(i)) for i in range(6)])
    p_tell, _ = egg.tell(params, fitness, state)
    p_step, _ = egg.step(params, _fitness, state)
    for a, b in zip(check_params(p_tell)[0], check_params(p_step)[0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_same_seed_same_params_other_seed_differs():
    def run(seed):
        p, s = _params(), egg.init(_params(), population=8, seed=seed)
        for _ in range(3):
            p, s = egg.step(p, _fitness, s)
        return check_params(p)[0]

    for a, b in zip(run(7), run(7), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(run(7), run(8), strict=True))


def test_minimize_equals_maximizing_the_negation():
    params = _params()
    loss = lambda p: -_fitness(p)  # noqa: E731
    p_min, s_min = egg.step(params, loss, egg.init(params, population=8, maximize=False))
    p_max, s_max = egg.step(params, _fitness, egg.init(params, population=8))
    for a, b in zip(check_params(p_min)[0], check_params(p_max)[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert s_min.info["fitness_min"] == -s_max.info["fitness_max"]  # info reports raw values


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_training_improves_fitness(optimizer):
    params = _params()
    lr = {"sgd": 0.02, "momentum": 0.01, "adam": 0.05}[optimizer]
    state = egg.init(params, population=32, sigma=0.05, lr=lr, optimizer=optimizer)
    start = _fitness(params)
    for _ in range(30):
        params, state = egg.step(params, _fitness, state)
    assert _fitness(params) > start + 0.5 * abs(start)


def test_info_and_inputs_untouched():
    params = _params()
    snap_params = [x.copy() for x in check_params(params)[0]]
    state = egg.init(params, population=4, optimizer="sgd")
    fitness = np.array([1.0, -2.0, 3.0, 0.5])
    new_params, new_state = egg.tell(params, fitness, state)
    info = new_state.info
    assert info["generation"] == 0
    assert new_state.generation == 1
    assert state.generation == 0
    assert info["fitness_mean"] == pytest.approx(0.625)
    assert (info["fitness_max"], info["fitness_min"]) == (3.0, -2.0)
    assert info["fitness_std"] == pytest.approx(np.std(fitness))
    new_leaves, old_leaves = check_params(new_params)[0], check_params(params)[0]
    delta = [a - b for a, b in zip(new_leaves, old_leaves, strict=True)]
    assert info["update_norm"] == pytest.approx(math.sqrt(sum(float((d * d).sum()) for d in delta)))
    for a, b in zip(check_params(params)[0], snap_params, strict=True):
        np.testing.assert_array_equal(a, b)
    assert state.info == {}
    assert isinstance(new_params["layers"][0]["W"], np.ndarray)
    assert new_params["scale"].shape == ()
    assert isinstance(new_params["scale"], np.ndarray)


@settings(max_examples=50, deadline=None)
@given(
    f=st.lists(st.floats(-1e300, 1e300), min_size=4, max_size=300).filter(
        lambda v: len(v) % 2 == 0
    )
)
def test_info_mean_and_std_have_numpys_bits(f):
    # info's mean and std are NumPy's mean and std of f / max|f|, scaled back, to the bit
    params = {"b": np.zeros(3, np.float32)}
    state = egg.init(params, population=len(f), optimizer="sgd", lr=0.0)
    info = egg.tell(params, f, state)[1].info
    f = np.array(f)
    scale = float(np.abs(f).max()) or 1.0
    assert info["fitness_mean"] == float((f / scale).mean()) * scale
    assert info["fitness_std"] == float((f / scale).std()) * scale


@pytest.mark.parametrize("shaping_name", ["centered_rank", "zscore"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_fitness_values_are_fine(shaping_name, dtype):
    params = _params(dtype)
    state = egg.init(params, population=4, shaping=shaping_name, lr=0.0)
    _, new_state = egg.tell(params, [1e308, -1e308, 1e308, -1e308], state)  # no warnings
    info = new_state.info
    assert info["fitness_mean"] == 0.0
    assert info["fitness_std"] == pytest.approx(1e308)
    assert info["fitness_max"] == 1e308


@pytest.mark.parametrize(("dtype", "f"), [(np.float32, 1e18), (np.float64, 1e300)])
def test_unshaped_fitness_that_would_overflow_is_rejected(dtype, f):
    params = _params(dtype)
    state = egg.init(params, population=4, shaping="none")
    snap = _snapshot(params, state)
    with pytest.raises(ValueError, match="fitness is too large for shaping='none'"):
        egg.tell(params, [f, -f, 0.0, 0.0], state)
    _assert_unchanged(params, state, snap)
    egg.tell(params, [1e6, -1e6, 0.0, 0.0], state)  # large but fine


def test_step_without_state_uses_defaults():
    params = {"W": np.zeros((2, 2), np.float32)}
    calls = []
    _, state = egg.step(params, lambda p: calls.append(1) or 0.0)
    c = state.config
    assert len(calls) == 256
    assert state.generation == 1
    assert (c.population, c.sigma, c.lr, c.rank, c.seed) == (256, 0.02, 0.05, 1, 0)
    assert (c.optimizer, c.shaping) == ("adam", "centered_rank")
    assert (c.antithetic, c.noise_reuse) == (True, 1)


def test_weight_decay_skips_frozen_leaves():
    params = {"W": np.ones((2, 2)), "emb": np.ones(3)}
    state = egg.init(
        params, population=4, optimizer="sgd", weight_decay=0.5, lowrank={"emb": "frozen"}
    )
    new, _ = egg.tell(params, np.zeros(4), state)
    np.testing.assert_array_equal(new["emb"], 1.0)
    np.testing.assert_allclose(new["W"], 1.0 - 0.05 * 0.5)


# ---- per-leaf noise kinds ----------------------------------------------------------------------


def test_lowrank_choices():
    params = {"a": {"W": np.ones((2, 3))}, "b": np.ones(3), "c": np.ones((2, 2))}
    kinds = lambda **kw: egg.init(params, population=2, **kw).config.kinds  # noqa: E731
    L, F, Z = NoiseKind.LOWRANK, NoiseKind.FULL, NoiseKind.FROZEN
    assert kinds() == (L, F, L)
    assert kinds(noise="full") == (F, F, F) == kinds(rank=None)
    assert kinds(lowrank=lambda p: p.startswith("a")) == (L, F, F)
    assert kinds(lowrank={"c": Z, ("a", "W"): "full"}) == (F, F, Z)
    assert kinds(lowrank={"a": {"W": NoiseKind.FROZEN}}) == (Z, F, L)
    assert kinds(noise="full", lowrank={"c": Z}) == (F, F, Z)


@pytest.mark.parametrize(
    ("lowrank", "exc", "match"),
    [
        ({"b": NoiseKind.LOWRANK}, ValueError, "'b' has shape"),
        ({"nope": "full"}, ValueError, "'nope'"),
        ({"b": "dense"}, TypeError, "leaf 'b'"),
        (lambda p: 3, TypeError, "leaf 'W'"),
        (42, TypeError, "lowrank must be"),
    ],
)
def test_bad_lowrank(lowrank, exc, match):
    with pytest.raises(exc, match=match):
        egg.init({"W": np.ones((2, 2)), "b": np.ones(2)}, lowrank=lowrank)


def test_config_roundtrip():
    _, spec, _ = check_params(_params())
    c = make_config(spec, population=6, lowrank={"scale": "frozen"}, seed=2**64 - 1)
    assert ESConfig.from_dict(c.to_dict()) == c
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.sigma = 1.0


# ---- bad input: each names the argument or leaf, leaves params and state unchanged -----------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"population": 7}, ValueError, "population must be even with antithetic"),
        ({"population": 0}, ValueError, r"population must be in \[1, 2\^32\), got 0"),
        ({"population": 4.0}, TypeError, "population must be an integer"),
        ({"sigma": 0.0}, ValueError, "sigma must be"),
        ({"sigma": -0.1}, ValueError, "sigma must be"),
        ({"sigma": float("nan")}, ValueError, "sigma must be"),
        ({"sigma": float("inf")}, ValueError, "sigma must be"),
        ({"sigma": "0.1"}, TypeError, "sigma must be a real number"),
        ({"lr": -1e-3}, ValueError, "lr must be"),
        ({"rank": 0}, ValueError, "rank must be an integer >= 1"),
        ({"rank": 1.5}, TypeError, "rank must be an integer"),
        ({"optimizer": "rmsprop"}, ValueError, r"optimizer must be one of \['adam', 'momentum'"),
        ({"shaping": "rank"}, ValueError, r"shaping must be one of \['centered_rank', 'group_z"),
        ({"shaping": "group_zscore"}, ValueError, "needs group_size"),
        ({"shaping": "group_zscore", "group_size": 3}, ValueError, r"group_size \(3\) must divide"),
        ({"group_size": 0}, ValueError, "group_size must be an integer >= 1"),
        ({"noise_reuse": 0}, ValueError, "noise_reuse must be an integer >= 1"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 2**64}, ValueError, "seed"),
        ({"antithetic": 1}, TypeError, "antithetic must be True or False"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"b2": 1.0}, ValueError, "b2"),
        ({"optimizer": "sgd", "b1": 0.5}, ValueError, "b1 is a hyperparameter of adam, not of"),
        ({"optimizer": "adam", "momentum": 0.5}, ValueError, "momentum is a hyperparameter of"),
        ({"population": True}, TypeError, "population must be an integer, got bool"),
        ({"noise": "dense"}, ValueError, r"noise must be one of \['full', 'lowrank'\]"),
        ({"learning_rate": 0.1}, TypeError, "learning_rate"),
    ],
)
def test_bad_init_arguments(kwargs, exc, match):
    params = _params()
    copies = [x.copy() for x in check_params(params)[0]]
    with pytest.raises(exc, match=match):
        egg.init(params, **kwargs)
    for a, b in zip(check_params(params)[0], copies, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("fitness", "match"),
    [
        ([1.0, float("nan"), 0.0, 0.0, 0.0, 0.0], "finite; member 1 has nan"),
        ([1.0, 0.0, 0.0, float("inf"), 0.0, 0.0], "finite; member 3 has inf"),
        ([-float("inf")] * 6, "6 non-finite"),
        ([1.0] * 5, r"shape \(6,\).*got \(5,\)"),
        ([[1.0]] * 6, r"shape \(6,\).*got \(6, 1\)"),
        (1.0, r"shape \(6,\).*got \(\)"),
    ],
)
def test_bad_fitness_leaves_everything_unchanged(fitness, match):
    params = _params()
    state = egg.init(params, population=6)
    params, state = egg.step(params, _fitness, state)  # non-trivial opt state and info
    snap = _snapshot(params, state)
    with pytest.raises(ValueError, match=match):
        egg.tell(params, fitness, state)
    _assert_unchanged(params, state, snap)
    with pytest.raises(ValueError, match=match):
        egg.step(params, lambda pop: np.asarray(fitness), state, batched=True)
    _assert_unchanged(params, state, snap)


def test_non_numeric_fitness():
    params = _params()
    state = egg.init(params, population=4)
    snap = _snapshot(params, state)
    with pytest.raises(TypeError, match="fitness must be real numbers, got dtype <U1"):
        egg.tell(params, ["a", "b", "c", "d"], state)
    with pytest.raises(TypeError, match="value for member 0 must be a real number, got str"):
        egg.step(params, lambda p: "good", state)
    with pytest.raises(ValueError, match="member 0 has nan"):
        egg.step(params, lambda p: float("nan"), state)
    _assert_unchanged(params, state, snap)


def _changed_trees():
    p = _params()
    p["scale"] = np.ones((1,), np.float32)
    yield p, "'scale' has shape"
    p = _params()
    p["layers"][1]["W"] = p["layers"][1]["W"].astype(np.float64)
    yield p, "'layers/1/W' has dtype float64"
    p = _params()
    p["extra"] = np.ones(2, np.float32)
    yield p, r"unexpected leaves \['extra'\]"
    p = _params()
    del p["layers"][1]
    yield p, "missing leaves"
    p = _params()
    p["layers"] = tuple(p["layers"])
    yield p, "container types"
    p = _params()
    p["layers"][0]["b"] = np.zeros(3, np.int64)
    yield p, "'layers/0/b' must have dtype float32, float64 or int8"


@pytest.mark.parametrize(("changed", "match"), list(_changed_trees()))
@pytest.mark.parametrize("call", ["ask", "tell", "step", "save"])
def test_params_changed_since_init(changed, match, call, tmp_path):
    params = _params()
    state = egg.init(params, population=4)
    snap = _snapshot(changed, state)
    exc = TypeError if "must have dtype" in match else ValueError
    calls = {
        "ask": lambda: egg.ask(changed, state),
        "tell": lambda: egg.tell(changed, np.zeros(4), state),
        "step": lambda: egg.step(changed, _fitness, state),
        "save": lambda: egg.save(tmp_path / "x.npz", changed, state),
    }
    with pytest.raises(exc, match=match):
        calls[call]()
    _assert_unchanged(changed, state, snap)
    assert not (tmp_path / "x.npz").exists()


def test_mixed_numpy_cupy_leaves(monkeypatch):
    patch_fake_cupy(monkeypatch)
    params = _params()
    state = egg.init(params, population=4)
    mixed = _params()
    mixed["layers"][1]["b"] = mixed["layers"][1]["b"].view(FakeGpuArray)
    snap = _snapshot(params, state)
    for call in (
        lambda: egg.init(mixed),
        lambda: egg.ask(mixed, state),
        lambda: egg.tell(mixed, np.zeros(4), state),
    ):
        with pytest.raises(TypeError, match="'layers/1/b'.*mixed NumPy/CuPy"):
            call()
    _assert_unchanged(params, state, snap)


def test_bad_state_and_flags():
    params = _params()
    with pytest.raises(TypeError, match="state must be an ESState"):
        egg.step(params, _fitness, {"generation": 0})
    state = egg.init(params, population=4)
    with pytest.raises(TypeError, match="batched must be True or False"):
        egg.step(params, _fitness, state, batched="yes")
    with pytest.raises(TypeError, match="fitness_fn must be callable"):
        egg.step(params, 3.0, state)


def _cuda_usable() -> bool:
    from eggroll_np import _ext
    from eggroll_np.backend import cupy

    return cupy is not None and _ext.cuda_device_count() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_usable(), reason="needs CuPy and a CUDA device")
def test_cupy_run_stays_on_device_and_matches_numpy():
    from eggroll_np.backend import cupy

    host = _params()
    dev = tree.map_leaves(cupy.asarray, host)
    # sgd + no shaping: the update is continuous in the fitness, so float32 differences stay small
    cfg = dict(population=8, seed=5, optimizer="sgd", shaping="none", lr=0.01)
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)

    def batched(pop):
        xp = cupy if isinstance(pop.perturbed("scale"), cupy.ndarray) else np
        h = xp.tanh(pop.matmul(xp.asarray(x), "layers/0/W") + pop.perturbed("layers/0/b")[:, None])
        y = pop.matmul(h, "layers/1/W") + pop.perturbed("layers/1/b")[:, None]
        return -((y - 0.5) ** 2).sum(axis=(1, 2))

    hs, ds = egg.init(host, **cfg), egg.init(dev, **cfg)
    for _ in range(2):
        host, hs = egg.step(host, batched, hs, batched=True)
        dev, ds = egg.step(dev, batched, ds, batched=True)
    for a, b in zip(check_params(host)[0], check_params(dev)[0], strict=True):
        assert isinstance(b, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(b), a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("noise_mode", ["lowrank", "full"])
def test_black_box_step_never_holds_the_whole_population(noise_mode):
    import tracemalloc

    params = {"W": np.zeros((512, 512), np.float32)}  # 1 MiB
    n = 128
    state = egg.init(params, population=n, noise=noise_mode, optimizer="sgd")
    all_members = n // 2 * params["W"].nbytes  # every unique perturbation at once: 64 MiB
    tracemalloc.start()
    try:
        egg.step(params, lambda p: float(p["W"][0, 0]), state)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < all_members / 4  # measured: ~3 MiB low-rank, ~11 MiB full rank
