"""int8 leaves at the API: bad input names the leaf or argument and changes nothing; save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

import eggroll_np as egg
from tests.engine_helpers import as_format_3


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "W": rng.integers(-127, 128, (8, 4)).astype(np.int8),
        "b": rng.integers(-127, 128, 4).astype(np.int8),
        "f": rng.normal(size=(4, 4)).astype(np.float32),
    }


def _copy(p):
    return {k: v.copy() for k, v in p.items()}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(int_sigma_shift=16), ValueError, "int_sigma_shift"),
        (dict(int_sigma_shift=-1), ValueError, "int_sigma_shift"),
        (dict(int_sigma_shift=1.5), TypeError, "int_sigma_shift"),
        (dict(int_update_fraction=0.0), ValueError, "int_update_fraction"),
        (dict(int_update_fraction=1.0), ValueError, "int_update_fraction"),
        (dict(int_update_fraction=float("nan")), ValueError, "int_update_fraction"),
        (dict(int_update_fraction="0.1"), TypeError, "int_update_fraction"),
        (dict(rank=2), ValueError, "power of 4.*'W'"),
        (dict(antithetic=False), ValueError, "'[Wb]' needs antithetic"),
    ],
)
def test_init_rejects(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        egg.init(_params(), population=4, **kwargs)


def test_rank_16_and_frozen_leaves_are_fine():
    p = {"W": np.zeros((16, 16), np.int8), "c": np.zeros(3, np.int8)}
    egg.init(p, population=4, rank=16)
    # a frozen int8 leaf is never perturbed or updated: no pairs or power-of-4 rank needed
    egg.init(p, population=3, antithetic=False, rank=2, lowrank={"W": "frozen", "c": "frozen"})


def test_minus_128_is_rejected_everywhere_and_nothing_changes(tmp_path):
    good = _params()
    state = egg.init(good, population=4)
    bad = _copy(good)
    bad["W"][1, 2] = -128
    snap = _copy(bad)
    with pytest.raises(ValueError, match="'W'.*-128"):
        egg.init(bad, population=4)
    for call in (
        lambda: egg.ask(bad, state),
        lambda: egg.tell(bad, np.zeros(4), state),
        lambda: egg.save(tmp_path / "x.npz", bad, state),
    ):
        with pytest.raises(ValueError, match="'W'.*-128"):
            call()
    _same(bad, snap)
    assert not (tmp_path / "x.npz").exists()
    assert state.generation == 0


def test_other_integer_dtypes_are_rejected():
    with pytest.raises(TypeError, match="'b' must have dtype float32, float64 or int8"):
        egg.init({"b": np.zeros(3, np.int16)})


def test_layer_inputs_must_match_the_leaf_dtype():
    p = _params()
    pop = egg.ask(p, egg.init(p, population=4))
    with pytest.raises(TypeError, match="int8 leaf 'W'"):
        pop.linear(np.zeros((2, 8), np.float32), "W")
    with pytest.raises(TypeError, match="int8 leaf 'W'"):
        pop.linear(np.zeros((2, 8), np.int16), "W")
    with pytest.raises(TypeError, match="leaf 'f' is float32"):
        pop.linear(np.zeros((2, 4), np.int8), "f")
    with pytest.raises(ValueError, match="None or 'relu' for int8 leaf 'W'"):
        pop.linear(np.zeros((2, 8), np.int8), "W", activation="tanh")
    with pytest.raises(TypeError, match="'f'.*must be int8"):
        pop.linear(np.zeros((2, 8), np.int8), "W", b="f")
    with pytest.raises(TypeError, match="'b' is int8"):
        pop.linear(np.zeros((2, 4), np.float32), "f", b="b")
    with pytest.raises(ValueError, match=r"shape \(B, 8\)"):
        pop.linear(np.zeros((2, 7), np.int8), "W")
    with pytest.raises(TypeError, match="conv2d does not take int8"):
        pop.conv2d(np.zeros((1, 1, 3, 3), np.int8), "W")
    with pytest.raises(ValueError, match=r"ids must be in \[0, 8\)"):
        pop.embed(np.array([8]), "W")


def test_save_load_is_exact_and_resumes(tmp_path):
    p = _params(1)
    state = egg.init(p, population=8, rank=4, seed=3, int_sigma_shift=1, int_update_fraction=0.4)
    rng = np.random.default_rng(0)
    fits = [rng.normal(size=8) for _ in range(6)]
    for f in fits[:3]:
        p, state = egg.tell(p, f, state)
    egg.save(tmp_path / "c.npz", p, state)
    p2, s2 = egg.load(tmp_path / "c.npz")
    _same(p, p2)
    assert s2.config == state.config
    assert s2.info == state.info
    with np.load(tmp_path / "c.npz") as data:
        assert data["param/0"].dtype == np.int8  # 'W' stored as int8, not widened
        meta = json.loads(data["meta"].tobytes())
    assert meta["format_version"] == 4
    assert meta["config"]["int_sigma_shift"] == 1
    for f in fits[3:]:
        p, state = egg.tell(p, f, state)
        p2, s2 = egg.tell(p2, f, s2)
    _same(p, p2)


def test_format_3_checkpoints_still_load(tmp_path):
    p = {"f": np.ones((3, 2), np.float32)}
    state = egg.init(p, population=4)
    egg.save(tmp_path / "new.npz", p, state)
    as_format_3(tmp_path / "new.npz", tmp_path / "old.npz")
    p2, s2 = egg.load(tmp_path / "old.npz")
    _same(p, p2)
    assert s2.config == state.config


def test_load_rejects_minus_128(tmp_path):
    p = _params()
    state = egg.init(p, population=4)
    egg.save(tmp_path / "c.npz", p, state)
    with np.load(tmp_path / "c.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["param/0"] = arrays["param/0"].copy()
    arrays["param/0"][0, 0] = -128
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="bad.npz.*'W'.*-128"):
        egg.load(tmp_path / "bad.npz")
