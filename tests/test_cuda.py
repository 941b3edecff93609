"""CUDA backend: extension loading and no-GPU errors (everywhere); kernels vs NumPy (GPU only)."""

from __future__ import annotations

import contextlib
import ctypes
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import _cuda_ops, _ext, _reference, gpu_bench, lowrank, noise, tree
from eggroll_np.backend import cupy, to_numpy

NO_DEVICE = r"no CUDA device"
needs_extension = pytest.mark.skipif(
    _ext.cuda is None, reason=f"eggroll_np._cuda was not built: {_ext.cuda_error}"
)
without_gpu = pytest.mark.skipif(
    _ext.cuda_device_count() > 0, reason="checks the no-GPU error path; this machine has a GPU"
)
GPU_SETTINGS = settings(max_examples=25, deadline=None)


# ---------------------------------------------------------------- everywhere (no GPU needed)


@needs_extension
def test_extension_loads_and_counts_devices():
    assert callable(_ext.cuda.lowrank_correction)
    assert callable(_ext.cuda.fill_normals)
    count = _ext.cuda.device_count()
    assert isinstance(count, int)
    assert count >= 0
    assert _ext.cuda_device_count() == count
    if count == 0 or cupy is None:
        assert not _cuda_ops.gpu_available()


@needs_extension
@without_gpu
def test_extension_calls_report_no_device():
    with pytest.raises(RuntimeError, match=NO_DEVICE):
        _ext.cuda.device_info(0)
    # The launch itself fails before any pointer is touched, so null pointers are safe here.
    with pytest.raises(RuntimeError, match=NO_DEVICE):
        _ext.cuda.fill_normals(0, 0, 0, 0, 0, 1, 4, 0, 0)
    with pytest.raises(RuntimeError, match=NO_DEVICE):
        _ext.cuda.lowrank_correction(0, 0, False, 0, 0, 0, 0, 2, 1, 4, 4, 1, 1, 0, 0, 0, 0)


@without_gpu
def test_cuda_ops_report_no_device():
    x = np.zeros((1, 4), np.float32)
    a = np.zeros((1, 4, 1), np.float32)
    out = np.zeros((2, 1, 4), np.float32)
    with pytest.raises(RuntimeError, match=NO_DEVICE):
        _cuda_ops.require_device()
    with pytest.raises(RuntimeError, match=NO_DEVICE):
        _cuda_ops.lowrank_correction(x, a, a, [0, 0], [1.0, 1.0], out)


@without_gpu
def test_noise_on_cupy_without_device_is_a_clear_error():
    if cupy is None:
        pytest.skip("CuPy is not installed")
    # noise.py asks the extension before CuPy allocates: the message says why no device is
    # usable (no GPU/driver, or a build without the CUDA extension).
    either = f"{NO_DEVICE}|built without its CUDA extension"
    with pytest.raises(RuntimeError, match=either):
        noise.normals(0, 0, 0, 0, 8, xp="cupy")


def test_gpu_bench_times_every_generation_with_fresh_noise():
    setup = types.SimpleNamespace(
        params=[np.zeros((4, 3), np.float32)], size=4, sigma=0.1, rank=1, seed=0
    )
    next_state = gpu_bench.fresh_generation_states(setup)
    first = next_state()
    x = np.ones((1, 4), np.float32)
    a = egg.ask(setup.params, first).matmul(x, "0")
    second = next_state()
    assert second.generation == first.generation + 1
    assert not np.array_equal(egg.ask(setup.params, second).matmul(x, "0"), a)


def test_gpu_bench_times_the_engines_population_path_on_the_reference_workload():
    # The same plumbing as on a GPU, on NumPy arrays: the forward is the engine's Population
    # over the shared reference MLP, and "cached" evaluates the last population again.
    from eggroll_np.workloads import reference

    w = reference.WORKLOADS["sup"].scaled(16, 8)
    x = reference.make_inputs(w)
    setup = gpu_bench.GpuSetup(w, reference.make_params(w), x, reference.inference_rows(w, x))
    out = gpu_bench.population_forward(setup)
    pop = egg.ask(setup.params, gpu_bench.engine_state(setup))
    np.testing.assert_array_equal(out, reference.population_forward(pop, x, len(w.sizes) - 1))
    first = setup.population
    np.testing.assert_array_equal(gpu_bench.population_forward(setup, regenerate=False), out)
    assert setup.population is first
    assert not np.array_equal(gpu_bench.population_forward(setup), out)  # next generation
    assert gpu_bench.inference(setup).shape == (8 * w.rows, w.sizes[-1])
    params, state = gpu_bench.generation(setup, gpu_bench.engine_state(setup))
    assert state.generation == 1


@without_gpu
def test_gpu_bench_without_device_says_so_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert gpu_bench.main(["--out", str(out)]) == 2
    assert "nothing measured: no CUDA device" in capsys.readouterr().err
    assert not out.exists()


def test_xp_fixture_gives_working_backend(xp):
    a = xp.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(to_numpy(a.sum(axis=0)), [3.0, 5.0, 7.0])


# ---------------------------------------------------------------- noise on the GPU


uint32s = st.integers(0, 2**32 - 1)


@pytest.mark.gpu
@GPU_SETTINGS
@given(
    ctr=st.lists(st.tuples(uint32s, uint32s, uint32s, uint32s), min_size=1, max_size=40),
    key=st.tuples(uint32s, uint32s),
)
def test_philox_blocks_identical_to_cpu(ctr, key):
    counters = np.array(ctr, dtype=np.uint32)
    k = np.array(key, dtype=np.uint32)
    gpu = noise.philox4x32_10(cupy.asarray(counters), k)
    np.testing.assert_array_equal(cupy.asnumpy(gpu), _reference.philox4x32_10(counters, k))
    np.testing.assert_array_equal(cupy.asnumpy(gpu), noise.philox4x32_10(counters, k))


@pytest.mark.gpu
def test_philox_known_answers_on_gpu():
    counters = np.array(
        [[0, 0, 0, 0], [0xFFFFFFFF] * 4, [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344]],
        dtype=np.uint32,
    )
    keys = [(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (0xA4093822, 0x299F31D0)]
    want = [
        [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8],
        [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ]
    for c, k, w in zip(counters, keys, want, strict=True):
        got = noise.philox4x32_10(cupy.asarray(c[None]), np.array(k, dtype=np.uint32))
        np.testing.assert_array_equal(cupy.asnumpy(got)[0], np.array(w, dtype=np.uint32))


@pytest.mark.gpu
@GPU_SETTINGS
@given(
    seed=st.integers(0, 2**64 - 1),
    leaf=uint32s,
    keys=st.lists(uint32s, min_size=1, max_size=5),
    epoch=uint32s,
    count=st.integers(0, 300),
    offset=st.integers(0, 2**34 - 301),
)
def test_normals_match_cpu_and_reference(seed, leaf, keys, epoch, count, offset):
    # Offsets/counts not divisible by 4 take the kernel's lane-by-lane path, others the float4 one.
    gpu = cupy.asnumpy(noise.normals_batch(seed, leaf, keys, epoch, count, offset, xp="cupy"))
    cpu = noise.normals_batch(seed, leaf, keys, epoch, count, offset)
    assert gpu.dtype == np.float32
    assert gpu.shape == (len(keys), count)
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-5)
    for row, k in zip(gpu, keys, strict=True):
        ref = _reference.normals(seed, leaf, k, epoch, count, offset)
        np.testing.assert_allclose(row, ref, rtol=0, atol=1e-5)


@pytest.mark.gpu
def test_normals_long_row_and_many_rows():
    # One long aligned row (grid-stride over blocks) and more rows than one grid column holds.
    long_gpu = cupy.asnumpy(noise.normals(7, 1, 3, 2, 1 << 20, xp="cupy"))
    np.testing.assert_allclose(long_gpu, noise.normals(7, 1, 3, 2, 1 << 20), atol=1e-5, rtol=0)
    keys = np.arange(70_000, dtype=np.uint32)
    many = cupy.asnumpy(noise.normals_batch(9, 0, keys, 0, 6, 2, xp="cupy"))
    np.testing.assert_allclose(many, noise.normals_batch(9, 0, keys, 0, 6, 2), atol=1e-5, rtol=0)


@pytest.mark.gpu
def test_factors_match_cpu():
    a_g, b_g = noise.factors(3, 2, [0, 1, 5], 4, (33, 17), 3, xp="cupy")
    a_c, b_c = noise.factors(3, 2, [0, 1, 5], 4, (33, 17), 3)
    np.testing.assert_allclose(cupy.asnumpy(a_g), a_c, atol=1e-5, rtol=0)
    np.testing.assert_allclose(cupy.asnumpy(b_g), b_c, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- the fused low-rank correction


def _correction_reference(x, a, b, keys, coef, start, transpose):
    """start + coef[i] * (x_i @ left_k) @ right_k.T by the engine's NumPy reference, in float64."""
    left, right = (b, a) if transpose else (a, b)
    f64 = [np.asarray(v, dtype=np.float64) for v in (x, left, right, coef)]
    out = np.array(start, dtype=np.float64)
    return lowrank.correction_reference(f64[0], f64[1], f64[2], keys, f64[3], out)


@pytest.mark.gpu
@pytest.mark.parametrize("per_member", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("rank", [1, 3, 9])
@pytest.mark.parametrize(("m", "n"), [(37, 20), (64, 13), (5, 3)])
@pytest.mark.parametrize("use_base", [False, True])
def test_lowrank_correction_matches_numpy(per_member, transpose, rank, m, n, use_base):
    rng = np.random.default_rng(rank * 1000 + m + n)
    members, batch, num_keys = 6, 3, 4
    a = rng.standard_normal((num_keys, m, rank)).astype(np.float32)
    b = rng.standard_normal((num_keys, n, rank)).astype(np.float32)
    rows_in, rows_out = (n, m) if transpose else (m, n)
    shape_x = (members, batch, rows_in) if per_member else (batch, rows_in)
    x = rng.standard_normal(shape_x).astype(np.float32)
    keys = np.array([0, 0, 3, 3, 1, 2], dtype=np.uint32)
    coef = rng.standard_normal(members).astype(np.float32)
    start = rng.standard_normal((members, batch, rows_out)).astype(np.float32)
    base = rng.standard_normal((batch, rows_out)).astype(np.float32)
    out = cupy.asarray(np.zeros_like(start) if use_base else start)
    got = _cuda_ops.lowrank_correction(
        cupy.asarray(x),
        cupy.asarray(a),
        cupy.asarray(b),
        cupy.asarray(keys),
        coef,
        out,
        transpose=transpose,
        base=cupy.asarray(base) if use_base else None,
    )
    assert got is out
    begin = np.broadcast_to(base, start.shape) if use_base else start
    want = _correction_reference(x, a, b, keys, coef, begin, transpose)
    np.testing.assert_allclose(cupy.asnumpy(out), want, rtol=1e-5, atol=1e-4)


@pytest.mark.gpu
def test_lowrank_correction_float16_input_and_large_rows():
    rng = np.random.default_rng(0)
    members, m, n = 300, 1024, 512
    a = rng.standard_normal((members // 2, m, 1)).astype(np.float32)
    b = rng.standard_normal((members // 2, n, 1)).astype(np.float32)
    x = rng.standard_normal((members, 1, m)).astype(np.float16)
    keys = noise.member_keys(members)
    coef = 0.01 * noise.signs(members)
    out = cupy.zeros((members, 1, n), dtype=np.float32)
    _cuda_ops.lowrank_correction(cupy.asarray(x), cupy.asarray(a), cupy.asarray(b), keys, coef, out)
    want = _correction_reference(x, a, b, keys, coef, np.zeros((members, 1, n)), False)
    np.testing.assert_allclose(cupy.asnumpy(out), want, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_lowrank_correction_bad_device_key_gives_nan_rows():
    a = cupy.ones((2, 4, 1), dtype=np.float32)
    x = cupy.ones((1, 4), dtype=np.float32)
    out = cupy.zeros((3, 1, 4), dtype=np.float32)
    keys = cupy.asarray(np.array([0, 7, 1], dtype=np.uint32))
    _cuda_ops.lowrank_correction(x, a, a, keys, np.ones(3, np.float32), out)
    got = cupy.asnumpy(out)
    assert np.isnan(got[1]).all()
    np.testing.assert_allclose(got[[0, 2]], 4.0)


@pytest.mark.gpu
def test_lowrank_correction_validation_names_the_argument():
    a = cupy.ones((2, 4, 1), dtype=np.float32)
    x = cupy.ones((1, 4), dtype=np.float32)
    out = cupy.zeros((2, 1, 4), dtype=np.float32)
    before = out.copy()
    strided = cupy.zeros((2, 4, 1), dtype=np.float32).transpose(0, 2, 1)
    cases = [
        (TypeError, "x must be a cupy.ndarray", dict(x=np.ones((1, 4), np.float32))),
        (TypeError, "A must have dtype float32", dict(A=a.astype(np.float64))),
        (ValueError, "x must have shape", dict(x=cupy.ones((1, 5), np.float32))),
        (ValueError, "out must be C-contiguous", dict(out=strided)),
        (ValueError, "keys must be in", dict(keys=[0, 2])),
        (ValueError, "coef must have shape", dict(coef=[1.0])),
        (TypeError, "keys must be integers", dict(keys=[0.5, 1.0])),
        (ValueError, "base must have shape", dict(base=cupy.ones((2, 4), np.float32))),
    ]
    for exc, msg, change in cases:
        args = dict(x=x, A=a, B=a, keys=[0, 1], coef=[1.0, 1.0], out=out) | change
        with pytest.raises(exc, match=msg):
            _cuda_ops.lowrank_correction(**args)
    np.testing.assert_array_equal(cupy.asnumpy(out), cupy.asnumpy(before))


# ------------------------------------- the wrapper's plumbing, on emulated device memory (anywhere)


class _FakeDeviceArray(np.ndarray):
    """Host memory posing as a CuPy array: `.data.ptr` is its address, the device is 0."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)

    @property
    def device(self):
        return types.SimpleNamespace(id=0)


def _fake_asarray(a):
    if isinstance(a, _FakeDeviceArray):
        return a
    return np.array(a, order="C").view(_FakeDeviceArray)  # an upload copies, like cupy.asarray


def _fake_contiguous(a):
    return a if a.flags.c_contiguous else np.array(a, order="C").view(_FakeDeviceArray)


_FAKE_CUPY = types.SimpleNamespace(
    asarray=_fake_asarray,
    ascontiguousarray=_fake_contiguous,
    empty=lambda shape, dtype: np.empty(shape, dtype).view(_FakeDeviceArray),
    cuda=types.SimpleNamespace(Device=lambda device_id: contextlib.nullcontext()),
)


def _at(ptr, count, dtype):
    """A writeable NumPy view of `count` values of `dtype` at address `ptr`."""
    dtype = np.dtype(dtype)
    if count == 0:
        return np.empty(0, dtype)
    raw = (ctypes.c_ubyte * (count * dtype.itemsize)).from_address(ptr)
    return np.ctypeslib.as_array(raw).view(dtype)


class _EmulatedBinding:
    """`_cuda.lowrank_correction`'s contract (csrc/cuda/lowrank.cuh) in NumPy, on raw addresses."""

    @staticmethod
    def lowrank_correction(x, x_dtype, x_per_member, left, right, keys, coef, members, batch,
                           rows_left, rows_right, rank, num_keys, xa, base, out, _s):  # fmt: skip
        xdt = {0: np.float32, 1: np.float16}[x_dtype]
        xs = _at(x, (members if x_per_member else 1) * batch * rows_left, xdt).astype(np.float64)
        xs = np.broadcast_to(xs.reshape(-1, batch, rows_left), (members, batch, rows_left))
        lf = _at(left, num_keys * rows_left * rank, np.float32).reshape(-1, rows_left, rank)
        rt = _at(right, num_keys * rows_right * rank, np.float32).reshape(-1, rows_right, rank)
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
        mp.setattr(_cuda_ops, "require_device", lambda: _EmulatedBinding)
        out = _fake_asarray(np.full_like(start, np.nan) if use_base else start)
        got = _cuda_ops.lowrank_correction(
            *[_fake_asarray(v) for v in (x, a, b)], keys, coef, out, transpose=transpose,
            base=_fake_asarray(base) if use_base else None,
        )  # fmt: skip
    assert got is out
    begin = np.broadcast_to(base, start.shape) if use_base else start
    want = _correction_reference(x, a, b, keys, coef, begin, transpose)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- the engine on CuPy trees


def _engine():
    if not all(hasattr(egg, name) for name in ("init", "ask", "tell", "save", "load")):
        pytest.skip("the engine API (egg.init/ask/tell/save/load) is not on this branch")
    return egg


def _params(rng):
    return {
        "layers": [
            {
                "W": rng.standard_normal((12, 10)).astype(np.float32) * 0.3,
                "b": np.zeros(10, np.float32),
            },
            {
                "W": rng.standard_normal((10, 3)).astype(np.float32) * 0.3,
                "b": np.zeros(3, np.float32),
            },
        ]
    }


def _to_gpu(params):
    return tree.map_leaves(cupy.asarray, params)


def _assert_trees_close(gpu_tree, cpu_tree, rtol=1e-5):
    gpu_leaves, cpu_leaves = tree.flatten(gpu_tree)[0], tree.flatten(cpu_tree)[0]
    for g, c in zip(gpu_leaves, cpu_leaves, strict=True):
        assert type(g) is cupy.ndarray
        np.testing.assert_allclose(cupy.asnumpy(g), c, rtol=rtol, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("transpose", [False, True])
def test_population_matmul_gpu_matches_cpu(transpose):
    e = _engine()
    rng = np.random.default_rng(1)
    params = _params(rng)
    kwargs = dict(population=8, sigma=0.1, rank=2, seed=5)
    pop_c = e.ask(params, e.init(params, **kwargs))
    params_g = _to_gpu(params)
    pop_g = e.ask(params_g, e.init(params_g, **kwargs))
    rows = 10 if transpose else 12
    for x in (rng.standard_normal((4, rows)), rng.standard_normal((8, 4, rows))):
        x = x.astype(np.float32)
        got = pop_g.matmul(cupy.asarray(x), "layers/0/W", transpose=transpose)
        want = pop_c.matmul(x, "layers/0/W", transpose=transpose)
        assert type(got) is cupy.ndarray
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        cupy.asnumpy(pop_g.perturbed("layers/0/b")), pop_c.perturbed("layers/0/b"), atol=1e-6
    )


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_full_step_gpu_matches_cpu(optimizer, tmp_path):
    e = _engine()
    rng = np.random.default_rng(2)
    params = _params(rng)
    kwargs = dict(population=16, sigma=0.05, lr=0.1, rank=1, seed=11, optimizer=optimizer)
    state_c = e.init(params, **kwargs)
    params_g = _to_gpu(params)
    state_g = e.init(params_g, **kwargs)
    for _ in range(3):
        fitness = rng.standard_normal(16).astype(np.float32)
        e.ask(params_g, state_g)
        params, state_c = e.tell(params, fitness, state_c)
        params_g, state_g = e.tell(params_g, cupy.asarray(fitness), state_g)
    _assert_trees_close(params_g, params)
    path = tmp_path / "gpu.npz"
    e.save(path, params_g, state_g)
    loaded, state_l = e.load(path)
    assert state_l.generation == state_g.generation
    np.testing.assert_array_equal(
        to_numpy(loaded["layers"][0]["W"]), cupy.asnumpy(params_g["layers"][0]["W"])
    )


@pytest.mark.gpu
def test_mixed_numpy_and_cupy_leaves_are_rejected():
    e = _engine()
    params = {"a": np.zeros((3, 2), np.float32), "b": cupy.zeros(2, dtype=np.float32)}
    with pytest.raises((TypeError, ValueError), match="(?i)mixed"):
        e.init(params, population=4)
