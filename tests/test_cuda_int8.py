"""The CuPy wrappers of the integer kernels (`eggroll_np._cuda_int8`): their plumbing on emulated
device memory (anywhere), and the kernels on a GPU against the C++ core, bit for bit."""

from __future__ import annotations

import types

import numpy as np
import pytest

from eggroll_np import _cuda_int8, _ext, dispatch
from eggroll_np.backend import cupy

from .fake_cupy import FAKE_CUPY as _FAKE_CUPY
from .fake_cupy import at as _at
from .fake_cupy import fake_asarray as _fake_asarray
from .test_core_int8 import i8

core = _ext.core
pytestmark = pytest.mark.skipif(core is None, reason=f"C++ core not built: {_ext.core_error}")


def _view(ptr, shape, dtype):
    return None if ptr == 0 else _at(ptr, int(np.prod(shape)), dtype).reshape(shape)


class _EmulatedInt8:
    """`_cuda`'s int8 bindings (csrc/cuda/int8.cuh) on raw host addresses, computed by _core."""

    @staticmethod
    def int8_packed_rows(rows, k):
        return -(-rows // 16) * 16 * (-(-k // 32) * 32)

    @staticmethod
    def int8_packed_cols(cols, k):
        return -(-cols // 8) * 8 * (-(-k // 32) * 32)

    @staticmethod
    def int8_gemm(x, w, out, M, K, N, work_a, work_b, _s):
        assert work_a
        assert work_b
        core.gemm_s8s8s32(
            _view(x, (M, K), np.int8), _view(w, (K, N), np.int8), _view(out, (M, N), np.int32)
        )

    @staticmethod
    def int8_linear(
        x,
        w,
        a,
        m,
        out,
        N,
        B,
        n,
        X,
        w_pm,
        b,
        K,
        r,
        keys,
        signs,
        lr_shift,
        bias,
        bias_pm,
        bias_noise,
        bias_shift,
        out_shift,
        relu,
        wa,
        wb,
        wxa,
        _s,
    ):
        assert wa
        assert wb
        assert wxa
        core.int8_linear(
            _view(x, (X, B, m), np.int8),
            _view(w, (N, m, n) if w_pm else (m, n), np.int8),
            _view(out, (N, B, n), np.int8),
            _view(a, (K, m, r), np.int8),
            _view(b, (K, n, r), np.int8),
            _view(keys, (N,), np.uint32),
            _view(signs, (N,), np.int8),
            lr_shift,
            _view(bias, (N, n) if bias_pm else (n,), np.int8),
            _view(bias_noise, (K, n), np.int8),
            bias_shift,
            out_shift,
            relu,
        )

    @staticmethod
    def int8_epilogue(
        out,
        acc,
        acc_pm,
        xa,
        xa_rows,
        count,
        right,
        K,
        r,
        keys,
        signs,
        bias,
        bias_pm,
        shift_lr,
        shift_out,
        relu,
        N,
        B,
        n,
        _s,
    ):
        core.int8_epilogue(
            _view(out, (N, B, n), np.int8),
            _view(acc, (N, B, n) if acc_pm else (B, n), np.int32),
            _view(xa, (count, B, r), np.int32),
            _view(xa_rows, (N,), np.uint32),
            _view(right, (K, n, r), np.int8),
            _view(keys, (N,), np.uint32),
            _view(signs, (N,), np.int8),
            _view(bias, (N, n) if bias_pm else (n,), np.int8),
            shift_lr,
            shift_out,
            relu,
        )

    @staticmethod
    def int8_xa(x, X, a, keys, N, K, B, m, r, xa, _s):
        _view(xa, (N, B, r), np.int32)[...] = core.int8_xa(
            _view(x, (X, B, m), np.int8), _view(a, (K, m, r), np.int8), _view(keys, (N,), np.uint32)
        )

    @staticmethod
    def int8_contract(a, b, c, K, m, n, r, z, q, tau, q_out, wa, wb, _s):
        assert wa
        assert wb
        args = [_view(a, (K, m, r), np.int8), _view(b, (K, n, r), np.int8), _view(c, (K,), np.int8)]
        if q:
            _view(q_out, (m, n), np.int8)[...] = core.int8_update(
                _view(q, (m, n), np.int8), *args, tau
            )
        else:
            _view(z, (m, n), np.int32)[...] = core.int8_contract(*args)


@pytest.fixture
def emulated(monkeypatch):
    fake = types.SimpleNamespace(**vars(_FAKE_CUPY))
    monkeypatch.setattr(_cuda_int8, "cupy", fake)
    monkeypatch.setattr(_cuda_int8, "current_stream_ptr", lambda: 0)
    monkeypatch.setattr(dispatch, "require_cuda", lambda: _EmulatedInt8)
    return _fake_asarray


def _layer_case(rng, shared_x=False, w_pm=False, bias_kind="noise"):
    N, B, m, n, r, K = 6, 2, 37, 21, 4, 3
    x = i8(rng, (1 if shared_x else N, B, m))
    w = i8(rng, (N, m, n) if w_pm else (m, n), lo=-127)
    kw = dict(
        a=i8(rng, (K, m, r), lo=-127),
        b=i8(rng, (K, n, r), lo=-127),
        keys=rng.integers(0, K, N).astype(np.uint32),
        signs=np.array([1, -1] * 3, np.int8),
        lr_shift=7,
        out_shift=5,
        relu=True,
    )
    if bias_kind == "noise":
        kw.update(bias=i8(rng, n, lo=-127), bias_noise=i8(rng, (K, n), lo=-127), bias_shift=2)
    elif bias_kind == "member":
        kw.update(bias=i8(rng, (N, n), lo=-127))
    return x, w, np.zeros((N, B, n), np.int8), kw


@pytest.mark.parametrize(
    ("shared_x", "w_pm", "bias_kind"),
    [(True, False, "noise"), (False, True, "member"), (False, False, "none")],
)
def test_wrappers_pass_what_the_kernels_expect(emulated, shared_x, w_pm, bias_kind):
    rng = np.random.default_rng(3)
    x, w, out, kw = _layer_case(rng, shared_x, w_pm, bias_kind)
    want = out.copy()
    core.int8_linear(x, w, want, **kw)
    got = emulated(out)
    dev = {k: emulated(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    _cuda_int8.int8_linear(emulated(x), emulated(w), got, **dev)
    np.testing.assert_array_equal(np.asarray(got), want)

    rows, w0 = x.reshape(-1, x.shape[2]), w if w.ndim == 2 else w[0]
    got = _cuda_int8.gemm_s8s8s32(emulated(rows), emulated(w0))
    np.testing.assert_array_equal(np.asarray(got), rows.astype(np.int64) @ w0)
    xa = _cuda_int8.int8_xa(emulated(x), dev["a"], dev["keys"])
    np.testing.assert_array_equal(np.asarray(xa), core.int8_xa(x, kw["a"], kw["keys"]))

    a, b = kw["a"], kw["b"]
    c = np.array([1, 0, -1], np.int8)
    q = i8(rng, (a.shape[1], b.shape[1]), lo=-127)
    np.testing.assert_array_equal(
        np.asarray(_cuda_int8.int8_contract(emulated(a), emulated(b), emulated(c))),
        core.int8_contract(a, b, c),
    )
    np.testing.assert_array_equal(
        np.asarray(_cuda_int8.int8_update(emulated(q), emulated(a), emulated(b), emulated(c), 900)),
        core.int8_update(q, a, b, c, 900),
    )


def test_epilogue_wrapper(emulated):
    rng = np.random.default_rng(4)
    N, B, n, K, r = 4, 3, 10, 2, 1
    acc = rng.integers(-(2**20), 2**20, (B, n)).astype(np.int32)
    xa = rng.integers(-(2**12), 2**12, (K, B, r)).astype(np.int32)
    right = i8(rng, (K, n, r), lo=-127)
    keys = np.array([0, 0, 1, 1], np.uint32)
    signs = np.array([1, -1, 1, -1], np.int8)
    bias = i8(rng, n, lo=-127)
    want = np.zeros((N, B, n), np.int8)
    core.int8_epilogue(want, acc, xa, keys, right, keys, signs, bias, 3, 8, False)
    got = emulated(np.zeros_like(want))
    _cuda_int8.int8_epilogue(
        got, *[emulated(v) for v in (acc, xa, keys, right, keys, signs, bias)], 3, 8, False
    )
    np.testing.assert_array_equal(np.asarray(got), want)


def test_wrappers_reject_bad_arguments(emulated):
    x = emulated(np.zeros((2, 1, 5), np.int8))
    w = emulated(np.zeros((5, 3), np.int8))
    out = emulated(np.zeros((2, 1, 3), np.int8))
    with pytest.raises(TypeError, match="x must be a 3-D int8"):
        _cuda_int8.int8_linear(emulated(np.zeros((2, 1, 5), np.float32)), w, out)
    with pytest.raises(ValueError, match="w must have shape"):
        _cuda_int8.int8_linear(x, emulated(np.zeros((3, 5), np.int8)), out)
    with pytest.raises(ValueError, match="keys are needed"):
        _cuda_int8.int8_linear(
            x,
            w,
            out,
            emulated(np.zeros((1, 5, 1), np.int8)),
            emulated(np.zeros((1, 3, 1), np.int8)),
        )
    with pytest.raises(ValueError, match="out_shift must be in"):
        _cuda_int8.int8_linear(x, w, out, out_shift=63)
    with pytest.raises(ValueError, match="K is 131072, above 131071"):
        _cuda_int8.gemm_s8s8s32(
            emulated(np.zeros((1, 131072), np.int8)), emulated(np.zeros((131072, 1), np.int8))
        )


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("shared_x", "w_pm", "bias_kind"),
    [(True, False, "noise"), (False, True, "member"), (False, False, "none")],
)
def test_int8_on_gpu_matches_core(shared_x, w_pm, bias_kind):
    rng = np.random.default_rng(5)
    x, w, out, kw = _layer_case(rng, shared_x, w_pm, bias_kind)
    want = out.copy()
    core.int8_linear(x, w, want, **kw)
    got = cupy.asarray(out)
    dev = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    _cuda_int8.int8_linear(cupy.asarray(x), cupy.asarray(w), got, **dev)
    np.testing.assert_array_equal(cupy.asnumpy(got), want)
    a = i8(rng, (300, 1000), lo=-128)
    b = i8(rng, (1000, 257), lo=-128)
    np.testing.assert_array_equal(
        cupy.asnumpy(_cuda_int8.gemm_s8s8s32(cupy.asarray(a), cupy.asarray(b))),
        core.gemm_s8s8s32(a, b),
    )
    fa, fb = kw["a"], kw["b"]
    c = np.array([1, 0, -1], np.int8)
    q = i8(rng, (fa.shape[1], fb.shape[1]), lo=-127)
    np.testing.assert_array_equal(
        cupy.asnumpy(_cuda_int8.int8_update(*map(cupy.asarray, (q, fa, fb, c)), 900)),
        core.int8_update(q, fa, fb, c, 900),
    )
