"""`pop.linear` on the GPU path (`fused_linear`), driven through the CuPy stand-in (fake_cupy).

What a layer call costs in CuPy calls, counted without a GPU: after the population's first
layer, one GEMM, two kernel launches, at most three allocations, no upload and no
device-to-host copy or synchronisation; the first layer queues its GEMM before any upload. The
stand-in of the binding computes the documented result in NumPy, so the plumbing (argument
order, stream keys vs held factors, transpose offsets) is checked against the CPU path too. The
kernels themselves are checked bit for bit by the emulator (test_cuda_fused.py).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _ext, dispatch, epilogue, noise
from eggroll_np.perturbation import GenerationNoise
from eggroll_np.population import Population

try:  # the suite runs as a package (tests/__init__.py) or from its directory
    from . import fake_cupy as fc
    from .test_cuda_plumbing import _EmulatedBinding
except ImportError:
    import fake_cupy as fc  # type: ignore[no-redef]
    from test_cuda_plumbing import _EmulatedBinding  # type: ignore[no-redef]


class _EmulatedFused:
    """`_cuda.linear_fused`'s contract (csrc/cuda/fused.cuh) in NumPy, on raw addresses (and
    the normals kernel's, for factors made beforehand)."""

    fill_normals_many = staticmethod(_EmulatedBinding.fill_normals_many)

    @staticmethod
    def linear_fused(out, base, x, xa, slot_keys, xa_rows, keys, coef, bias, bias_coef, left,
                     left_stride, left_offset, right, right_stride, right_offset, bias_noise,
                     bias_noise_stride, leaf, bias_leaf, generate, bias_noisy, seed, epoch, act,
                     members, rows, m, n, rank, slots, keys_bound, stream):  # fmt: skip
        fc.count("launch")  # the projection
        fc.count("launch")  # the epilogue
        N = members
        o = fc.at(out, N * rows * n, np.float32).reshape(N, rows, n)
        k = fc.at(keys, N, np.uint32)
        per_member = slot_keys == 0
        xs = fc.at(x, (N if per_member else 1) * rows * m, np.float32).reshape(-1, rows, m)
        xs = np.broadcast_to(xs, (N, rows, m))

        def values(ptr, stride, lf, offset, count, key_ids):
            if generate:
                return noise.normals_batch(seed, lf, key_ids, epoch, count, offset)
            flat = fc.at(ptr, keys_bound * max(stride[0], 1), np.float32)
            idx = np.arange(count)
            where = (idx // rank) * stride[1] + (idx % rank) * stride[2] if stride[2] else idx
            return flat[np.asarray(key_ids)[:, None] * stride[0] + where[None, :]]

        A = values(left, left_stride, leaf, left_offset, m * rank, k).reshape(N, m, rank)
        B = values(right, right_stride, leaf, right_offset, n * rank, k).reshape(N, n, rank)
        h = (fc.at(base, rows * n, np.float32).reshape(rows, n) if base else o).astype(float)
        xa_ = np.einsum("irm,imq->irq", xs, A)
        h = h + fc.at(coef, N, np.float32)[:, None, None] * np.einsum("irq,inq->irn", xa_, B)
        if bias:
            h = h + fc.at(bias, n, np.float32)
        if bias_noisy:
            E = values(bias_noise, bias_noise_stride, bias_leaf, 0, n, k)
            h = h + fc.at(bias_coef, N, np.float32)[:, None, None] * E[:, None, :]
        o[...] = epilogue.apply_activation(h, act)


@pytest.fixture
def gpu(monkeypatch):
    fc.install(monkeypatch)
    monkeypatch.setattr(_ext, "cuda", _EmulatedFused)
    monkeypatch.setattr(dispatch, "require_cuda", lambda: _EmulatedFused)
    return fc


def _setup(rng, transpose, rank=2, population=8, **kw):
    params = {"W": rng.standard_normal((6, 5)).astype(np.float32),
              "b": rng.standard_normal(6 if transpose else 5).astype(np.float32)}  # fmt: skip
    state = egg.init(params, population=population, rank=rank, sigma=0.3, seed=7, **kw)
    return params, state


def _device_population(params, state):
    leaves = [fc.fake_asarray(params[k]) for k in sorted(params)]  # canonical order: W, b
    return Population(leaves, GenerationNoise(state.spec, state.config, 0, fc.FAKE_CUPY), 0)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("held", [False, True])
def test_a_layer_call_is_one_gemm_two_launches_and_no_sync(gpu, transpose, shared, held):
    rng = np.random.default_rng(int(transpose) + 2 * int(shared))
    params, state = _setup(rng, transpose)
    want_pop = egg.ask(params, state)
    width = 5 if transpose else 6
    x = rng.standard_normal((3, width) if shared else (8, 3, width)).astype(np.float32)
    pop = _device_population(params, state)
    if held:  # factors made beforehand (pop.chunks does this): the kernels read them
        pop.noise.prefetch(full=True)
    xd = fc.fake_asarray(x)
    gpu.reset()
    got = pop.linear(xd, "W", "b", "relu", transpose=transpose)
    first = list(gpu.EVENTS)
    assert first[0] == "gemm"  # queued before any noise work (the keys' and coefficients' uploads)
    assert gpu.CALLS["upload"] == 3  # the keys (one copy for the population), two coefficients
    assert gpu.CALLS["d2h"] == 0
    assert gpu.CALLS["sync"] == 0
    assert gpu.CALLS["launch"] == 2
    want = want_pop.linear(x, "W", "b", "relu", transpose=transpose)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    gpu.reset()
    again = pop.linear(xd, "W", "b", "relu", transpose=transpose)  # a later layer call
    assert dict(gpu.CALLS) == {"gemm": 1, "launch": 2, "alloc": 2 if shared else 1}
    np.testing.assert_array_equal(np.asarray(again), np.asarray(got))
    assert pop.noise.holds_factors(0) is held  # generated in the kernels: nothing held


def test_wider_ranks_and_cpu_arrays_take_the_separate_pass(gpu):
    rng = np.random.default_rng(3)
    params, state = _setup(rng, False, rank=5)  # rank 5 fits: fused
    pop = _device_population(params, state)
    from eggroll_np import fused_linear

    leaves = [(0, "W", pop._leaves[0], state.config.kinds[0])]
    assert fused_linear.fusable(leaves, 5)
    assert not fused_linear.fusable(leaves, fused_linear.MAX_RANK + 1)
    assert not fused_linear.fusable([(0, "W", params["W"], state.config.kinds[0])], 1)  # NumPy


@pytest.mark.skipif(_ext.cuda is None, reason=f"eggroll_np._cuda was not built: {_ext.cuda_error}")
def test_the_stand_in_takes_the_real_bindings_arguments():
    head = _ext.cuda.linear_fused.__doc__.splitlines()[0]
    names = re.findall(r"[(,] ?(\w+): ", head)  # the std::array types hold commas of their own
    assert names == list(inspect.signature(_EmulatedFused.linear_fused).parameters)


@pytest.mark.skipif(_ext.cuda is None, reason=f"eggroll_np._cuda was not built: {_ext.cuda_error}")
def test_the_fused_projection_makes_its_normals_without_fma_contraction():
    # fused.cu is built with --fmad=false like noise.cu: the normals it makes must be philox.h's
    # float32 operations (the epilogue's activations call the CUDA math library, whose tanhf and
    # expf use fmaf on purpose, as in layers.cu; the Box-Muller code is in the projection too).
    text = Path(_ext.cuda.__file__).read_bytes().decode("latin-1").replace("\x00", "\n")
    bodies = {m.group(1): text[m.end() : text.find("\n}\n", m.end())]
              for m in re.finditer(r"\.entry (\S+)\(", text)}  # fmt: skip
    project = {k: v for k, v in bodies.items() if "fused_detail" in k and "project" in k}
    if not project:
        pytest.skip("no PTX of the fused kernels in the module (compressed fatbinary?)")
    assert {k: v.count("fma.rn.f32") for k, v in project.items()} == dict.fromkeys(project, 0)
    assert all("mul.rn.f32" in v for v in project.values())
