"""`pop.noise` hands out its arrays read-only (issue 25): the forward and `tell` read the same
noise, so a write through it would silently change the update."""

from __future__ import annotations

import numpy as np
import pytest

import eggroll_np as egg


def _run():
    params = {"W": np.zeros((6, 4), np.float32), "b": np.zeros(4, np.float32)}
    state = egg.init(params, population=8, optimizer="sgd", seed=5)
    return params, state, egg.ask(params, state)


def test_low_rank_factors_are_read_only():
    params, state, pop = _run()
    A, B = pop.noise.factors(0)
    want, _ = egg.tell(params, np.arange(8.0), state)
    for arr in (A, B):
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 100.0
    got, _ = egg.tell(params, np.arange(8.0), state, population=pop)
    assert got["W"].tobytes() == want["W"].tobytes()


def test_full_rank_noise_and_member_arrays_are_read_only():
    params, _, pop = _run()
    pop.perturbed("b")  # makes the bias's dense noise
    held = [pop.noise.full(1), pop.noise.signs, pop.noise.keys, pop.noise.local,
            pop.noise.member_keys, pop.noise.members]  # fmt: skip
    for arr in held:
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 1


def test_black_box_full_rank_noise_is_read_only():
    params, _, pop = _run()
    pop.member(0)
    with pytest.raises(ValueError, match="read-only"):
        pop.noise.full_of_member(1, 0)[0] = 1.0


def test_a_slices_noise_is_read_only_too():
    _, _, pop = _run()
    pop.perturbed("b")
    part = pop.slice(2, 6)
    A, _ = part.noise.factors(0)
    assert not A.flags.writeable
    assert not part.noise.full(1).flags.writeable
