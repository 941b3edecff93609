"""Tests of eggroll_np.checkpoint: one .npz without pickle, exact round trip, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import optim
from eggroll_np.tree import check_params

from .engine_helpers import as_format_2


def _params():
    rng = np.random.default_rng(5)
    return {
        "net": [
            (rng.standard_normal((3, 4)).astype(np.float32), np.zeros(4, np.float32)),
            {"W": rng.standard_normal((4, 2)), "gain": np.ones((), np.float64)},
        ],
        "emb": rng.standard_normal((2, 2, 2)).astype(np.float32),
    }


def _fitness(p):
    x = np.ones((2, 3), np.float32)
    h = np.tanh(x @ p["net"][0][0] + p["net"][0][1])
    return -float(((h @ p["net"][1]["W"] * p["net"][1]["gain"] - 1.0) ** 2).sum()) - float(
        (p["emb"] ** 2).sum()
    )


def _batched(pop):
    x = np.ones((2, 3), np.float32)
    h = np.tanh(pop.matmul(x, "net/0/0") + pop.perturbed("net/0/1")[:, None, :])
    y = pop.matmul(h, "net/1/W") * pop.perturbed("net/1/gain")[:, None, None]
    emb = pop.perturbed("emb").reshape(pop.size, -1)
    return -((y - 1.0) ** 2).sum(axis=(1, 2)) - (emb**2).sum(axis=1)


def _assert_same(p, q):
    lp, sp, _ = check_params(p)
    lq, sq, _ = check_params(q)
    assert sp == sq
    for a, b in zip(lp, lq, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def _assert_same_state(s, t):
    assert s.config == t.config
    assert s.generation == t.generation
    assert s.spec == t.spec
    assert s.info == t.info
    assert s.opt_state.count == t.opt_state.count
    assert [type(v) for v in s.opt_state.leaves.values()] == [
        type(v) for v in t.opt_state.leaves.values()
    ]
    a, b = optim.state_arrays(s.opt_state), optim.state_arrays(t.opt_state)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_round_trip(tmp_path):
    params = _params()
    state = egg.init(params, population=6, optimizer="adam", lowrank={"emb": "frozen"}, seed=2**63)
    params, state = egg.step(params, _fitness, state)
    path = tmp_path / "run.ckpt"  # the exact name is used: no ".npz" appended
    egg.save(path, params, state)
    assert [f.name for f in tmp_path.iterdir()] == ["run.ckpt"]
    p2, s2 = egg.load(path)
    _assert_same(params, p2)
    _assert_same_state(state, s2)
    assert isinstance(p2["net"][0], tuple)
    assert isinstance(p2["net"], list)
    assert isinstance(p2["net"][1]["gain"], np.ndarray)


def test_file_is_plain_numeric_npz(tmp_path):
    params = _params()
    state = egg.init(params, population=4)
    egg.save(tmp_path / "c.npz", params, state)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)
        meta = json.loads(data["meta"].tobytes())
    assert meta["generation"] == 0
    assert meta["config"]["population"] == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"optimizer": "adam"},
        {"optimizer": "momentum", "noise_reuse": 3, "shaping": "zscore"},
        {"optimizer": "sgd", "noise": "full", "antithetic": False, "population": 5},
        {"optimizer": "adam", "weight_decay": 0.1, "shaping": "group_zscore", "group_size": 2},
    ],
)
@pytest.mark.parametrize("batched", [False, True])
def test_resume_is_bit_identical(tmp_path, kwargs, batched):
    fn = _batched if batched else _fitness
    kwargs = {"population": 6, "seed": 11, **kwargs}
    params = _params()
    state = egg.init(params, **kwargs)
    for _ in range(2):
        params, state = egg.step(params, fn, state, batched=batched)
    egg.save(tmp_path / "k.npz", params, state)
    for _ in range(3):
        params, state = egg.step(params, fn, state, batched=batched)
    resumed, rstate = egg.load(tmp_path / "k.npz")
    for _ in range(3):
        resumed, rstate = egg.step(resumed, fn, rstate, batched=batched)
    _assert_same(params, resumed)
    _assert_same_state(state, rstate)


def test_not_a_checkpoint(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not an eggroll_np checkpoint"):
        egg.load(tmp_path / "other.npz")


def test_unknown_format_version(tmp_path):
    meta = json.dumps({"format_version": 99}).encode()
    np.savez(tmp_path / "future.npz", meta=np.frombuffer(meta, np.uint8))
    with pytest.raises(ValueError, match="format 99"):
        egg.load(tmp_path / "future.npz")


def test_load_bad_backend(tmp_path):
    params = _params()
    egg.save(tmp_path / "c.npz", params, egg.init(params, population=2))
    with pytest.raises(ValueError, match="xp must be numpy or cupy"):
        egg.load(tmp_path / "c.npz", xp="torch")


@pytest.mark.parametrize(
    "params",
    [
        np.ones((3, 2), np.float32),  # a bare array is a one-leaf tree
        {"a": {}, "b": [np.ones(2)], "c": ()},  # empty containers keep their place
    ],
)
def test_round_trip_of_unusual_trees(tmp_path, params):
    state = egg.init(params, population=4)
    params, state = egg.step(params, lambda p: 1.0, state)
    egg.save(tmp_path / "u.npz", params, state)
    p2, s2 = egg.load(tmp_path / "u.npz")
    _assert_same(params, p2)
    _assert_same_state(state, s2)
    if isinstance(params, dict):
        assert p2["a"] == {}
        assert p2["c"] == ()


def test_checkpoint_permissions_follow_umask(tmp_path):
    import os
    import stat

    import numpy as np

    import eggroll_np as egg

    params = {"W": np.zeros((2, 3), np.float32)}
    state = egg.init(params, population=4)
    old = os.umask(0o022)
    try:
        egg.save(tmp_path / "c.npz", params, state)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "c.npz").st_mode) == 0o644


def test_corrupt_checkpoint_is_a_clear_error_without_leaking(tmp_path):
    import pytest

    import eggroll_np as egg

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match="bad.npz.*not readable as an eggroll_np checkpoint"):
        egg.load(bad)


@pytest.mark.parametrize(
    ("optimizer", "hyper"), [("sgd", {}), ("momentum", {"momentum": 0.7}), ("adam", {"b2": 0.9})]
)
def test_format_1_config_layout_loads(tmp_path, optimizer, hyper):
    # 0.1.0 wrote every optimizer's hyperparameters flat in the config, whatever the optimizer.
    params = {"W": np.ones((3, 2), np.float32)}
    state = egg.init(params, population=4, optimizer=optimizer, **hyper)
    egg.save(tmp_path / "new.npz", params, state)

    def as_format_1(meta):
        config = meta["config"]
        flat = {"momentum": 0.9, "b1": 0.9, "b2": 0.999, "eps": 1e-8, **config.pop("hyperparams")}
        meta.update(format_version=1, config={**config, **flat})

    as_format_2(tmp_path / "new.npz", tmp_path / "old.npz", as_format_1)
    _, loaded = egg.load(tmp_path / "old.npz")
    assert loaded.config == state.config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"optimizer": "adam", "lowrank": {"b": "frozen"}},
        {"optimizer": "momentum", "lr_schedule": "cosine", "lr_decay_steps": 5},
        {"optimizer": "sgd", "noise": "full"},
    ],
)
def test_formats_1_2_and_3_load_to_the_same_state(tmp_path, kwargs):
    params = {"W": np.ones((3, 2), np.float32), "b": np.zeros(2, np.float32), "s": np.ones(())}
    state = egg.init(params, population=4, seed=2, **kwargs)
    params, state = egg.step(params, lambda p: float(p["W"].sum() + p["s"]), state)
    params, state = egg.step(params, lambda p: float(p["W"].sum() + p["s"]), state)
    egg.save(tmp_path / "v3.npz", params, state)
    as_format_2(tmp_path / "v3.npz", tmp_path / "v2.npz")

    def as_format_1(meta):  # 0.1.0: hyperparameters flat, no schedule, no noise table
        config = meta["config"]
        flat = {"momentum": 0.9, "b1": 0.9, "b2": 0.999, "eps": 1e-8, **config.pop("hyperparams")}
        for key in ("lr_schedule", "lr_final", "lr_decay_steps", "noise_table"):
            config.pop(key)
        meta.update(format_version=1, config={**config, **flat})

    with np.load(tmp_path / "v3.npz") as f:
        assert "opt/count" in f.files
        assert "opt/0" in f.files or kwargs["optimizer"] == "sgd"
        assert json.loads(f["meta"].tobytes())["format_version"] == egg.checkpoint.FORMAT_VERSION
    with np.load(tmp_path / "v2.npz") as f:
        assert "opt/mu/0" in f.files or kwargs["optimizer"] == "sgd"
    p3, s3 = egg.load(tmp_path / "v3.npz")
    p2, s2 = egg.load(tmp_path / "v2.npz")
    if "lr_schedule" not in kwargs:  # format 1 predates schedules
        as_format_2(tmp_path / "v3.npz", tmp_path / "v1.npz", as_format_1)
        p1, s1 = egg.load(tmp_path / "v1.npz")
        _assert_same_state(s1, s3)
        for k in params:
            np.testing.assert_array_equal(p1[k], p3[k])
    _assert_same_state(s2, s3)
    _assert_same_state(s3, state)
    for k in params:
        np.testing.assert_array_equal(p2[k], p3[k])
    assert s3.opt_state.count == 2


def test_a_frozen_non_finite_leaf_trains_saves_and_loads(tmp_path):
    # A mask of -inf is a frozen leaf: init, tell, save and load all accept it, bits unchanged.
    mask = np.array([0.0, -np.inf, np.nan], np.float32)
    params = {"W": np.ones((3, 2), np.float32), "mask": mask}
    state = egg.init(params, population=4, lowrank={"mask": "frozen"})
    params, state = egg.step(params, lambda p: float(p["W"].sum()), state)
    egg.save(tmp_path / "m.npz", params, state)
    loaded, lstate = egg.load(tmp_path / "m.npz")
    assert loaded["mask"].tobytes() == mask.tobytes()
    assert lstate.generation == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_init_names_a_trained_leaf_holding_inf_or_nan(bad):
    params = {"W": np.ones((3, 2), np.float32), "b": np.array([0.0, bad])}
    with pytest.raises(ValueError, match=r"params leaf 'b' has non-finite values.*frozen"):
        egg.init(params, population=4)


def test_save_refuses_what_load_would_refuse_and_writes_nothing(tmp_path):
    params = {"W": np.ones((3, 2), np.float32)}
    state = egg.init(params, population=4)
    params["W"][0, 0] = np.nan  # made non-finite after init (a hand-edited tree)
    with pytest.raises(ValueError, match=r"c\.npz.*leaf 'W' has non-finite values"):
        egg.save(tmp_path / "c.npz", params, state)
    assert list(tmp_path.iterdir()) == []
