"""Every compiled instruction set (AVX-512, AVX2, baseline) gives the reference's numbers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eggroll_np import _ext, _reference, noise

from .test_core_optim import _adam_reference

core = _ext.core
pytestmark = pytest.mark.skipif(core is None, reason=f"C++ core not built: {_ext.core_error}")
LEVELS = core.available_simd_levels() if core is not None else []


@pytest.fixture(params=LEVELS, scope="module")
def simd_level(request):
    before = core.simd_level()
    core.set_simd_level(request.param)
    yield request.param
    core.set_simd_level(before)


def test_the_best_level_is_the_default():
    assert core.simd_level() == LEVELS[0]
    assert LEVELS[-1] == "baseline"


def test_unknown_level_is_rejected():
    with pytest.raises(ValueError, match="not available"):
        core.set_simd_level("no-such-isa")
    assert core.simd_level() == LEVELS[0]


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**64 - 1),
    fields=st.tuples(*[st.integers(0, 2**32 - 1)] * 3),
    count=st.integers(0, 3000),
    offset=st.integers(0, 70),
)
def test_each_level_matches_reference(simd_level, seed, fields, count, offset):
    leaf, key, epoch = fields
    got = noise.normals_batch(seed, leaf, [key], epoch, count, offset)[0]
    ref = _reference.normals(seed, leaf, key, epoch, count, offset)
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))
    ctr = np.random.default_rng(seed % 2**32).integers(0, 2**32, (37, 4), dtype=np.uint32)
    k = np.array([seed & 0xFFFFFFFF, seed >> 32], np.uint32)
    np.testing.assert_array_equal(noise.philox4x32_10(ctr, k), _reference.philox4x32_10(ctr, k))


def test_each_level_lowrank_and_adam(simd_level):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 37), dtype=np.float32)
    a = rng.standard_normal((2, 37, 2), dtype=np.float32)
    b = rng.standard_normal((2, 19, 2), dtype=np.float32)
    keys = np.array([0, 1, 1, 0, 1], np.uint32)
    coef = rng.standard_normal(5).astype(np.float32)
    out = np.zeros((5, 3, 19), np.float32)
    core.lowrank_correction(x, a, b, keys, coef, out)
    want = np.stack([coef[i] * (x[i] @ a[k]) @ b[k].T for i, k in enumerate(keys)])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    # 100 values: the vector loop and its scalar tail at every level.
    t, g, mu = (rng.standard_normal(100, dtype=np.float32) for _ in range(3))
    nu = np.abs(t)
    got = core.adam_step(t, g, mu, nu, 0.1, 0.9, 0.99, 1e-8, 0.01, 2)
    want = _adam_reference(t, g, mu, nu, 0.1, 0.9, 0.99, 1e-8, 0.01, 2)
    for name, a, b in zip(("theta", "mu", "nu"), got[:3], want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    step = got[0].astype(np.float64) - t
    assert got[3] == pytest.approx(float(step @ step), rel=1e-9)


def test_each_level_checks_its_processor_features():
    # A level is offered only when the processor has every feature its objects are compiled
    # for (CMakeLists.txt's EGG_FLAGS_*): AVX2 objects use FMA and F16C too.
    reqs = core.simd_requirements()
    assert {"avx2", "fma", "f16c"} <= set(reqs.get("avx2", ["avx2", "fma", "f16c"]))
    assert {"avx512f", "fma"} <= set(reqs.get("avx512", ["avx512f", "fma"]))
    assert {"avx512bw", "avx512vnni"} <= set(reqs.get("avx512vnni", ["avx512bw", "avx512vnni"]))
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((ln.split(":", 1)[1].split() for ln in fh if ln.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags to compare with")
    cpuinfo_name = {"avx512vnni": "avx512_vnni"}  # GCC's feature name -> the kernel's flag
    for level in LEVELS:
        missing = {cpuinfo_name.get(f, f) for f in reqs.get(level, [])} - set(flags)
        assert not missing, f"{level} is offered but the processor lacks {sorted(missing)}"
