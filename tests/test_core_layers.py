"""The C++ fused epilogues of the population layers against the NumPy reference, all SIMD levels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import _ext, dispatch, epilogue

from .engine_helpers import fit_rank

pytestmark = pytest.mark.skipif(
    _ext.core is None or not hasattr(_ext.core, "linear_epilogue"),
    reason=f"eggroll_np._core is not built with the layer epilogues ({_ext.core_error})",
)

LEVELS = _ext.core.available_simd_levels() if _ext.core is not None else []


@pytest.fixture(params=LEVELS)
def simd(request):
    before = _ext.core.simd_level()
    _ext.core.set_simd_level(request.param)
    yield request.param
    _ext.core.set_simd_level(before)


def _reference(monkeypatch, fn):
    """fn() computed with the compiled epilogues switched off (the array-code reference)."""
    with dispatch.use("numpy"):
        return fn()


def _close(got, want):
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * scale)


@pytest.mark.parametrize("act", epilogue.ACTIVATIONS)
def test_activations_match_float64_definitions(simd, act):
    h = np.concatenate([np.linspace(-60, 60, 4001), [0.0, -0.0, 1e-30, -1e-30, 1e-6, -88, 90]])
    h = h.astype(np.float32)
    out = np.empty((1, 1, h.size), np.float32)
    code = epilogue.activation_code(act)
    _ext.core.linear_epilogue(out, h.reshape(1, -1), *[None] * 10, code)
    want = epilogue.apply_activation(h.astype(np.float64), code)
    np.testing.assert_allclose(out[0, 0], want, rtol=3e-6, atol=1e-7)
    nan = np.full((1, 5), np.nan, np.float32)
    got = np.empty((1, 1, 5), np.float32)
    _ext.core.linear_epilogue(got, nan, *[None] * 10, code)
    assert np.isnan(got).all()


# What every linear/conv epilogue case draws besides its shapes.
EPILOGUE_CASE = dict(
    rank=st.integers(1, 3),
    w_kind=st.sampled_from(["lowrank", "full", "frozen"]),
    b_kind=st.sampled_from(["none", "full", "frozen"]),
    act=st.sampled_from(epilogue.ACTIVATIONS),
    shared=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)


@settings(max_examples=30, deadline=None)
@given(
    n_out=st.sampled_from([1, 7, 16, 513, 1030]),
    m=st.sampled_from([1, 5, 64]),
    batch=st.integers(1, 5),
    transpose=st.booleans(),
    **EPILOGUE_CASE,
)
def test_linear_core_matches_reference(
    n_out, m, batch, rank, w_kind, b_kind, act, shared, transpose, seed
):
    rng = np.random.default_rng(seed)
    N = 6
    shape = (n_out, m) if transpose else (m, n_out)
    params = {"W": rng.standard_normal(shape).astype(np.float32)}
    kinds = {"W": w_kind}
    if b_kind != "none":
        params["b"] = rng.standard_normal(n_out).astype(np.float32)
        kinds["b"] = b_kind
    rank = fit_rank(rank, params, kinds)  # init refuses a rank above min(m, n)
    state = egg.init(params, population=N, sigma=0.2, rank=rank, seed=seed, lowrank=kinds)
    pop = egg.ask(params, dataclasses.replace(state, generation=3))
    x = rng.standard_normal((batch, m) if shared else (N, batch, m)).astype(np.float32)
    b = "b" if b_kind != "none" else None
    got = pop.linear(x, "W", b, act, transpose)
    with pytest.MonkeyPatch.context() as mp:
        want = _reference(mp, lambda: pop.linear(x, "W", b, act, transpose))
    _close(got, want)


def test_linear_core_every_simd_level(simd, monkeypatch):
    rng = np.random.default_rng(1)
    params = {"W": rng.standard_normal((33, 700)).astype(np.float32),
              "b": rng.standard_normal(700).astype(np.float32)}  # fmt: skip
    for rank in (1, 2):
        pop = egg.ask(params, egg.init(params, population=8, rank=rank, sigma=0.3))
        for x in (rng.standard_normal((3, 33)), rng.standard_normal((8, 3, 33))):
            x = x.astype(np.float32)
            for act in epilogue.ACTIVATIONS:
                got = pop.linear(x, "W", "b", act)
                want = _reference(monkeypatch, lambda p=pop, a=act, x=x: p.linear(x, "W", "b", a))
                _close(got, want)


@settings(max_examples=25, deadline=None)
@given(
    C=st.integers(1, 3),
    Co=st.integers(1, 5),
    k=st.integers(1, 3),
    size=st.integers(3, 9),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    **EPILOGUE_CASE,
)
def test_conv_core_matches_reference(
    C, Co, k, size, stride, padding, rank, w_kind, b_kind, act, shared, seed
):
    rng = np.random.default_rng(seed)
    N, batch = 4, 2
    params = {"K": rng.standard_normal((Co, C, k, k)).astype(np.float32)}
    kinds = {"K": w_kind}
    if b_kind != "none":
        params["c"] = rng.standard_normal(Co).astype(np.float32)
        kinds["c"] = b_kind
    rank = fit_rank(rank, params, kinds)  # init refuses a rank above min(m, n)
    state = egg.init(params, population=N, sigma=0.2, rank=rank, seed=seed, lowrank=kinds)
    pop = egg.ask(params, state)
    x = rng.standard_normal((batch, C, size, size) if shared else (N, batch, C, size, size))
    x = x.astype(np.float32)
    b = "c" if b_kind != "none" else None
    got = pop.conv2d(x, "K", b, stride, padding, act)
    with pytest.MonkeyPatch.context() as mp:
        want = _reference(mp, lambda: pop.conv2d(x, "K", b, stride, padding, act))
    _close(got, want)


def test_epilogue_buffer_checks():
    out = np.zeros((2, 3, 4), np.float32)
    none = [None] * 10
    with pytest.raises(ValueError, match="act"):
        _ext.core.linear_epilogue(out, None, *none, 9)
    with pytest.raises(ValueError, match="base"):
        _ext.core.linear_epilogue(out, np.zeros((3, 5), np.float32), *none, 0)
    with pytest.raises(TypeError, match="float32"):
        _ext.core.linear_epilogue(out.astype(np.float64), None, *none, 0)
    b = np.zeros((2, 4, 1), np.float32)
    xa = np.zeros((2, 3, 1), np.float32)
    coef = np.ones(2, np.float32)
    rows = np.zeros(2, np.uint32)
    with pytest.raises(ValueError, match="keys must be < 2"):
        _ext.core.linear_epilogue(
            out, None, None, None, xa, rows, b, np.array([0, 2], np.uint32), coef, None, None,
            None, 0,
        )  # fmt: skip
    with pytest.raises(ValueError, match="xa_rows"):
        _ext.core.linear_epilogue(
            out, None, None, None, xa, None, b, rows, coef, None, None, None, 0
        )  # fmt: skip
    with pytest.raises(ValueError, match="src"):
        _ext.core.conv_epilogue(
            np.zeros((2, 1, 3, 4), np.float32), np.zeros((3, 1, 3, 4), np.float32),
            *[None] * 8, 0,
        )  # fmt: skip


@pytest.mark.parametrize("rank", [1, 3])
def test_linear_core_row_blocks(rank, monkeypatch):
    # 40 rows of 700 outputs: the kernel splits each member's rows into blocks of 23 (its 16K
    # values per work item), so the per-member projection runs block by block.
    rng = np.random.default_rng(rank)
    params = {"W": rng.standard_normal((9, 700)).astype(np.float32),
              "b": rng.standard_normal(700).astype(np.float32)}  # fmt: skip
    pop = egg.ask(params, egg.init(params, population=4, rank=rank, sigma=0.3))
    for x in (rng.standard_normal((40, 9)), rng.standard_normal((4, 40, 9))):
        x = x.astype(np.float32)
        got = pop.linear(x, "W", "b", "tanh")
        _close(got, _reference(monkeypatch, lambda x=x: pop.linear(x, "W", "b", "tanh")))


def test_float32_numpy_layers_run_on_the_compiled_epilogues(monkeypatch):
    calls = []
    core = _ext.core

    class Spy:
        def __getattr__(self, name):
            attr = getattr(core, name)
            if name not in ("linear_epilogue", "conv_epilogue"):
                return attr

            def call(*args):
                calls.append(name)
                return attr(*args)

            return call

    monkeypatch.setattr(_ext, "core", Spy())
    f = np.float32
    params = {"W": np.ones((4, 5), f), "b": np.ones(5, f), "K": np.ones((3, 2, 3, 3), f),
              "E": np.ones((7, 3), f)}  # fmt: skip
    pop = egg.ask(params, egg.init(params, population=4, lowrank={"K": "lowrank"}))
    pop.linear(np.ones((2, 4)), "W", "b", "relu")
    pop.linear(np.ones((4, 2, 4)), "W", "b", "gelu")
    pop.conv2d(np.ones((2, 2, 5, 5)), "K", None, 1, 1)
    pop.conv2d(np.ones((4, 2, 2, 5, 5)), "K", None, 1, 1)
    pop.embed(np.array([1, 2]), "E")
    assert calls == ["linear_epilogue"] * 2 + ["conv_epilogue"] * 2 + ["linear_epilogue"]


def test_layers_give_the_same_bits_at_every_simd_level():
    # The epilogue kernels are built like the others (-ffp-contract=off, plain arithmetic in the
    # activations), so every instruction set writes the same float32 bits (DESIGN: exactness).
    rng = np.random.default_rng(7)
    params = {"W": rng.standard_normal((33, 700)).astype(np.float32),
              "b": rng.standard_normal(700).astype(np.float32),
              "K": rng.standard_normal((4, 3, 3, 3)).astype(np.float32)}  # fmt: skip
    pop = egg.ask(params, egg.init(params, population=6, rank=2, lowrank={"K": "lowrank"}))
    x = rng.standard_normal((6, 5, 33)).astype(np.float32) * 3
    img = rng.standard_normal((6, 2, 3, 7, 7)).astype(np.float32)
    before = _ext.core.simd_level()
    outs = {}
    try:
        for level in LEVELS:
            _ext.core.set_simd_level(level)
            outs[level] = [pop.linear(x, "W", "b", act) for act in epilogue.ACTIVATIONS]
            outs[level].append(pop.conv2d(img, "K", None, 1, 1, "gelu"))
    finally:
        _ext.core.set_simd_level(before)
    first = outs[LEVELS[0]]
    for level in LEVELS[1:]:
        for a, b in zip(first, outs[level], strict=True):
            np.testing.assert_array_equal(a, b)


def test_unpickled_float32_arrays_take_the_compiled_paths():
    # A Ray worker's params arrive unpickled: their float32 dtype is equal to, but not the same
    # object as, numpy's float32, which the compiled kernels once refused ("bias must be float32").
    import pickle

    rng = np.random.default_rng(3)
    params = {"W": rng.standard_normal((6, 5)).astype(np.float32), "b": np.ones(5, np.float32)}
    thawed = pickle.loads(pickle.dumps(params))
    assert thawed["b"].dtype is not np.dtype(np.float32)  # what the test is about
    x = rng.standard_normal((3, 6)).astype(np.float32)
    outs, news = [], []
    for p in (params, thawed):
        state = egg.init(p, population=8, sigma=0.1, rank=2, seed=4)
        pop = egg.ask(p, state)
        out = pop.linear(x, "W", "b", activation="gelu")
        outs.append(out)
        news.append(egg.tell(p, -np.abs(out).sum(axis=(1, 2)), state, population=pop)[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    for leaf in ("W", "b"):
        np.testing.assert_array_equal(news[0][leaf], news[1][leaf])
    a, w = thawed["W"].reshape(2, 3, 5), pickle.loads(pickle.dumps(np.ones(2, np.float32)))
    np.testing.assert_array_equal(
        _ext.core.contract(a, a, w),
        _ext.core.contract(
            *[np.ascontiguousarray(v) for v in (params["W"].reshape(2, 3, 5),) * 2],
            np.ones(2, np.float32),
        ),
    )
