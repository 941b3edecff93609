"""The CUDA build and its Python wrappers, checked on the CPU (no GPU needed).

The compiled module's PTX (no FMA contraction in the noise kernels), the bindings' signatures,
and `_cuda_ops` / `noise` driving NumPy stand-ins of the bindings on raw host addresses: argument
order, shapes, the rank-major factor layout, one key upload per generation's noise. The kernels
themselves run on the CPU in test_cuda_emulation.py and on a GPU in test_cuda.py.
"""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eggroll_np import _cuda_ops, _ext, dispatch, lowrank, noise

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

needs_extension = pytest.mark.skipif(
    _ext.cuda is None,
    reason=f"eggroll_np._cuda was not built: {_ext.cuda_error}",
)


def _correction_reference(x, a, b, keys, coef, start, transpose):
    """start + coef[i] * (x_i @ left_k) @ right_k.T by the engine's NumPy reference, in float64."""
    left, right = (b, a) if transpose else (a, b)
    f64 = [np.asarray(v, dtype=np.float64) for v in (x, left, right, coef)]
    out = np.array(start, dtype=np.float64)
    return lowrank.correction_reference(f64[0], f64[1], f64[2], keys, f64[3], out)


def _signature(binding) -> list[str]:
    """Parameter names of a pybind11 function, from the signature line of its docstring."""
    head = binding.__doc__.splitlines()[0]
    params = head[head.index("(") + 1 : head.rindex(")")].split(",")
    return [p.split(":")[0].strip() for p in params]


@needs_extension
def test_emulated_bindings_have_the_real_signatures():
    # The plumbing tests below drive the Python wrappers against NumPy stand-ins of the
    # bindings; they only prove something if the stand-ins take the same arguments.
    for name, fake in (
        ("lowrank_correction", _EmulatedBinding.lowrank_correction),
        ("fill_normals_many", _EmulatedBinding.fill_normals_many),
    ):
        names = list(inspect.signature(fake).parameters)
        assert _signature(getattr(_ext.cuda, name)) == names, name


def _ptx_entries(path: Path) -> dict[str, str]:
    """Kernel name -> PTX body, read from the PTX that nvcc embeds in the module."""
    text = path.read_bytes().decode("latin-1").replace("\x00", "\n")
    entries = {}
    for m in re.finditer(r"\.entry (\S+)\(", text):
        entries[m.group(1)] = text[m.end() : text.find("\n}\n", m.end())]
    return entries


@needs_extension
def test_noise_kernels_are_built_without_fma_contraction():
    # nvcc fuses a*b + c into one FMA by default (-fmad=true), which rounds once instead of
    # twice: the GPU's normals would then differ from the CPU's by an ulp in some values.
    # CMakeLists.txt builds noise.cu with --fmad=false; its kernels' PTX must hold no fma.
    entries = _ptx_entries(Path(_ext.cuda.__file__))
    noise_kernels = {k: v for k, v in entries.items() if "noise_detail" in k and "normals" in k}
    if not noise_kernels:
        pytest.skip("no PTX of the noise kernels in the module (compressed fatbinary?)")
    fused = {k: v.count("fma.rn.f32") for k, v in noise_kernels.items() if "fma.rn.f32" in v}
    assert not fused, f"noise kernels with contracted multiply-adds: {fused}"
    assert all("mul.rn.f32" in v for v in noise_kernels.values())  # really the float code


# ------------------------------------- the wrapper's plumbing, on emulated device memory (anywhere)


class _EmulatedBinding:
    """`_cuda.lowrank_correction`'s contract (csrc/cuda/lowrank.cuh) in NumPy, on raw addresses."""

    @staticmethod
    def lowrank_correction(x, x_dtype, x_per_member, left, right, keys, coef, members, batch,
                           rows_left, rows_right, rank, num_keys, xa, base, out,
                           stream):  # fmt: skip
        xdt = {0: np.float32, 1: np.float16}[x_dtype]
        xs = _at(x, (members if x_per_member else 1) * batch * rows_left, xdt).astype(np.float64)
        xs = np.broadcast_to(xs.reshape(-1, batch, rows_left), (members, batch, rows_left))
        # rank-major factors: left (K, r, m), right (K, r, n)
        lf = _at(left, num_keys * rows_left * rank, np.float32).reshape(-1, rank, rows_left)
        rt = _at(right, num_keys * rows_right * rank, np.float32).reshape(-1, rank, rows_right)
        lf, rt = lf.transpose(0, 2, 1), rt.transpose(0, 2, 1)
        k, c = _at(keys, members, np.uint32), _at(coef, members, np.float32)
        o = _at(out, members * batch * rows_right, np.float32).reshape(members, batch, rows_right)
        _at(xa, members * batch * rank, np.float32)  # the scratch must be large enough
        start = o if base == 0 else _at(base, batch * rows_right, np.float32).reshape(batch, -1)
        for i in range(members):
            if k[i] >= num_keys:
                o[i] = np.nan
            else:
                o[i] = start[i] if base == 0 else start
                o[i] += c[i] * (xs[i] @ lf[k[i]]) @ rt[k[i]].T

    calls: list[str] = []

    @staticmethod
    def fill_normals_many(seed, epoch, member_keys, rows, leaves, offsets, counts, outs, stream):
        _EmulatedBinding.calls.append("fill_normals_many")
        keys = _at(member_keys, rows, np.uint32).copy()
        for leaf, offset, count, out in zip(leaves, offsets, counts, outs, strict=True):
            o = _at(out, rows * count, np.float32).reshape(rows, count)
            noise.normals_reference(seed, epoch, keys, [leaf], [offset], [o])


@settings(max_examples=40, deadline=None)
@given(
    per_member=st.booleans(),
    transpose=st.booleans(),
    use_base=st.booleans(),
    half=st.booleans(),
    rank=st.integers(1, 4),
    m=st.integers(1, 9),
    n=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_lowrank_correction_plumbing_with_emulated_binding(
    per_member, transpose, use_base, half, rank, m, n, seed
):
    # Shapes, transpose swap, base, float16 x and argument order from _cuda_ops to the binding,
    # checked without a GPU; the kernels themselves are checked by csrc/cuda/emulation and on GPUs.
    rng = np.random.default_rng(seed)
    members, batch, num_keys = 5, 2, 3
    a = rng.standard_normal((num_keys, m, rank)).astype(np.float32)
    b = rng.standard_normal((num_keys, n, rank)).astype(np.float32)
    rows_in, rows_out = (n, m) if transpose else (m, n)
    x = rng.standard_normal((members, batch, rows_in) if per_member else (batch, rows_in))
    x = x.astype(np.float16 if half else np.float32)
    keys = rng.integers(0, num_keys, members).astype(np.uint32)
    coef = rng.standard_normal(members).astype(np.float32)
    start = rng.standard_normal((members, batch, rows_out)).astype(np.float32)
    base = rng.standard_normal((batch, rows_out)).astype(np.float32)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_cuda_ops, "cupy", _FAKE_CUPY)
        mp.setattr(_cuda_ops, "is_cupy_array", lambda v: isinstance(v, _FakeDeviceArray))
        mp.setattr(_cuda_ops, "current_stream_ptr", lambda: 0)
        mp.setattr(dispatch, "require_cuda", lambda: _EmulatedBinding)
        out = _fake_asarray(np.full_like(start, np.nan) if use_base else start)
        got = _cuda_ops.lowrank_correction(
            *[_fake_asarray(v) for v in (x, a, b)], keys, coef, out, transpose=transpose,
            base=_fake_asarray(base) if use_base else None,
        )  # fmt: skip
    assert got is out
    begin = np.broadcast_to(base, start.shape) if use_base else start
    want = _correction_reference(x, a, b, keys, coef, begin, transpose)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_normals_many_on_cupy_uploads_keys_once_and_makes_one_call():
    uploads = []

    def asarray(a):
        uploads.append(np.asarray(a).copy())
        return _fake_asarray(a)

    fake_xp = types.SimpleNamespace(
        asarray=asarray, empty=lambda shape, dtype: np.empty(shape, dtype).view(_FakeDeviceArray)
    )
    requests = [(0, 0, 12), (4, 3, 5), (2, 0, 0), (1, 12, 40)] * 9
    _EmulatedBinding.calls.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(noise, "_device_xp", lambda xp: fake_xp)
        mp.setattr(_cuda_ops, "current_stream_ptr", lambda: 0)
        mp.setattr(dispatch, "require_cuda", lambda: _EmulatedBinding)
        mp.setattr(_ext, "cuda", _EmulatedBinding)
        got = noise.normals_many(9, 3, [0, 5, 7], requests, xp="cupy")
    assert _EmulatedBinding.calls == ["fill_normals_many"]
    assert len(uploads) == 1
    np.testing.assert_array_equal(uploads[0], [0, 5, 7])
    for (leaf, offset, count), g in zip(requests, got, strict=True):
        want = noise.normals_batch(9, leaf, [0, 5, 7], 3, count, offset)
        np.testing.assert_array_equal(np.asarray(g), want)


@pytest.mark.parametrize("rank", [1, 2, 5])
def test_cupy_factors_are_rank_major_and_reach_the_kernels_without_a_copy(rank):
    a = np.arange(3 * 4 * rank, dtype=np.float32).reshape(3, 4 * rank)
    b = -np.arange(3 * 6 * rank, dtype=np.float32).reshape(3, 6 * rank)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(noise, "is_cupy_array", lambda v: True)
        A, B = noise.as_factors(a, b, (4, 6), rank)
        mp.setattr(_cuda_ops, "cupy", _FAKE_CUPY)
        left = _cuda_ops.rank_major(A)
    np.testing.assert_array_equal(A, a.reshape(3, 4, rank))  # the contract's values
    np.testing.assert_array_equal(B, b.reshape(3, 6, rank))
    assert A.transpose(0, 2, 1).flags.c_contiguous
    assert np.shares_memory(left, A)  # a view: no per-call transposing copy
    np.testing.assert_array_equal(left, a.reshape(3, 4, rank).transpose(0, 2, 1))
