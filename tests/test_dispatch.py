"""Tests of eggroll_np.dispatch: the table's shape, the reference fallback, the one device check."""

from __future__ import annotations

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _ext, dispatch, noise, noise_table, optim

needs_core = pytest.mark.skipif(_ext.core is None, reason=f"C++ core not built: {_ext.core_error}")


def test_every_operation_has_a_numpy_row_and_every_row_a_known_operation():
    for op in dispatch.OPERATIONS:
        assert any(b == "numpy" for b, _ in dispatch.rows_of(op)), op
    for op, backend, dtype in dispatch.ROWS:
        assert op in dispatch.OPERATIONS
        assert backend in dispatch.BACKENDS
        assert dtype == "*" or np.dtype(dtype).name == dtype


def test_every_row_of_a_loaded_backend_resolves_to_a_callable():
    for (op, backend, _), row in dispatch.ROWS.items():
        if backend == "cuda":
            continue  # its wrappers import CuPy; test_cuda_plumbing drives them emulated
        if backend == "core" and _ext.core is None:
            continue
        assert callable(dispatch._resolve(row)), (op, row.impl)


def test_numpy_rows_are_the_fallback_for_other_dtypes_and_layouts():
    out = np.zeros((2, 3, 4), np.float16)  # no compiled row takes float16
    ref = dispatch.rows_of("linear_epilogue")[("numpy", "*")]
    assert dispatch.select("linear_epilogue", [out]) is dispatch._resolve(ref)
    strided = np.zeros((2, 3, 8), np.float32)[..., ::2]  # not C-contiguous
    assert dispatch.select("linear_epilogue", [strided]) is dispatch._resolve(ref)
    with dispatch.use("numpy"):
        assert dispatch.select("linear_epilogue", [np.zeros((2, 3, 4), np.float32)]) is (
            dispatch._resolve(ref)
        )


@needs_core
def test_float32_numpy_calls_take_the_core_rows():
    f = np.zeros((2, 3, 4), np.float32)
    assert dispatch.select("linear_epilogue", [f]) is _ext.core.linear_epilogue
    assert dispatch.select("adam_step", [f, f, f, f]) is optim.adam_step_core
    assert dispatch.select("sgd_step", [f, f]) is optim.reference_step


def test_a_new_dtype_is_new_rows(monkeypatch):
    # How integer leaves plug in: rows keyed by "int8", no change to any caller.
    calls = []
    rows = dict(dispatch.ROWS)
    rows[("linear_epilogue", "numpy", "int8")] = dispatch.Row("eggroll_np.tree:flatten")
    monkeypatch.setattr(dispatch, "ROWS", rows)
    monkeypatch.setattr(dispatch, "_resolve", lambda row: calls.append(row.impl) or row.impl)
    assert dispatch.select("linear_epilogue", [np.zeros((1, 1, 1), np.int8)]) == (
        "eggroll_np.tree:flatten"
    )
    assert dispatch.select("linear_epilogue", [np.zeros((1, 1, 1), np.float64)]) == (
        "eggroll_np.epilogue:linear_epilogue_reference"
    )


def test_unknown_operation_and_backend_are_errors():
    with pytest.raises(ValueError, match="operation must be one of"):
        dispatch.select("matmul", [])
    with pytest.raises(ValueError, match="backend must be one of"):
        with dispatch.use("tpu"):
            pass


@pytest.mark.skipif(dispatch.cuda_available(), reason="checks the no-GPU path")
def test_device_calls_without_a_device_say_why():
    reason = dispatch.cuda_unavailable_reason()
    assert reason
    with pytest.raises(RuntimeError, match="no CUDA device can be used"):
        dispatch.require_cuda()
    with pytest.raises(RuntimeError, match="no CUDA device can be used"):
        dispatch.select("normals", [None], device=True)


# ---- the reference row gives the compiled row's bits where the contract says so ----------------


def _both(fn):
    compiled = fn()
    with dispatch.use("numpy"):
        reference = fn()
    return compiled, reference


@needs_core
def test_noise_rows_agree_bit_for_bit():
    got, want = _both(lambda: noise.normals_many(7, 3, [0, 5, 9], [(0, 0, 100), (2, 11, 37)]))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.view(np.uint32), w.view(np.uint32))
    counters = np.arange(40, dtype=np.uint32).reshape(10, 4)
    key = np.array([3, 9], np.uint32)
    got, want = _both(lambda: noise.philox4x32_10(counters, key))
    np.testing.assert_array_equal(got, want)
    starts = [np.array([0, 7, 3]), np.array([2])]
    got, want = _both(lambda: noise_table._gather(np.arange(20, dtype=np.float32), starts, [4, 5], np))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@needs_core
def test_adam_rows_agree_bit_for_bit_and_a_whole_step_too():
    params = {"W": np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)}
    state = egg.init(params, population=8, optimizer="adam", seed=4, rank=2)
    fitness = np.arange(8.0)
    got, want = _both(lambda: egg.tell(params, fitness, state))
    np.testing.assert_array_equal(got[0]["W"].view(np.uint32), want[0]["W"].view(np.uint32))
    for g, w in zip(*(optim.state_arrays(s[1].opt_state) for s in (got, want)), strict=True):
        np.testing.assert_array_equal(g.view(np.uint32), w.view(np.uint32))


@needs_core
def test_layer_rows_agree_within_float32_rounding():
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((6, 5)).astype(np.float32), "b": np.ones(5, np.float32)}
    pop = egg.ask(params, egg.init(params, population=8, rank=2))
    x = rng.standard_normal((3, 6)).astype(np.float32)
    got, want = _both(lambda: pop.linear(x, "W", "b", activation="tanh"))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
