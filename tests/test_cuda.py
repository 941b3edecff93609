"""CUDA backend on a device: kernels, noise and the engine vs the CPU (GPU only), no-GPU errors.

The CPU-side checks of the CUDA build and wrappers are in test_cuda_plumbing.py.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import _cuda_ops, _ext, _reference, dispatch, noise, tree
from eggroll_np.backend import cupy, to_numpy
from eggroll_np.benchmarks import gpu_bench
from eggroll_np.gpu import probes as gpu_probes
from eggroll_np.models import mlp

from .test_cuda_plumbing import _correction_reference

NO_DEVICE = r"no CUDA device"
needs_extension = pytest.mark.skipif(
    _ext.cuda is None,
    reason=f"eggroll_np._cuda was not built: {_ext.cuda_error}",
)
without_gpu = pytest.mark.skipif(
    _ext.cuda_device_count() > 0, reason="checks the no-GPU error path; this machine has a GPU"
)
GPU_SETTINGS = settings(max_examples=25, deadline=None)


# ---------------------------------------------------------------- everywhere (no GPU needed)


def _nvidia_gpus() -> int | None:
    """GPUs the NVIDIA kernel driver lists (/proc/driver/nvidia/gpus), None if unknowable."""
    root = Path("/proc/driver/nvidia/gpus")
    if root.is_dir():
        return sum(1 for _ in root.iterdir())
    return 0 if Path("/proc/self").is_dir() else None  # Linux without the driver: no GPU


@needs_extension
def test_device_count_agrees_with_the_driver():
    # The extension's count decides whether every GPU path is taken; it must be what the
    # kernel driver sees (0 on a machine without the driver), and CuPy must agree.
    driver = _nvidia_gpus()
    if driver is None:
        pytest.skip("cannot read the NVIDIA driver's GPU list on this platform")
    assert _ext.cuda.device_count() == driver
    assert _ext.cuda_device_count() == driver
    assert dispatch.cuda_available() == (driver > 0 and cupy is not None)


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
    with pytest.raises(RuntimeError, match=NO_DEVICE):
        _ext.cuda.fill_normals_many(0, 0, 0, 1, [0], [0], [4], [0], 0)
    with pytest.raises(RuntimeError, match=NO_DEVICE):
        _ext.cuda.philox4x32_10(0, 1, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="same length"):  # checked before any launch
        _ext.cuda.fill_normals_many(0, 0, 0, 1, [0, 1], [0], [4], [0], 0)


@without_gpu
def test_cuda_ops_report_no_device():
    x = np.zeros((1, 4), np.float32)
    a = np.zeros((1, 4, 1), np.float32)
    out = np.zeros((2, 1, 4), np.float32)
    with pytest.raises(RuntimeError, match=NO_DEVICE):
        dispatch.require_cuda()
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
    from eggroll_np.benchmarks import reference

    w = reference.WORKLOADS["sup"].scaled(16, 8)
    x = reference.make_inputs(w)
    setup = gpu_bench.GpuSetup(w, reference.make_params(w), x, reference.inference_rows(w, x))
    out = gpu_bench.population_forward(setup)
    pop = egg.ask(setup.params, gpu_bench.engine_state(setup))
    np.testing.assert_array_equal(out, mlp.population_forward(pop, x, reference.ACTIVATION))
    first = setup.population
    np.testing.assert_array_equal(gpu_bench.population_forward(setup, regenerate=False), out)
    assert setup.population is first
    assert not np.array_equal(gpu_bench.population_forward(setup), out)  # next generation
    assert gpu_bench.inference(setup).shape == (8 * w.rows, w.sizes[-1])
    params, state = gpu_bench.generation(setup, gpu_bench.engine_state(setup))
    assert state.generation == 1


def test_gpu_bench_counts_a_contraction_that_lost_the_cores_bits_as_a_failed_check():
    rows = [{"shape": "a", "core_bits": True}, {"shape": "b", "core_bits": False},
            {"shape": "c", "core_bits": None}]  # fmt: skip
    checks = gpu_bench.output_checks({"workloads": {}, "contract": rows})
    assert checks == [
        {"workload": "contract a", "ok": True},
        {"workload": "contract b", "ok": False},
    ]


def test_gpu_bench_times_generations_with_each_contraction_and_restores_the_setting(monkeypatch):
    from eggroll_np.benchmarks import gpu_contract

    seen = []

    def fresh():
        kind = os.environ[dispatch.CUDA_CONTRACT]
        return lambda: seen.append(kind)

    def fake_measure(fn, repeat):
        fn()
        return {"event_ms": 2.0 if os.environ[dispatch.CUDA_CONTRACT] == "exact" else 1.6}

    monkeypatch.setattr(gpu_contract, "measure", fake_measure)
    monkeypatch.setenv(dispatch.CUDA_CONTRACT, "cublas")
    got = gpu_contract.generation_figures(fresh, 64)
    assert seen == ["cublas", "exact"] * 3  # alternating, each timed under its own setting
    assert got["exact_over_cublas"] == pytest.approx(1.25)
    assert os.environ[dispatch.CUDA_CONTRACT] == "cublas"  # the caller's value is back
    monkeypatch.delenv(dispatch.CUDA_CONTRACT)
    gpu_contract.generation_figures(fresh, 64)
    assert dispatch.CUDA_CONTRACT not in os.environ


def test_gpu_bench_output_check_compares_with_the_cpu_path(monkeypatch):
    # On NumPy the "GPU" forward IS the CPU path: the check must pass with no error at all, and
    # fail once the device side is off (here: its weights scaled).
    from eggroll_np.benchmarks import reference

    w = reference.WORKLOADS["sup"].scaled(16, 8)
    x = reference.make_inputs(w)
    setup = gpu_bench.GpuSetup(w, reference.make_params(w), x, reference.inference_rows(w, x))
    check = gpu_bench.check_output(setup)
    assert check["ok"]
    assert check["max_error_over_scale"] == 0.0
    real = mlp.population_forward
    calls = []

    def device_side_off(pop, xs, act):  # the device forward runs first, then the CPU's
        calls.append(act)
        return real(pop, xs, act) * (1.01 if len(calls) == 1 else 1.0)

    monkeypatch.setattr(mlp, "population_forward", device_side_off)
    bad = gpu_bench.check_output(setup)
    assert not bad["ok"]
    assert bad["max_error_over_scale"] == pytest.approx(0.01, rel=1e-3)
    result = {"workloads": {"sup": [{"output_check": check}, {}], "rl": [{"output_check": bad}]}}
    assert gpu_bench.output_checks(result) == [check, bad]


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
    np.testing.assert_array_equal(gpu, cpu)  # the same float32 operations, bit for bit
    for row, k in zip(gpu, keys, strict=True):
        ref = _reference.normals(seed, leaf, k, epoch, count, offset)
        np.testing.assert_allclose(row, ref, rtol=0, atol=1e-5)


@pytest.mark.gpu
def test_normals_long_row_and_many_rows():
    # One long aligned row (grid-stride over blocks) and more rows than one grid column holds.
    long_gpu = cupy.asnumpy(noise.normals(7, 1, 3, 2, 1 << 20, xp="cupy"))
    np.testing.assert_array_equal(long_gpu, noise.normals(7, 1, 3, 2, 1 << 20))
    keys = np.arange(70_000, dtype=np.uint32)
    many = cupy.asnumpy(noise.normals_batch(9, 0, keys, 0, 6, 2, xp="cupy"))
    np.testing.assert_array_equal(many, noise.normals_batch(9, 0, keys, 0, 6, 2))


@pytest.mark.gpu
@pytest.mark.parametrize("rank", [1, 3])
def test_factors_match_cpu_bit_for_bit(rank):
    a_g, b_g = noise.factors(3, 2, [0, 1, 5], 4, (33, 17), rank, xp="cupy")
    a_c, b_c = noise.factors(3, 2, [0, 1, 5], 4, (33, 17), rank)
    np.testing.assert_array_equal(cupy.asnumpy(a_g), a_c)
    np.testing.assert_array_equal(cupy.asnumpy(b_g), b_c)
    # stored rank-major on the GPU, so the kernels read them without a copy
    for f in (a_g, b_g):
        assert _cuda_ops.rank_major(f).data.ptr == f.data.ptr


@pytest.mark.gpu
@pytest.mark.parametrize("tile", _cuda_ops.CONTRACT_TILES)
@pytest.mark.parametrize(
    ("K", "r", "m", "n"), [(300, 1, 1000, 700), (37, 4, 130, 66), (9, 1, 1, 513)]
)
def test_exact_contract_gives_the_cores_bits_on_the_gpu(tile, K, r, m, n):
    # The fixed-order kernel (csrc/cuda/contract.cu) on a real device: nvcc's code generation
    # (--fmad=false, explicit fmaf) must keep the C++ core's sequence, at every tile.
    if _ext.core is None:
        pytest.skip(f"the C++ core is not built: {_ext.core_error}")
    rng = np.random.default_rng(K + m)
    a, b = noise.factors(5, 1, list(range(K)), 2, (m, n), r, xp="cupy")  # rank-major, as a run's
    w = cupy.asarray(rng.standard_normal(K).astype(np.float32))
    got = cupy.asnumpy(_cuda_ops.contract(a, b, w, tile=tile))
    want = _ext.core.contract(cupy.asnumpy(a), cupy.asnumpy(b), cupy.asnumpy(w))
    assert got.tobytes() == want.tobytes()


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_tell_on_the_gpu_with_the_exact_contract_gives_the_cpu_bits(monkeypatch, optimizer):
    # Given the same fitness values, a CuPy tell (noise, shaping, exact contraction, the
    # optimizer: Adam's fused kernel) equals the NumPy tell bit for bit: exactness across devices.
    monkeypatch.setenv(dispatch.CUDA_CONTRACT, "exact")
    rng = np.random.default_rng(8)
    host = {"W": rng.standard_normal((300, 140)).astype(np.float32),
            "b": rng.standard_normal(140).astype(np.float32)}  # fmt: skip
    cfg = dict(population=64, rank=2, seed=2, optimizer=optimizer)
    fitness = rng.standard_normal(64)
    want, _ = egg.tell(host, fitness, egg.init(host, **cfg))
    dev = tree.map_leaves(cupy.asarray, host)
    got, _ = egg.tell(dev, fitness, egg.init(dev, **cfg))
    for k in host:
        assert cupy.asnumpy(got[k]).tobytes() == want[k].tobytes(), k


@pytest.mark.gpu
def test_normals_many_equals_one_request_at_a_time():
    requests = [(0, 0, 12), (1, 3, 5), (2, 0, 0), (0, 12, 1000)] * 10  # 40: two launches
    got = noise.normals_many(5, 2, [0, 3, 9], requests, xp="cupy")
    for (leaf, offset, count), g in zip(requests, got, strict=True):
        want = noise.normals_batch(5, leaf, [0, 3, 9], 2, count, offset)
        np.testing.assert_array_equal(cupy.asnumpy(g), want)


@pytest.mark.gpu
def test_gpu_noise_bit_identical_to_cpu_at_every_simd_level():
    report = gpu_probes.bit_check()
    assert set(report) == set(gpu_probes.simd_levels())


@pytest.mark.gpu
@pytest.mark.parametrize("probe", sorted(gpu_probes.PROBES))
def test_gpu_probe(probe):
    # Grid-stride loops at real sizes (more rows than a grid, > 2^31 values), a non-default
    # stream, misaligned views, and the engine's Population taking the _cuda path.
    gpu_probes.PROBES[probe]()


# ---------------------------------------------------------------- the fused low-rank correction


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
    # every other column (a transposed (2, 4, 1) array is C-contiguous: its odd axis has size 1)
    strided = cupy.zeros((2, 1, 8), dtype=np.float32)[:, :, ::2]
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
def test_population_chunks_on_the_gpu_read_views_of_the_populations_noise():
    e = _engine()
    rng = np.random.default_rng(3)
    params_g = _to_gpu(_params(rng))
    pop = e.ask(params_g, e.init(params_g, population=16, sigma=0.05, rank=2, seed=13))
    x = cupy.asarray(rng.standard_normal((5, 12)).astype(np.float32))

    def fitness(p):
        h = p.linear(x, "layers/0/W", "layers/0/b", "relu")
        out = p.linear(h, "layers/1/W", "layers/1/b")
        return -(out * out).mean(axis=(1, 2))

    want = cupy.asnumpy(fitness(pop))
    A = pop.noise.factors(0)[0]
    for members, sub in pop.chunks(5):
        a = sub.noise.factors(0)[0]
        assert type(a) is cupy.ndarray
        assert A.data.ptr <= a.data.ptr < A.data.ptr + A.nbytes  # a view, not made again
        np.testing.assert_allclose(cupy.asnumpy(fitness(sub)), want[members], rtol=1e-5)


@pytest.mark.gpu
def test_mixed_numpy_and_cupy_leaves_are_rejected():
    e = _engine()
    params = {"a": np.zeros((3, 2), np.float32), "b": cupy.zeros(2, dtype=np.float32)}
    with pytest.raises((TypeError, ValueError), match="(?i)mixed"):
        e.init(params, population=4)


def test_host_profile_lists_the_functions_that_take_the_host_time():
    from eggroll_np.benchmarks import gpu_profile

    def slow():
        return sum(i * i for i in range(20000))

    def work():
        slow()
        return np.zeros(3)

    rows = gpu_profile.host_profile(work, calls=4, top=5)
    assert len(rows) <= 5
    assert any("(slow)" in r["function"] for r in rows)
    assert all(r["own_ms"] >= 0 and r["cumulative_ms"] >= r["own_ms"] - 1e-9 for r in rows)
    slow_row = next(r for r in rows if "(slow)" in r["function"])
    assert slow_row["calls"] == 1.0  # one call of slow() per call of work()
