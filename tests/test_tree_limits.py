"""Trees a hostile caller can build: cycles, deep nesting, wrong leaf counts, namedtuples,
masked arrays (issue 25: each is an error naming the argument, or keeps the caller's type)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np.tree import check_params, flatten, unflatten

Pair = collections.namedtuple("Pair", "W b")


def _pair() -> Pair:
    return Pair(np.zeros((4, 3), np.float32), np.zeros(3, np.float32))


def test_init_of_a_cyclic_dict_names_the_cycle():
    params = {"a": np.zeros(3, np.float32)}
    params["self"] = params
    with pytest.raises(ValueError, match=r"params contains itself at 'self'"):
        egg.init(params)


def test_init_of_a_list_inside_itself_deeper_down_names_the_path():
    inner: list = [np.zeros(3, np.float32)]
    params = {"layers": [inner]}
    inner.append(params)
    with pytest.raises(ValueError, match=r"params contains itself at 'layers/0/1'"):
        egg.init(params)


def test_init_of_a_5000_deep_list_is_a_value_error_not_a_recursion_error():
    params: object = np.zeros(3, np.float32)
    for _ in range(5000):
        params = [params]
    with pytest.raises(ValueError, match=r"params nests more than 100 containers deep at '0/0/0/"):
        egg.init(params)


def test_a_shared_subtree_is_not_a_cycle():
    b = np.zeros(3, np.float32)
    shared = {"b": b}
    leaves, paths, _ = flatten({"x": shared, "y": shared})
    assert paths == [("x", "b"), ("y", "b")]


def test_unflatten_with_too_few_leaves_is_a_value_error():
    _, _, s = flatten({"a": 1, "b": 2})
    with pytest.raises(ValueError, match=r"fewer leaves \(1\)"):
        unflatten(s, [1])


def test_unflatten_counts_a_none_leaf_too_many():
    _, _, s = flatten({"a": 1, "b": 2})
    with pytest.raises(
        ValueError, match=r"more leaves \(3\) than the structure has places for \(2\)"
    ):
        unflatten(s, [1, 2, None])


def test_unflatten_takes_any_iterable_of_leaves():
    _, _, s = flatten([1, (2, 3)])
    assert unflatten(s, iter([4, 5, 6])) == [4, (5, 6)]


def test_namedtuple_params_keep_their_type_through_ask_tell_and_unflatten():
    params = _pair()
    leaves, _, structure = flatten(params)
    assert type(unflatten(structure, leaves)) is Pair
    state = egg.init(params, population=8, optimizer="sgd")
    pop = egg.ask(params, state)
    assert type(pop.member(3)) is Pair
    new, state = egg.tell(params, np.arange(8.0), state, population=pop)
    assert type(new) is Pair
    assert new.W.shape == (4, 3)
    assert not np.array_equal(new.W, params.W)
    new2, _ = egg.step(new, lambda p: float(p.b.sum()), state)
    assert type(new2) is Pair


def test_namedtuple_noise_is_that_of_the_plain_tuple():
    params = _pair()
    kw = {"population": 8, "optimizer": "sgd", "seed": 3}
    a, _ = egg.tell(params, np.arange(8.0), egg.init(params, **kw))
    b, _ = egg.tell(tuple(params), np.arange(8.0), egg.init(tuple(params), **kw))
    assert type(b) is tuple
    for x, y in zip(a, b, strict=True):
        assert x.tobytes() == y.tobytes()


def test_namedtuple_params_resume_from_a_checkpoint(tmp_path):
    params = _pair()
    state = egg.init(params, population=8, optimizer="sgd")
    egg.save(tmp_path / "c.npz", params, state)
    loaded, state2 = egg.load(tmp_path / "c.npz")
    assert type(loaded) is tuple  # a checkpoint stores no classes (they are code)
    new, _ = egg.tell(params, np.arange(8.0), state2)  # the caller's own namedtuple params
    assert type(new) is Pair


_ODD_LEAVES = {
    "masked": lambda: np.ma.masked_array(np.zeros(3, np.float32), mask=[False, True, False]),
    "masked-nothing": lambda: np.ma.masked_array(np.zeros(3, np.float32)),
    "matrix": lambda: np.matrix(np.zeros((2, 2), np.float32)),
}


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("kind", sorted(_ODD_LEAVES))
def test_masked_array_and_matrix_leaves_are_refused_by_name(kind):
    params = {"ok": np.zeros(2, np.float32), "m": _ODD_LEAVES[kind]()}
    with pytest.raises(TypeError, match=r"params leaf 'm' is a numpy\..*(MaskedArray|matrix)"):
        check_params(params)
    with pytest.raises(TypeError, match=r"params leaf 'm'"):
        egg.init(params)


def test_masked_array_leaf_is_refused_by_tell_leaving_params_unchanged():
    params = {"W": np.zeros((4, 3), np.float32)}
    state = egg.init(params, population=8)
    masked = {"W": np.ma.masked_array(params["W"].copy(), mask=np.eye(4, 3, dtype=bool))}
    with pytest.raises(TypeError, match=r"params leaf 'W' is a numpy\.ma"):
        egg.tell(masked, np.arange(8.0), state)
    assert masked["W"].mask.sum() == 3
    assert not masked["W"].data.any()
