"""C++ low-rank kernels (eggroll_np._core) against a dense NumPy loop."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eggroll_np import _ext

core = _ext.core
pytestmark = pytest.mark.skipif(core is None, reason=f"C++ core not built: {_ext.core_error}")


def _case(seed, members, keys_n, rows, m, n, r):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    x = rng.standard_normal((members, rows, m), dtype=f32)
    a = rng.standard_normal((keys_n, m, r), dtype=f32)
    b = rng.standard_normal((keys_n, n, r), dtype=f32)
    keys = rng.integers(0, keys_n, members).astype(np.uint32)
    coef = rng.standard_normal(members).astype(f32)
    out = rng.standard_normal((members, rows, n), dtype=f32)
    return x, a, b, keys, coef, out


dims = st.tuples(
    st.integers(0, 2**31),  # seed
    st.integers(1, 12),  # members
    st.integers(1, 5),  # keys
    st.integers(1, 9),  # rows (>= 4: the kernels transpose the factors once per member)
    st.integers(1, 70),  # m
    st.integers(1, 70),  # n
    st.sampled_from([1, 2, 3, 8, 65]),  # rank (65 crosses the kernel's 64-wide tile)
)


@settings(max_examples=40, deadline=None)
@given(d=dims)
def test_lowrank_correction_matches_dense(d):
    x, a, b, keys, coef, out = _case(*d)
    expected = out.astype(np.float64)
    for i, k in enumerate(keys):
        expected[i] += coef[i] * (x[i].astype(np.float64) @ a[k]) @ b[k].T
    core.lowrank_correction(x, a, b, keys, coef, out)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.sqrt(d[4] * d[6]))


@settings(max_examples=40, deadline=None)
@given(d=dims)
def test_lowrank_expand_matches_dense(d):
    x, a, b, keys, coef, out = _case(*d)
    xa = np.einsum("irm,imq->irq", x, a[keys]).astype(np.float32)
    rows = np.arange(len(keys), dtype=np.uint32)
    expected = out.astype(np.float64)
    for i, k in enumerate(keys):
        expected[i] += coef[i] * xa[i].astype(np.float64) @ b[k].T
    core.lowrank_expand(xa, rows, b, keys, coef, out)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.sqrt(d[6]))


def test_lowrank_kernels_reject_bad_buffers():
    x, a, b, keys, coef, out = _case(0, 4, 2, 3, 5, 6, 2)
    with pytest.raises(TypeError, match="out"):
        core.lowrank_correction(x, a, b, keys, coef, out.astype(np.float64))
    with pytest.raises(TypeError, match="out"):
        core.lowrank_correction(x, a, b, keys, coef, out[:, :, ::2])
    with pytest.raises(ValueError, match="keys"):
        core.lowrank_correction(x, a, b, keys + 5, coef, out)
    with pytest.raises(ValueError, match="x"):
        core.lowrank_correction(x[:, :, :4], a, b, keys, coef, out)
    with pytest.raises(ValueError, match="out"):
        core.lowrank_correction(x, a, b, keys, coef, np.zeros((4, 3, 5), np.float32))
    with pytest.raises(ValueError, match="xa_rows"):
        core.lowrank_expand(x[:, :, :2], np.array([9, 0, 0, 0], np.uint32), b, keys, coef, out)


def test_exception_in_a_worker_thread_is_a_python_error(tmp_path):
    # Each worker allocates its (rows, r) scratch: 2^40 rows of rank 2^22 cannot be allocated,
    # so every thread throws (zero-size arrays: nothing else is touched). Run in a child process:
    # an exception escaping a std::thread would abort the interpreter, not fail an assertion.
    code = """if True:
        import numpy as np
        from eggroll_np import _ext
        core = _ext.core
        core.set_num_threads(4)
        n = 1 << 18  # enough members for four threads
        x = np.zeros((n, 1 << 40, 0), np.float32)
        a = np.zeros((2, 0, 1 << 22), np.float32)
        keys, coef = np.zeros(n, np.uint32), np.ones(n, np.float32)
        try:
            core.lowrank_correction(x, a, a, keys, coef, np.zeros((n, 1 << 40, 0), np.float32))
        except (MemoryError, ValueError) as exc:
            print("raised", type(exc).__name__)
        core.set_num_threads(2)
        out = np.zeros((4, 1, 3), np.float32)
        core.lowrank_correction(np.ones((4, 1, 2), np.float32), np.ones((1, 2, 1), np.float32),
                                np.ones((1, 3, 1), np.float32), np.zeros(4, np.uint32),
                                np.ones(4, np.float32), out)
        print("still works", float(out.sum()))
    """
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, f"the process died ({done.returncode}): {done.stderr[-2000:]}"
    assert "raised" in done.stdout
    assert "still works 24.0" in done.stdout
