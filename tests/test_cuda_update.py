"""The update's CUDA kernels on the host emulator: the exact contraction and the fused Adam step.

`egg_cuda::contract` (csrc/cuda/contract.cu) runs here with its launch code (tile choice, float4
or scalar path, edges) on csrc/cuda/emulation, every tile size, and must give
`_reference.contract`'s and `_core.contract`'s float32 bits exactly: the terms of each entry in
(key, rank) order, one FMA each, w * A rounded first. `egg_cuda::adam_step` (csrc/cuda/optim.cu)
must give `_core.adam_step`'s bits. The CuPy wrappers, the dispatch rows and a whole device
`tell` are checked further down with a stand-in for CuPy.
"""

from __future__ import annotations

import numpy as np
import pytest

from eggroll_np import _ext, _reference

try:  # the suite runs as a package (tests/__init__.py) or from its directory
    from . import emulator as emu
except ImportError:
    import emulator as emu  # type: ignore[no-redef]

needs_emulator = pytest.mark.skipif(
    emu.skip_reason() is not None, reason=str(emu.skip_reason())
)

# (keys, rank, m, n, tile, shift): tile 0 = the launch code's choice (2 emulated SMs), 1 = the
# column kernel; shift 1 puts every buffer 4 bytes off 16-byte alignment (the scalar path).
CASES = [
    (5, 1, 130, 260, 0, 0),  # auto: the 128 tile, scalar loads (m % 4 != 0), ragged edges
    (7, 3, 132, 68, 64, 0),  # float4 path, 21 contracted rows: two full stages and a short one
    (3, 2, 96, 100, 32, 0),  # the 4 x 4 micro-tile
    (4, 1, 64, 64, 128, 1),  # a tile larger than out, misaligned buffers
    (9, 4, 33, 35, 32, 0),  # scalar path, 36 rows
    (2, 16, 128, 128, 128, 0),  # rank 16: w indexed by kappa / r inside a stage
    (40, 1, 64, 72, 64, 0),  # five stages, float4 path
    (6, 1, 1, 300, 0, 0),  # auto: m = 1 (contract_full's shape) takes the column kernel
    (5, 2, 200, 16, 0, 0),  # auto: a narrow out takes the column kernel
    (5, 3, 70, 70, 1, 0),  # the column kernel forced on a square out
    (0, 1, 40, 40, 0, 0),  # no keys: zeros
]
WANT_TILE = {0: 128, 7: 1, 8: 1}


def _factors(rng, keys, rank, m, n):
    # Magnitudes over ~12 binary orders: a sum in another order rounds differently.
    scale = np.float32(2.0) ** rng.integers(-6, 6, (keys, 1, 1)).astype(np.float32)
    A = (rng.standard_normal((keys, m, rank)) * scale).astype(np.float32)
    B = rng.standard_normal((keys, n, rank)).astype(np.float32)
    w = rng.standard_normal(keys).astype(np.float32)
    return A, B, w


@needs_emulator
def test_contract_kernel_bits_equal_the_core(tmp_path_factory, tmp_path):
    exe = emu.build(tmp_path_factory.mktemp("emu"))
    rng = np.random.default_rng(11)
    cases = emu.Cases(tmp_path)
    wants = {}
    for j, (K, r, m, n, tile, shift) in enumerate(CASES):
        A, B, w = _factors(rng, K, r, m, n)
        name = f"c{j}"
        # The kernel reads the factors rank-major: (K, r, m) and (K, r, n).
        cases.put(name, left=A.transpose(0, 2, 1), right=B.transpose(0, 2, 1), w=w)
        cases.lines.append(f"contract {name} {K} {r} {m} {n} {tile} {shift}")
        wants[name] = (_reference.contract(A, B, w), A, B, w)
    log = cases.run(exe)
    ran = dict(line.split()[1:] for line in log.splitlines() if line.startswith("tile "))
    sensitive = 0
    for j, (name, (want, A, B, w)) in enumerate(wants.items()):
        K, r, m, n, tile, _ = CASES[j]
        got = cases.get(name, "result", np.float32, want.shape)
        assert got.tobytes() == want.tobytes(), f"case {CASES[j]}: not the reference's bits"
        if _ext.core is not None:
            assert got.tobytes() == _ext.core.contract(A, B, w).tobytes(), f"case {CASES[j]}"
        assert int(ran[name]) == WANT_TILE.get(j, tile or int(ran[name])), f"case {CASES[j]}"
        if K > 1:  # the same terms in another key order: other bits, which the check would see
            rev = _reference.contract(A[::-1], B[::-1], w[::-1])
            sensitive += rev.tobytes() != want.tobytes()
    assert sensitive >= 8



# (n, weight decay, count): n past one emulated grid's 16384 threads makes the loop turn.
ADAM_CASES = [(1, 0.0, 1), (1000, 0.0, 7), (70_001, 0.01, 3), (4096, 0.5, 1000)]


@needs_emulator
@pytest.mark.skipif(_ext.core is None, reason="compares with the C++ core's adam_step")
def test_adam_kernel_bits_equal_the_core(tmp_path_factory, tmp_path):
    exe = emu.build(tmp_path_factory.mktemp("emu"))
    rng = np.random.default_rng(12)
    cases = emu.Cases(tmp_path)
    wants = {}
    for j, (n, wd, count) in enumerate(ADAM_CASES):
        theta, g, mu = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
        nu = (rng.standard_normal(n) ** 2).astype(np.float32)
        name = f"adam{j}"
        cases.put(name, theta=theta, g=g, mu=mu, nu=nu)
        cases.lines.append(f"adam {name} {n} 0.01 0.9 0.999 1e-08 {wd!r} {count}")
        wants[name] = _ext.core.adam_step(theta, g, mu, nu, 0.01, 0.9, 0.999, 1e-8, wd, count)
    cases.run(exe)
    for j, (name, want) in enumerate(wants.items()):
        n = ADAM_CASES[j][0]
        got = cases.get(name, "result", np.float32, (3, n))
        for k, what in enumerate(("theta", "mu", "nu")):
            assert got[k].tobytes() == want[k].tobytes(), f"case {ADAM_CASES[j]}: {what}"
        norm = float(cases.get(name, "norm", np.float64, (1,))[0])
        assert norm == pytest.approx(want[3], rel=1e-12)  # summed in another fixed order


# ------------------------------------------ the wrapper and the dispatch row, on the CuPy stand-in

try:  # the suite runs as a package (tests/__init__.py) or from its directory
    from . import fake_cupy as fc
    from .test_cuda_plumbing import _EmulatedBinding, _ptx_entries, _signature
except ImportError:
    import fake_cupy as fc  # type: ignore[no-redef]
    from test_cuda_plumbing import (  # type: ignore[no-redef]
        _EmulatedBinding,
        _ptx_entries,
        _signature,
    )

import eggroll_np as egg  # noqa: E402
from eggroll_np import _cuda_ops, dispatch, lowrank  # noqa: E402


class _EmulatedContract:
    """The update's bindings in NumPy on raw addresses: `_cuda.contract` (csrc/cuda/contract.cuh,
    `_reference.contract`) and `_cuda.adam_step` (csrc/cuda/optim.cuh, the core's step)."""

    fill_normals_many = staticmethod(_EmulatedBinding.fill_normals_many)
    tiles: list[int] = []

    @staticmethod
    def adam_partials(n):
        return 3

    @staticmethod
    def adam_step(theta, g, mu, nu, n, lr, b1, b2, eps, wd, count, theta_out, mu_out, nu_out,
                  partials, stream):  # fmt: skip
        fc.count("launch")
        ins = [fc.at(v, n, np.float32) for v in (theta, g, mu, nu)]
        got = _ext.core.adam_step(*ins, lr, b1, b2, eps, wd, count)
        for ptr, value in zip((theta_out, mu_out, nu_out), got[:3], strict=True):
            fc.at(ptr, n, np.float32)[:] = value
        fc.at(partials, 3, np.float64)[-1] = got[3]

    @staticmethod
    def contract(left, right, w, keys, rank, m, n, out, tile, stream):
        fc.count("launch")
        _EmulatedContract.tiles.append(tile)
        lf = fc.at(left, keys * rank * m, np.float32).reshape(keys, rank, m)
        rt = fc.at(right, keys * rank * n, np.float32).reshape(keys, rank, n)
        ws = fc.at(w, keys, np.float32)
        want = _reference.contract(lf.transpose(0, 2, 1), rt.transpose(0, 2, 1), ws)
        fc.at(out, m * n, np.float32)[:] = want.ravel()
        return tile or 128


@pytest.fixture
def gpu(monkeypatch):
    fc.install(monkeypatch)
    monkeypatch.setattr(_ext, "cuda", _EmulatedContract)
    monkeypatch.setattr(dispatch, "require_cuda", lambda: _EmulatedContract)
    _EmulatedContract.tiles.clear()
    return fc


@pytest.mark.skipif(_ext.cuda is None, reason=f"eggroll_np._cuda was not built: {_ext.cuda_error}")
def test_emulated_contract_binding_has_the_real_signature():
    import inspect

    for name in ("contract", "adam_step", "adam_partials"):
        names = list(inspect.signature(getattr(_EmulatedContract, name)).parameters)
        assert _signature(getattr(_ext.cuda, name)) == names, name


@pytest.mark.skipif(_ext.cuda is None, reason=f"eggroll_np._cuda was not built: {_ext.cuda_error}")
def test_contract_kernels_round_the_scaled_factor_on_its_own():
    # w * A must be rounded before its fmaf, as the CPU does: CMakeLists.txt builds contract.cu
    # with --fmad=false, which makes nvcc emit mul.rn (never contracted); a plain mul.f32 is
    # free to be fused into the fma by ptxas.
    from pathlib import Path

    entries = _ptx_entries(Path(_ext.cuda.__file__))
    kernels = {k: v for k, v in entries.items() if "contract_detail" in k}
    if not kernels:
        pytest.skip("no PTX of the contract kernels in the module (compressed fatbinary?)")
    assert len(kernels) == 7  # three tilings x (float4, scalar) and the column kernel
    for name, body in kernels.items():
        assert "mul.rn.f32" in body, name
        assert "fma.rn.f32" in body, name
        assert "mul.f32" not in body, name



@pytest.mark.skipif(_ext.cuda is None, reason=f"eggroll_np._cuda was not built: {_ext.cuda_error}")
def test_adam_kernel_is_built_without_fma_contraction():
    # adam.h's step has the core's bits only if each product is rounded on its own (optim.cu is
    # built with --fmad=false); the emulator cannot see what nvcc does, the PTX can.
    from pathlib import Path

    entries = _ptx_entries(Path(_ext.cuda.__file__))
    kernels = {k: v for k, v in entries.items() if "optim_detail" in k and "adam" in k}
    if not kernels:
        pytest.skip("no PTX of the Adam kernel in the module (compressed fatbinary?)")
    for name, body in kernels.items():
        assert "sqrt.rn.f32" in body, name  # IEEE square root, not the approximate one
        assert "div.rn.f32" in body, name
        assert "fma.rn.f32" not in body, name
        assert "fma.rn.f64" not in body, name

def _rank_major_factors(rng, K, m, n, r):
    # as noise.as_factors makes them on CuPy: (K, r, rows) storage viewed as (K, rows, r)
    a = rng.standard_normal((K, r, m)).astype(np.float32)
    b = rng.standard_normal((K, r, n)).astype(np.float32)
    return a.transpose(0, 2, 1), b.transpose(0, 2, 1)


@pytest.mark.parametrize("r", [1, 3])
def test_exact_row_runs_the_kernel_on_the_factors_in_place(gpu, monkeypatch, r):
    rng = np.random.default_rng(r)
    A, B = _rank_major_factors(rng, 6, 9, 7, r)
    w = rng.standard_normal(6).astype(np.float32)
    monkeypatch.setenv(dispatch.CUDA_CONTRACT, "exact")
    Ad, Bd, wd = (fc.fake_asarray(v) for v in (A.transpose(0, 2, 1), B.transpose(0, 2, 1), w))
    Ad, Bd = Ad.transpose(0, 2, 1), Bd.transpose(0, 2, 1)  # rank-major device views
    gpu.reset()
    got = lowrank.contract(Ad, Bd, wd, 0.25)
    # one launch and the output's allocation: no copy of the factors, no sync
    assert dict(gpu.CALLS) == {"launch": 1, "alloc": 1}
    want = _ext.core.contract(A, B, (w * 0.25).astype(np.float32)) if _ext.core else None
    if want is None:
        want = _reference.contract(A, B, (w * 0.25).astype(np.float32))
    assert np.asarray(got).tobytes() == want.tobytes()
    assert _EmulatedContract.tiles == [0]


def test_cublas_stays_the_default(gpu, monkeypatch):
    rng = np.random.default_rng(0)
    A, B = _rank_major_factors(rng, 4, 5, 6, 2)
    monkeypatch.delenv(dispatch.CUDA_CONTRACT, raising=False)
    got = lowrank.contract(fc.fake_asarray(A), fc.fake_asarray(B), fc.fake_asarray(np.ones(4)), 1.0)
    assert gpu.CALLS["gemm"] == 1
    assert gpu.CALLS["launch"] == 0
    np.testing.assert_allclose(np.asarray(got), _reference.contract(A, B, np.ones(4, np.float32)),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    monkeypatch.setenv(dispatch.CUDA_CONTRACT, "fastest")
    with pytest.raises(ValueError, match="EGGROLL_NP_CUDA_CONTRACT"):
        lowrank.contract(fc.fake_asarray(A), fc.fake_asarray(B), fc.fake_asarray(np.ones(4)), 1.0)


def test_contract_wrapper_names_the_bad_argument(gpu):
    A = fc.fake_asarray(np.zeros((3, 4, 2), np.float32))
    B = fc.fake_asarray(np.zeros((3, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"A \(K, m, r\) and B"):
        _cuda_ops.contract(A, B[:2], np.ones(3))
    with pytest.raises(TypeError, match="B must have dtype float32"):
        _cuda_ops.contract(A, B.astype(np.float64), np.ones(3))
    with pytest.raises(ValueError, match="w must have shape"):
        _cuda_ops.contract(A, B, np.ones(4))
    with pytest.raises(ValueError, match="tile must be one of"):
        _cuda_ops.contract(A, B, np.ones(3), tile=16)
    assert gpu.CALLS["launch"] == 0


@pytest.mark.skipif(_ext.core is None, reason="the stand-in's Adam is the core's")
def test_tell_on_the_device_with_the_exact_row_gives_the_cpu_bits(gpu, monkeypatch):
    # A whole update (noise, shaping, the contraction, Adam) on device arrays, with the exact
    # row: the same parameter bits as the NumPy run given the same fitness values. Adam's
    # device row is one launch per leaf.
    fc.install(monkeypatch, whole_numpy=True)
    monkeypatch.setenv(dispatch.CUDA_CONTRACT, "exact")
    rng = np.random.default_rng(3)
    host = {"W": rng.standard_normal((12, 9)).astype(np.float32),
            "b": rng.standard_normal(9).astype(np.float32)}  # fmt: skip
    state = egg.init(host, population=16, rank=2, seed=4)
    fitness = rng.standard_normal(16)
    want, want_state = egg.tell(host, fitness, state)
    dev = {k: fc.fake_asarray(v) for k, v in host.items()}
    got, got_state = egg.tell(dev, fitness, egg.init(dev, population=16, rank=2, seed=4))
    assert got_state.info["update_norm"] == want_state.info["update_norm"]
    assert gpu.CALLS["launch"] == 4  # two contractions, two Adam steps
    for k in host:  # (the stand-in's NumPy fallback may hand back plain arrays: bits only here)
        assert np.asarray(got[k]).tobytes() == want[k].tobytes(), k


def test_info_says_which_contraction_a_gpu_update_runs(monkeypatch):
    from eggroll_np import sysinfo

    info = sysinfo.system_info()
    info.update(cuda_extension=True, cuda_devices=[])
    for value, bits in (("cublas", "cuBLAS's bits"), ("exact", "the C++ core's bits")):
        monkeypatch.setenv(dispatch.CUDA_CONTRACT, value)
        info["cuda_contract"] = sysinfo.system_info()["cuda_contract"]
        assert f"GPU update      EGGROLL_NP_CUDA_CONTRACT={value} ({bits})" in (
            sysinfo.format_info(info)
        )
    # the setting as a run reads it (case and spaces as the dispatch row ignores them), and a
    # value a run would refuse shown as such
    monkeypatch.setenv(dispatch.CUDA_CONTRACT, " EXACT ")
    assert sysinfo.system_info()["cuda_contract"] == "exact"
    monkeypatch.setenv(dispatch.CUDA_CONTRACT, "fastest")
    info["cuda_contract"] = sysinfo.system_info()["cuda_contract"]
    assert "=fastest (not a setting: an update would raise ValueError)" in sysinfo.format_info(info)


def test_a_run_keeps_the_contraction_it_chose_at_its_first_update(gpu, monkeypatch):
    # The row is chosen once per run (its dispatch memo): a later change of the variable does
    # not switch a running run's kernel, and a new run reads it again.
    fc.install(monkeypatch, whole_numpy=True)
    rng = np.random.default_rng(9)
    dev = {"W": fc.fake_asarray(rng.standard_normal((6, 5)).astype(np.float32))}
    monkeypatch.setenv(dispatch.CUDA_CONTRACT, "exact")
    state = egg.init(dev, population=8, seed=1, optimizer="sgd")
    params, state = egg.tell(dev, rng.standard_normal(8), state)
    assert _EmulatedContract.tiles == [0]
    monkeypatch.setenv(dispatch.CUDA_CONTRACT, "cublas")
    egg.tell(params, rng.standard_normal(8), state)
    assert _EmulatedContract.tiles == [0, 0]  # the same run: still the kernel
    egg.tell(dev, rng.standard_normal(8), egg.init(dev, population=8, seed=1, optimizer="sgd"))
    assert _EmulatedContract.tiles == [0, 0]  # a new run: cuBLAS
