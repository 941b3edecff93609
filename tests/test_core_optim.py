"""The fused C++ Adam step against the NumPy formula (decoupled weight decay, bias correction)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eggroll_np import _ext

core = _ext.core
pytestmark = pytest.mark.skipif(core is None, reason=f"C++ core not built: {_ext.core_error}")


def _adam_reference(theta, g, mu, nu, lr, b1, b2, eps, wd, count):
    t, g, mu, nu = (a.astype(np.float64) for a in (theta, g, mu, nu))
    m = b1 * mu + (1 - b1) * g
    v = b2 * nu + (1 - b2) * g * g
    d = (m / (1 - b1**count)) / (np.sqrt(v / (1 - b2**count)) + eps)
    return t + lr * (d - wd * t), m, v


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 3000),
    lr=st.floats(0, 1),
    b1=st.floats(0, 0.99),
    b2=st.floats(0.5, 0.9999),
    wd=st.floats(0, 0.5),
    count=st.integers(1, 10_000),
    seed=st.integers(0, 2**32 - 1),
)
def test_adam_step_matches_float64_formula(n, lr, b1, b2, wd, count, seed):
    rng = np.random.default_rng(seed)
    theta, g, mu = (rng.standard_normal((n,), dtype=np.float32) for _ in range(3))
    nu = np.abs(rng.standard_normal((n,), dtype=np.float32))
    inputs = [a.copy() for a in (theta, g, mu, nu)]
    *got, sq = core.adam_step(theta, g, mu, nu, lr, b1, b2, 1e-8, wd, count)
    want = _adam_reference(theta, g, mu, nu, lr, b1, b2, 1e-8, wd, count)
    step = got[0].astype(np.float64) - theta
    assert sq == pytest.approx(float(step @ step), rel=1e-9, abs=1e-30)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == np.float32
        assert a.shape == (n,)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for before, after in zip(inputs, (theta, g, mu, nu), strict=True):
        np.testing.assert_array_equal(before, after)  # inputs untouched


def test_adam_step_keeps_shape_and_rejects_mismatch():
    a = np.ones((3, 4), np.float32)
    theta, mu, nu, _ = core.adam_step(a, a, a, a, 0.1, 0.9, 0.999, 1e-8, 0.0, 1)
    assert theta.shape == mu.shape == nu.shape == (3, 4)
    with pytest.raises(ValueError, match="same size"):
        core.adam_step(a, a[:2], a, a, 0.1, 0.9, 0.999, 1e-8, 0.0, 1)
    with pytest.raises(ValueError, match="count"):
        core.adam_step(a, a, a, a, 0.1, 0.9, 0.999, 1e-8, 0.0, 0)


@pytest.mark.parametrize("layout", ["strided", "fortran", "byteswapped", "0-d"])
def test_adam_row_takes_any_float32_layout_with_the_reference_bits(layout):
    # The dispatch row takes float32 arrays of any layout (strided=True): the binding converts
    # them, and the step keeps the reference's bits.
    from eggroll_np import optim

    rng = np.random.default_rng(3)
    base = [rng.standard_normal((6, 4), dtype=np.float32) for _ in range(4)]
    base[3] = np.abs(base[3])
    if layout == "strided":
        arrays = [a[::2, ::2] for a in base]
    elif layout == "fortran":
        arrays = [np.asfortranarray(a) for a in base]
    elif layout == "byteswapped":
        arrays = [a.astype(a.dtype.newbyteorder()) for a in base]
    else:
        arrays = [np.asarray(a[0, 0]) for a in base]
    theta, g, mu, nu = arrays
    hp, state = optim.Adam(), optim.AdamState(mu, nu)
    got = optim.adam_step_core(hp, theta, g, state, 3, 0.01, 0.1)
    want = optim.reference_step(hp, theta, g, state, 3, 0.01, 0.1)
    assert got[0].shape == theta.shape
    for a, b in ((got[0], want[0]), (got[1].mu, want[1].mu), (got[1].nu, want[1].nu)):
        assert a.dtype == np.float32
        assert np.asarray(a).tobytes() == np.ascontiguousarray(b, dtype=np.float32).tobytes()
