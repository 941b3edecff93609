"""The population layers on the GPU: CUDA epilogue kernels (host emulation here, CuPy on a GPU)."""

from __future__ import annotations

import types

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _ext, dispatch
from eggroll_np.backend import cupy

try:  # the suite runs as a package (tests/__init__.py) or from its directory
    from . import emulator as emu
except ImportError:
    import emulator as emu  # type: ignore[no-redef]

try:  # the suite runs as a package (tests/__init__.py) or from its directory
    from .fake_cupy import FAKE_CUPY as _FAKE_CUPY
    from .fake_cupy import FakeDeviceArray as _FakeDeviceArray
    from .fake_cupy import at as _at
    from .fake_cupy import fake_asarray as _fake_asarray
except ImportError:
    from fake_cupy import FAKE_CUPY as _FAKE_CUPY  # type: ignore[no-redef]
    from fake_cupy import FakeDeviceArray as _FakeDeviceArray  # type: ignore[no-redef]
    from fake_cupy import at as _at  # type: ignore[no-redef]
    from fake_cupy import fake_asarray as _fake_asarray  # type: ignore[no-redef]



def test_epilogue_kernels_in_host_emulation(tmp_path):
    # layers.cu's launch code and kernels, run thread by thread on the CPU by the one host
    # emulator (op `layers`), against double-precision loops of the documented formula (no GPU
    # needed; a GPU run is test_layers_on_gpu_match_numpy).
    if emu.skip_reason() is not None:
        pytest.skip(emu.skip_reason())
    exe = emu.build(tmp_path)
    cases = emu.Cases(tmp_path)
    cases.lines.append("layers all")
    out = cases.run(exe)
    assert "0 failure(s)" in out
    assert "FAIL" not in out
    assert out.count("ok  ") >= 100


def _params(rng):
    return {
        "W": rng.standard_normal((7, 12)).astype(np.float32),
        "b": rng.standard_normal(12).astype(np.float32),
        "K": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "c": rng.standard_normal(4).astype(np.float32),
        "E": rng.standard_normal((9, 5)).astype(np.float32),
    }


@pytest.mark.gpu
@pytest.mark.parametrize("act", [None, "relu", "gelu"])
def test_layers_on_gpu_match_numpy(act):
    rng = np.random.default_rng(0)
    params = _params(rng)
    kw = dict(population=6, rank=2, seed=3, sigma=0.2, lowrank={"K": "lowrank"})
    pop = egg.ask(params, egg.init(params, **kw))
    gparams = {k: cupy.asarray(v) for k, v in params.items()}
    gpop = egg.ask(gparams, egg.init(gparams, **kw))
    xs = [rng.standard_normal((3, 7)), rng.standard_normal((6, 3, 7))]
    for x in xs:
        x = x.astype(np.float32)
        want = pop.linear(x, "W", "b", act)
        np.testing.assert_allclose(cupy.asnumpy(gpop.linear(cupy.asarray(x), "W", "b", act)),
                                   want, rtol=1e-4, atol=1e-4)  # fmt: skip
    for x in (rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((6, 2, 3, 6, 6))):
        x = x.astype(np.float32)
        want = pop.conv2d(x, "K", "c", 2, 1, act)
        got = gpop.conv2d(cupy.asarray(x), "K", "c", 2, 1, act)
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-4, atol=1e-4)
    ids = rng.integers(0, 9, (6, 4))
    for per_member in (False, True):
        want = pop.embed(ids, "E", per_member)
        got = gpop.embed(cupy.asarray(ids), "E", per_member)
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-5, atol=1e-5)


# ------------------------- the wrappers' plumbing, on emulated device memory (anywhere)


def _strided(ptr, shape, strides):
    """A NumPy view of float32 device memory at `ptr` with element strides."""
    extent = 1 + sum((d - 1) * s for d, s in zip(shape, strides, strict=True))
    flat = _at(ptr, extent, np.float32)
    return np.lib.stride_tricks.as_strided(flat, shape, [s * 4 for s in strides])


def _act(h, code):
    from eggroll_np import epilogue

    return epilogue.apply_activation(h, code)


class _EmulatedLayers:
    """`_cuda.linear_epilogue` / `conv_epilogue`'s contract (csrc/cuda/layers.cuh) in NumPy."""

    @staticmethod
    def linear_epilogue(
        out, base, xa, xa_rows, xa_scaled, right, keys, coef, bias, bias_noise, bias_coef, act,
        members, rows, n, rank, xa_count, keys_bound, _s,
    ):  # fmt: skip
        o = _at(out, members * rows * n, np.float32).reshape(members, rows, n)
        h = (o if base == 0 else _at(base, rows * n, np.float32).reshape(rows, n)).astype(float)
        h = np.broadcast_to(h, o.shape).copy()
        k = _at(keys, members, np.uint32) if keys else np.zeros(members, np.uint32)
        if right:
            x = _at(xa, xa_count * rows * rank, np.float32).reshape(xa_count, rows, rank)
            r = _at(right, keys_bound * n * rank, np.float32).reshape(keys_bound, n, rank)
            xr = _at(xa_rows, members, np.uint32) if xa_rows else np.arange(members)
            c = np.ones(members) if xa_scaled else _at(coef, members, np.float32)
            for i in range(members):
                h[i] += c[i] * x[xr[i]] @ r[k[i]].T
        if bias:
            h += _at(bias, n, np.float32)
        if bias_noise:
            bn = _at(bias_noise, keys_bound * n, np.float32).reshape(keys_bound, n)
            h += _at(bias_coef, members, np.float32)[:, None, None] * bn[k][:, None, :]
        o[...] = _act(h, act)

    @staticmethod
    def conv_epilogue(out, src, src_stride, src_shared, a, v, v_stride, v_index, keys, coef, bias,
                      bias_noise, bias_coef, act, members, batch, channels, positions, rank,
                      v_count, keys_bound, _s):  # fmt: skip
        shape = (members, batch, channels, positions)
        o = _at(out, int(np.prod(shape)), np.float32).reshape(shape)
        s = _strided(src, (1 if src_shared else members, *shape[1:]), src_stride)
        h = np.broadcast_to(s, shape).astype(float)
        k = _at(keys, members, np.uint32) if keys else np.zeros(members, np.uint32)
        if a:
            av = _at(a, keys_bound * channels * rank, np.float32).reshape(keys_bound, channels, -1)
            vv = _strided(v, (v_count, batch, rank, positions), v_stride)
            vi, c = _at(v_index, members, np.uint32), _at(coef, members, np.float32)
            for i in range(members):
                h[i] += c[i] * np.matmul(av[k[i]][None], vv[vi[i]])
        if bias:
            h += _at(bias, channels, np.float32)[:, None]
        if bias_noise:
            bn = _at(bias_noise, keys_bound * channels, np.float32).reshape(keys_bound, channels)
            h += (_at(bias_coef, members, np.float32)[:, None] * bn[k])[:, None, :, None]
        o[...] = _act(h, act)


@pytest.fixture
def emulated(monkeypatch):
    from eggroll_np import _cuda_layers

    fake = types.SimpleNamespace(
        ndarray=_FakeDeviceArray, asarray=_fake_asarray, ascontiguousarray=_fake_contiguous_any,
        matmul=lambda p, q: np.matmul(p, q).view(_FakeDeviceArray), cuda=_FAKE_CUPY.cuda,
    )  # fmt: skip
    monkeypatch.setattr(_cuda_layers, "cupy", fake)
    monkeypatch.setattr(_cuda_layers, "current_stream_ptr", lambda: 0)
    monkeypatch.setattr(dispatch, "require_cuda", lambda: _EmulatedLayers)
    return _cuda_layers


def _fake_contiguous_any(a, dtype=None):
    a = np.asarray(a) if not isinstance(a, np.ndarray) else a
    return np.ascontiguousarray(a, dtype=dtype).view(_FakeDeviceArray)


@pytest.mark.skipif(_ext.core is None, reason="compares with eggroll_np._core")
@pytest.mark.parametrize("mode", ["x", "xa", "none"])
@pytest.mark.parametrize("act", [0, 1, 4])
def test_linear_epilogue_plumbing_with_emulated_binding(emulated, mode, act):
    rng = np.random.default_rng(act)
    N, rows, n, m, r, K = 5, 3, 6, 4, 2, 3
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    keys = np.array([0, 0, 2, 1, 2], np.uint32)
    args = dict(base=f(rows, n), x=None, a=None, xa=None, xa_rows=None, b=None, keys=keys,
                coef=f(N), bias=f(n), bias_noise=f(K, n), bias_coef=f(N), act=act)  # fmt: skip
    if mode == "x":
        args.update(base=None, x=f(N, rows, m), a=f(K, m, r), b=f(K, n, r))
    elif mode == "xa":
        args.update(xa=f(4, rows, r), xa_rows=np.array([3, 1, 0, 2, 3], np.uint32), b=f(K, n, r))
    start = f(N, rows, n)
    want = start.copy()
    _ext.core.linear_epilogue(want, **args)
    got = _fake_asarray(start)
    dev = {k: (_fake_asarray(v) if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    emulated.linear_epilogue(got, **dev)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(_ext.core is None, reason="compares with eggroll_np._core")
@pytest.mark.parametrize("shared", [True, False])
def test_conv_epilogue_plumbing_with_emulated_binding(emulated, shared):
    rng = np.random.default_rng(int(shared))
    N, Bt, Co, P, r, K = 4, 2, 3, 5, 2, 3
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    src = f(1, Bt, Co, P) if shared else f(N, Bt, P, Co).transpose(0, 1, 3, 2)
    v = f(N, Bt, P, r).transpose(0, 1, 3, 2)  # strided, as conv2d's per-member projections
    args = dict(a=f(K, Co, r), v=v, v_index=np.array([3, 1, 0, 2], np.uint32),
                keys=np.array([0, 0, 2, 1], np.uint32), coef=f(N), bias=f(Co),
                bias_noise=f(K, Co), bias_coef=f(N), act=3)  # fmt: skip
    want = np.zeros((N, Bt, Co, P), np.float32)
    _ext.core.conv_epilogue(want, src, **args)
    got = _fake_asarray(np.zeros_like(want))
    dev = {k: (_fake_asarray(v) if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    dev["v"] = v.view(_FakeDeviceArray)  # keeps its strides: the wrapper passes them on
    emulated.conv_epilogue(got, src.view(_FakeDeviceArray), **dev)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    _ext.cuda is None or _ext.cuda_device_count() > 0,
    reason="needs the CUDA extension built and no usable device",
)
def test_epilogue_entry_points_report_no_device():
    # Null pointers are never dereferenced: without a driver the launch itself fails.
    with pytest.raises(RuntimeError, match="no CUDA device"):
        _ext.cuda.linear_epilogue(0, 0, 0, 0, False, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        _ext.cuda.conv_epilogue(0, 0, [0] * 4, True, 0, 0, [0] * 4, 0, 0, 0, 0, 0, 0, 0,
                                1, 1, 1, 1, 0, 0, 0, 0)  # fmt: skip
    with pytest.raises(ValueError, match="act"):
        _ext.cuda.linear_epilogue(0, 0, 0, 0, False, 0, 0, 0, 0, 0, 0, 9, 1, 1, 1, 0, 0, 0, 0)


@pytest.mark.skipif(_ext.core is None, reason="compares with the C++ core's path")
def test_conv2d_on_the_device_runs_a_per_member_input_in_one_chunk(monkeypatch):
    # On the host a per-member conv2d runs in member chunks whose patches stay in cache (3 here);
    # on a GPU each chunk is ten-odd launches and saves nothing, so the whole population is one.
    import eggroll_np as egg
    from eggroll_np import conv

    try:
        from . import fake_cupy as fc
        from .test_cuda_plumbing import _EmulatedBinding
    except ImportError:
        import fake_cupy as fc  # type: ignore[no-redef]
        from test_cuda_plumbing import _EmulatedBinding  # type: ignore[no-redef]

    class Bindings(_EmulatedLayers):
        fill_normals_many = staticmethod(_EmulatedBinding.fill_normals_many)

    rng = np.random.default_rng(3)
    params = {"W": rng.standard_normal((16, 8, 3, 3)).astype(np.float32),
              "b": rng.standard_normal(16).astype(np.float32)}  # fmt: skip
    N = 24
    x = rng.standard_normal((N, 4, 8, 28, 28)).astype(np.float32)
    per_member = 4 * 28 * 28 * 8 * 9  # patch values a member
    assert -(-N // (conv._PATCH_VALUES // per_member)) == 3  # the host's chunks
    state = egg.init(params, population=N, rank=2, seed=1)
    want = egg.ask(params, state).conv2d(x, "W", "b", 1, 1, "relu")
    fc.install(monkeypatch, whole_numpy=True)
    monkeypatch.setattr(_ext, "cuda", Bindings)
    monkeypatch.setattr(dispatch, "require_cuda", lambda: Bindings)
    dev = {k: fc.fake_asarray(v) for k, v in params.items()}
    pop = egg.ask(dev, egg.init(dev, population=N, rank=2, seed=1))
    pop.noise.prefetch(full=True)  # the factors first: only the layer's own calls are counted
    fc.reset()
    got = pop.conv2d(fc.fake_asarray(x), "W", "b", 1, 1, "relu")
    assert fc.CALLS["gemm"] == 1  # the projection on B_k (xp.matmul), once a chunk
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
