"""A distributed worker validates batched fitness with the validator of one process's `tell`
(issue 25): strings and an (n, 1) shape are refused there as here. In process, no Ray."""

from __future__ import annotations

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np.distributed.replica import _Replica


def _params():
    return {"W": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)}


_BAD = {
    "strings": (lambda n: np.array(["1.5"] * n), TypeError, r"fitness must be real numbers"),
    "column": (lambda n: np.zeros((n, 1)), ValueError, r"fitness must have shape \(\d+,\)"),
    "row": (lambda n: np.zeros((1, n)), ValueError, r"fitness must have shape \(\d+,\)"),
    "too-few": (lambda n: np.zeros(n - 1), ValueError, r"fitness must have shape \(\d+,\)"),
    "nan": (lambda n: np.full(n, np.nan), ValueError, r"fitness must be finite"),
    "list-of-str": (lambda n: ["x"] * n, TypeError, r"fitness"),
}


@pytest.mark.parametrize("kind", sorted(_BAD))
def test_a_replica_refuses_what_one_process_refuses(kind):
    make, error, match = _BAD[kind]
    params = _params()
    state = egg.init(params, population=8)
    with pytest.raises(error, match=match):  # one process
        egg.step(params, lambda pop: make(pop.size), state, batched=True)
    replica = _Replica(lambda pop: make(pop.size), False, True, 0)
    replica.load((params, state))
    with pytest.raises(error, match=r"slice of members \[2, 6\): " + match):
        replica.evaluate(0, 2, 6)


def test_a_replica_accepts_a_list_of_floats_like_one_process():
    params = _params()
    state = egg.init(params, population=8)
    replica = _Replica(lambda pop: [float(i) for i in range(pop.size)], False, True, 0)
    replica.load((params, state))
    start, stop, values = replica.evaluate(0, 2, 6)
    assert (start, stop) == (2, 6)
    assert values.dtype == np.float64
    assert values.tolist() == [0.0, 1.0, 2.0, 3.0]
