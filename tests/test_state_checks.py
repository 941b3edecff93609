"""A hand-edited or mixed-up ESState, non-finite params and the hints of tell's errors (issue
25): each error names the field or leaf, and blames what is actually wrong."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import config, optim, tree
from eggroll_np import state as state_module


def _params() -> dict:
    return {"W": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)}


def _tell_refuses(params, state, exc, match):
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(exc, match=match):
        egg.tell(params, np.arange(8.0), state)
    with pytest.raises(exc, match=match):
        egg.ask(params, state)
    for k, v in before.items():
        assert params[k].tobytes() == v.tobytes()


@pytest.mark.parametrize("value", ["0", 1.0, None, True])
def test_a_generation_that_is_not_an_int_is_refused_by_name(value):
    p = _params()
    state = dataclasses.replace(egg.init(p, population=8), generation=value)
    _tell_refuses(p, state, TypeError, r"state\.generation must be an int, got")


def test_a_negative_generation_is_refused():
    p = _params()
    state = dataclasses.replace(egg.init(p, population=8), generation=-1)
    _tell_refuses(p, state, ValueError, r"state\.generation must be >= 0, got -1")


def test_a_numpy_integer_generation_is_fine():
    p = _params()
    state = dataclasses.replace(egg.init(p, population=8), generation=np.int64(3))
    assert egg.ask(p, state).generation == 3


def test_missing_optimizer_entries_name_the_leaf():
    p = _params()
    state = egg.init(p, population=8)
    opt = state.opt_state
    leaves = {i: s for i, s in opt.leaves.items() if i != 1}
    state = dataclasses.replace(state, opt_state=optim.OptState(opt.count, leaves))
    _tell_refuses(
        p, state, ValueError, r"state\.opt_state lacks the optimizer state of leaves \['b'\]"
    )


def test_a_config_from_another_tree_is_refused_by_name():
    p = _params()
    other = egg.init({**_params(), "c": np.zeros(2, np.float32)}, population=8)
    state = dataclasses.replace(egg.init(p, population=8), config=other.config)
    _tell_refuses(p, state, ValueError, r"state\.config was made for a tree of 3 leaves.*has 2")


def test_a_config_from_a_tree_of_as_many_leaves_but_other_kinds_is_refused():
    p = _params()
    other = egg.init(
        {"a": np.zeros(3, np.float32), "z": np.zeros((4, 3), np.float32)}, population=8
    )
    state = dataclasses.replace(egg.init(p, population=8), config=other.config)
    _tell_refuses(p, state, ValueError, r"state\.config makes leaf 'b' of shape \(3,\) low-rank")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("config", {"sigma": 0.1}, r"state\.config must be an ESConfig, got dict"),
        ("spec", None, r"state\.spec must be a TreeSpec, got NoneType"),
        ("info", [], r"state\.info must be a dict, got list"),
    ],
)
def test_fields_of_the_wrong_type_are_refused_by_name(field, value, match):
    p = _params()
    state = dataclasses.replace(egg.init(p, population=8), **{field: value})
    _tell_refuses(p, state, TypeError, match)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_init_refuses_non_finite_params_naming_the_leaf(bad):
    p = _params()
    p["b"][1] = bad
    with pytest.raises(ValueError, match=r"params leaf 'b' has non-finite values"):
        egg.init(p, population=8)


def test_init_accepts_a_non_finite_frozen_leaf():
    p = {**_params(), "mask": np.array([0.0, -np.inf], np.float32)}
    state = egg.init(p, population=8, lowrank={"mask": "frozen"})
    new, _ = egg.tell(p, np.arange(8.0), state)
    assert new["mask"].tobytes() == p["mask"].tobytes()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_tell_blames_non_finite_params_not_sigma_and_lr(optimizer):
    p = _params()
    state = egg.init(p, population=8, optimizer=optimizer)
    p["W"][2, 1] = np.nan
    with pytest.raises(ValueError, match=r"params leaf 'W' held non-finite values") as err:
        egg.tell(p, np.arange(8.0), state)
    assert "sigma" not in str(err.value)
    assert "lr" not in str(err.value)


def test_an_eps_that_is_zero_in_float32_is_refused_at_init_by_name():
    with pytest.raises(ValueError, match=r"eps=1e-50 is 0 in float32 \(leaf 'W'\)"):
        egg.init(_params(), population=8, eps=1e-50)
    # 1e-50 is a float64 number: fine for float64 leaves, and a frozen float32 leaf has no eps
    egg.init({"b": np.zeros(3)}, population=8, eps=1e-50)
    egg.init(
        {**_params(), "c": np.zeros(3)},
        population=8,
        eps=1e-50,
        lowrank={"W": "frozen", "b": "frozen"},
    )


def test_a_subnormal_eps_is_named_in_the_overflow_hint():
    # fitness ~1e-25: g^2 underflows to 0 in float32 while g does not, so Adam's step is
    # lr * mu / eps, which overflows with a subnormal eps (and stays small with eps=1e-8)
    p = {"b": np.zeros(3, np.float32)}
    fitness = np.arange(8.0) * 1e-25
    state = egg.init(p, population=8, eps=1e-44, lr=1e22, shaping="none")
    with pytest.raises(ValueError, match=r"eps=1e-44 overflow.*use eps >= 1\.18e-38"):
        egg.tell(p, fitness, state)
    fine = egg.init(p, population=8, eps=1e-8, lr=1e22, shaping="none")
    assert np.isfinite(egg.tell(p, fitness, fine)[1].info["update_norm"])


def test_a_tiny_sigma_with_shaping_suggests_a_sigma_not_the_shaping_in_use():
    p = _params()
    state = egg.init(p, population=8, sigma=1e-30)  # centered_rank
    with pytest.raises(ValueError, match=r"sigma=1e-30 is too small.*use sigma >= ") as err:
        egg.tell(p, np.arange(8.0), state)
    assert "use a shaping" not in str(err.value)


def test_a_tiny_sigma_without_shaping_still_suggests_one():
    p = _params()
    state = egg.init(p, population=8, sigma=1e-30, shaping="none")
    with pytest.raises(ValueError, match=r"use a shaping such as 'centered_rank'"):
        egg.tell(p, np.arange(8.0), state)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_every_state_the_engine_makes_passes_the_full_checks(optimizer):
    # ask/tell check a state that init, tell or step made only against the params (_MADE):
    # sound only while each such state passes every check of a hand-made one.
    p = {
        "W": np.ones((4, 3), np.float32),
        "b": np.zeros(3, np.float64),
        "s": np.array(0.5, np.float32),
        "q": np.ones((3, 2), np.int8),
        "mask": np.array([0.0, -np.inf], np.float32),
    }
    states = [egg.init(p, population=8, optimizer=optimizer, lowrank={"mask": "frozen"})]
    p1, s1 = egg.tell(p, np.arange(8.0), states[0])
    p2, s2 = egg.step(p1, lambda pop: np.arange(8.0), s1, batched=True)
    p3, s3 = egg.step(p2, lambda member: float(member["W"].sum()), s2)
    states += [s1, s2, s3]
    for state, params in zip(states, (p, p1, p2, p3), strict=True):
        assert state in state_module._MADE
        state_module._check_fields(state)
        leaves = tree.check_params(params)[0]
        updated = config.optimized_leaves(state.config, state.spec)
        optim.check_state(state.opt_state, optimizer, leaves, updated, np)


def test_a_made_state_is_still_checked_against_other_params():
    p = _params()
    state = egg.init(p, population=8)
    other = {"W": np.zeros((4, 3), np.float64), "b": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=r"leaf 'W' has dtype float64, expected float32"):
        egg.ask(other, state)


def test_a_replaced_generation_of_a_made_state_is_still_checked_in_that_field():
    # dataclasses.replace keeps a made state's opt_state, config and spec (trusted), but the
    # generation and info it sets are checked like any hand-made state's.
    p = _params()
    state = egg.init(p, population=8)
    again = dataclasses.replace(state, generation=5)
    assert again not in state_module._MADE
    assert egg.ask(p, again).generation == 5
    with pytest.raises(ValueError, match=r"state.generation must be >= 0, got -1"):
        egg.ask(p, dataclasses.replace(state, generation=-1))
    with pytest.raises(TypeError, match=r"state.info must be a dict"):
        egg.tell(p, np.arange(8.0), dataclasses.replace(state, info=[]))


def test_a_made_state_with_another_opt_state_is_checked_in_full():
    # The shortcut holds only for the very objects a made state holds: an opt_state swapped in
    # by replace (here one with a negative second moment) is checked as a hand-made one.
    p = _params()
    _, told = egg.tell(p, np.arange(8.0), egg.init(p, population=8))
    leaves = {i: type(s)(s.mu, -np.abs(s.nu) - 1.0) for i, s in told.opt_state.leaves.items()}
    bad = dataclasses.replace(told, opt_state=optim.OptState(told.opt_state.count, leaves))
    with pytest.raises(ValueError, match=r"opt_state nu of leaf 0 must be >= 0"):
        egg.ask(p, bad)
