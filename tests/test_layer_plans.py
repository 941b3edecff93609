"""A population keeps each `linear` layer's plan (its leaves checked once, its dispatch rows):
a later call of the same layer must give what a fresh population gives, check x again, and
follow `dispatch.use` and the loaded core as the first call did."""

from __future__ import annotations

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _ext, dispatch

F32 = np.float32


def _setup(population=6):
    rng = np.random.default_rng(5)
    params = {"W": rng.standard_normal((5, 3)).astype(F32),
              "b": rng.standard_normal(3).astype(F32),
              "F": rng.standard_normal((3, 5)).astype(F32)}  # fmt: skip
    state = egg.init(params, population=population, rank=2, lowrank={"F": "full"})
    return params, state


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("w", ["W", "F"])
def test_a_kept_layer_gives_a_fresh_populations_bits(w, transpose):
    params, state = _setup()
    rng = np.random.default_rng(1)
    m = 5 if (w == "W") != transpose else 3
    xs = [rng.standard_normal((2, m)).astype(F32), rng.standard_normal((6, 4, m)).astype(F32)]
    b = None if transpose or w == "F" else "b"
    pop = egg.ask(params, state)
    for x in xs + xs:  # shared and per-member inputs, each twice on one population
        want = egg.ask(params, state).linear(x, w, b, "tanh", transpose)
        np.testing.assert_array_equal(pop.linear(x, w, b, "tanh", transpose), want)


def test_a_kept_layer_checks_x_and_its_arguments_every_call():
    params, state = _setup()
    pop = egg.ask(params, state)
    pop.linear(np.ones((2, 5)), "W", "b", "relu")
    with pytest.raises(ValueError, match=r"x must have shape \(B, 5\).*'W'"):
        pop.linear(np.ones((2, 4)), "W", "b", "relu")
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        pop.linear(np.array([["a"] * 5]), "W", "b", "relu")
    pop.linear(np.ones((2, 5)), "W", "b", "relu", transpose=False)
    with pytest.raises(TypeError, match="transpose must be True or False, got 0"):
        pop.linear(np.ones((2, 5)), "W", "b", "relu", transpose=0)  # 0 == False as a key
    with pytest.raises(ValueError, match="activation must be"):
        pop.linear(np.ones((2, 5)), "W", "b", "relu6")
    # a list path is not kept (unhashable) and still works
    want = pop.linear(np.ones((2, 5)), "W", "b", "relu")
    np.testing.assert_array_equal(pop.linear(np.ones((2, 5)), ["W"], ["b"], "relu"), want)


def test_a_kept_layer_follows_use_and_the_loaded_core(monkeypatch):
    if _ext.core is None:
        pytest.skip("the C++ core is not built")
    params, state = _setup()
    pop = egg.ask(params, state)
    x = np.ones((2, 5), F32)
    pop.linear(x, "W", "b", "relu")
    calls = []
    real = dispatch.select

    def counting(operation, arrays, device=None):
        impl = real(operation, arrays, device)
        calls.append((operation, getattr(impl, "__module__", None)))
        return impl

    monkeypatch.setattr(dispatch, "select", counting)
    pop.linear(x, "W", "b", "relu")
    assert calls == []  # the first call's row, kept
    with dispatch.use("numpy"):
        ref = pop.linear(x, "W", "b", "relu")
    assert calls == [("linear_epilogue", "eggroll_np.epilogue")]
    np.testing.assert_allclose(ref, pop.linear(x, "W", "b", "relu"), rtol=1e-6, atol=1e-6)
    core = _ext.core
    seen = []

    class Spy:
        def __getattr__(self, name):
            seen.append(name)
            return getattr(core, name)

    monkeypatch.setattr(_ext, "core", Spy())
    pop.linear(x, "W", "b", "relu")
    assert "linear_epilogue" in seen  # another core: the row is looked up again
