"""One validation behaviour everywhere: NumPy integers accepted, bools refused for numbers."""

from __future__ import annotations

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _checks
from eggroll_np.training.workloads.common import check_options


def test_integers_accept_numpy_and_refuse_bools():
    assert _checks.integer("n", np.int64(4), 1) == 4
    assert type(_checks.integer("n", np.uint8(3))) is int
    for bad in (True, np.bool_(False)):
        with pytest.raises(TypeError, match="n must be an integer, got bool"):
            _checks.integer("n", bad)
    with pytest.raises(TypeError, match="n must be an integer, got float"):
        _checks.integer("n", 4.0)
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        _checks.integer("n", 0, 1)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\^64\)"):
        _checks.integer("seed", 2**64, 0, 2**64)


def test_reals_booleans_and_choices():
    assert _checks.real("sigma", np.float32(0.5), 0.0, True) == 0.5
    with pytest.raises(TypeError, match="sigma must be a real number, got bool"):
        _checks.real("sigma", True)
    with pytest.raises(ValueError, match="sigma must be finite, > 0.0"):
        _checks.real("sigma", 0.0, 0.0, True)
    assert _checks.boolean("flag", np.bool_(True)) is True
    with pytest.raises(TypeError, match="flag must be True or False, got 1"):
        _checks.boolean("flag", 1)
    with pytest.raises(ValueError, match=r"mode must be one of \['a', 'b'\], got 'c'"):
        _checks.choice("mode", "c", ("b", "a"))


def test_engine_and_workloads_share_the_behaviour():
    params = {"W": np.zeros((3, 2), np.float32)}
    state = egg.init(params, population=np.int64(4))
    pop = egg.ask(params, state)
    np.testing.assert_array_equal(pop.member(np.int64(1))["W"], pop.member(1)["W"])
    with pytest.raises(TypeError, match="member index i must be an integer, got bool"):
        pop.member(True)
    with pytest.raises(TypeError, match="population must be an integer, got bool"):
        egg.init(params, population=True)
    check_options({"batch": np.int32(8)}, positive=("batch",))
    with pytest.raises(TypeError, match="--batch must be an integer, got bool"):
        check_options({"batch": True}, positive=("batch",))
