"""What ask/tell keep between generations of a run (the noise plan, the dispatch rows,
tell reading the population's leaves) must not change a result or skip a check."""

from __future__ import annotations

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _ext, dispatch, lowrank

F32 = np.float32


def _run(**kw):
    rng = np.random.default_rng(3)
    params = {"W": rng.standard_normal((4, 3)).astype(F32), "b": rng.standard_normal(3).astype(F32)}
    return params, egg.init(params, population=8, sigma=0.1, lr=0.01, **kw)


def _same(a, b):
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_tell_reads_the_params_it_is_given_not_the_asked_ones():
    params, state = _run()
    f = np.arange(8.0)
    pop = egg.ask(params, state)
    other = {"W": params["W"] + 1, "b": params["b"]}  # a new dict with a new W
    _same(egg.tell(other, f, state, population=pop)[0], egg.tell(other, f, state)[0])
    params["W"] = params["W"] * 2  # the asked dict itself, changed in place
    want = egg.tell(params, f, state)[0]
    _same(egg.tell(params, f, state, population=pop)[0], want)


def test_tell_checks_params_changed_after_ask():
    params, state = _run()
    f = np.arange(8.0)
    pop = egg.ask(params, state)
    params["W"].shape = (12,)  # the same array, reshaped in place
    with pytest.raises(ValueError, match=r"leaf 'W' has shape \(12,\), expected \(4, 3\)"):
        egg.tell(params, f, state, population=pop)
    params["W"].shape = (4, 3)
    params["c"] = np.zeros(2, F32)
    with pytest.raises(ValueError, match=r"unexpected leaves \['c'\]"):
        egg.tell(params, f, state, population=pop)
    del params["c"]
    params["b"] = params["b"].astype(np.float64)
    with pytest.raises(ValueError, match="leaf 'b' has dtype float64, expected float32"):
        egg.tell(params, f, state, population=pop)
    params["b"] = params["b"].astype(F32)
    with pytest.raises(TypeError, match="state must be an ESState"):
        egg.tell(params, f, {"generation": 0}, population=pop)
    egg.tell(params, f, state, population=pop)  # as asked again: fine


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_run_follows_use_and_the_loaded_core_between_generations(optimizer, monkeypatch):
    if _ext.core is None:
        pytest.skip("the C++ core is not built")
    params, state = _run(optimizer=optimizer, rank=2)
    f = np.arange(8.0)
    for _ in range(2):
        params, state = egg.tell(params, f, state, population=egg.ask(params, state))
    calls = []
    real = lowrank.contract_reference

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(lowrank, "contract_reference", counting)
    with dispatch.use("numpy"):
        ref = egg.tell(params, f, state, population=egg.ask(params, state))
    assert len(calls) == 2  # W's contraction and b's, on the reference rows
    got = egg.tell(params, f, state, population=egg.ask(params, state))
    assert len(calls) == 2  # back on the core's rows
    for k in params:
        np.testing.assert_allclose(got[0][k], ref[0][k], rtol=1e-5, atol=1e-6)
    core, seen = _ext.core, set()

    class Spy:
        def __getattr__(self, name):
            seen.add(name)
            return getattr(core, name)

    monkeypatch.setattr(_ext, "core", Spy())
    again = egg.tell(params, f, state, population=egg.ask(params, state))
    assert {"contract", "fill_normals_many"} <= seen
    _same(again[0], got[0])


def test_a_kept_noise_plan_gives_every_generation_its_own_noise():
    params, state = _run(rank=2)
    pops = []
    for _ in range(3):
        pop = egg.ask(params, state)
        pops.append(pop.noise.factors(0)[0].copy())
        params, state = egg.tell(params, np.arange(8.0), state, population=pop)
    fresh = egg.noise.factors(state.config.seed, 0, np.arange(4), 2, (4, 3), 2)[0]
    np.testing.assert_array_equal(pops[2], fresh)
    assert not np.array_equal(pops[0], pops[1])


def test_ask_checks_told_params_changed_after_tell():
    params, state = _run()
    params, state = egg.tell(params, np.arange(8.0), state, population=egg.ask(params, state))
    params["W"].shape = (12,)
    with pytest.raises(ValueError, match=r"leaf 'W' has shape \(12,\), expected \(4, 3\)"):
        egg.ask(params, state)
    params["W"].shape = (4, 3)
    told_w = params["W"]
    params["W"] = told_w.astype(np.float64)
    with pytest.raises(ValueError, match="leaf 'W' has dtype float64, expected float32"):
        egg.ask(params, state)
    params["W"] = told_w + 1  # another array of the right kind: asked around it
    pop = egg.ask(params, state)
    np.testing.assert_array_equal(pop.member(0)["b"] - pop.member(1)["b"] != 0, True)
    np.testing.assert_allclose(pop.perturbed("W").mean(axis=0), told_w + 1, atol=1e-5)
    params["extra"] = np.zeros(1, F32)
    with pytest.raises(ValueError, match=r"unexpected leaves \['extra'\]"):
        egg.ask(params, state)
    with pytest.raises(ValueError, match="params do not match the state"):
        egg.ask([params["W"], params["b"]], state)


def test_checked_requests_read_what_plain_requests_read():
    reqs = [(0, 0, 5), (3, 7, 2), (1, 0, 0)]
    checked = egg.noise.check_requests(reqs)
    assert list(checked) == reqs
    keys = np.arange(3)
    for got, want in zip(egg.noise.normals_many(9, 2, keys, checked),
                         egg.noise.normals_many(9, 2, keys, reqs), strict=True):  # fmt: skip
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"requests\[1\]: offset \+ count exceeds"):
        egg.noise.check_requests([(0, 0, 1), (0, 2**34 - 1, 2)])
    with pytest.raises(TypeError, match=r"requests\[0\] leaf must be an integer, got bool"):
        egg.noise.check_requests([(True, 0, 1)])
