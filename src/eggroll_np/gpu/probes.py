"""GPU checks that need a device: CPU-vs-GPU bit identity per SIMD level, and the edge probes.

Each probe runs on the current CUDA device, raises AssertionError (naming what differed) on a
failure and returns a short dict of what it checked. tests/test_cuda.py runs them as GPU tests;
`python -m eggroll_np.gpu.check` runs them and reports them one by one. `odd_shapes` is the
workload compute-sanitizer's memcheck runs over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .. import _cuda_ops, _ext, _reference, lowrank, noise
from ..backend import cupy

__all__ = [
    "simd_levels",
    "at_simd_level",
    "bit_check",
    "probe_many_rows",
    "probe_over_2_31_elements",
    "probe_non_default_stream",
    "probe_misaligned_views",
    "probe_engine_takes_cuda_path",
    "odd_shapes",
    "PROBES",
]

# (offset, count, keys): aligned and unaligned offsets/counts, long and short rows, stream end.
_NORMAL_CASES = [
    (0, 4096, [0, 1, 2**32 - 1]),
    (3, 1001, [7, 8]),
    (6, 2, [5] * 9),
    (2**34 - 64, 64, [3]),
    (0, 1 << 20, [11]),
]
_FACTOR_CASES = [((33, 17), 1), ((64, 16), 2), ((300, 5), 3), ((1024, 1024), 1)]


def simd_levels() -> list[str]:
    """SIMD levels of the C++ core on this processor (["reference"] without the core)."""
    return list(_ext.core.available_simd_levels()) if _ext.core is not None else ["reference"]


@contextmanager
def at_simd_level(level: str) -> Iterator[None]:
    """Run the C++ core's kernels at `level` for the duration of the block."""
    if _ext.core is None:
        yield
        return
    before = _ext.core.simd_level()
    _ext.core.set_simd_level(level)
    try:
        yield
    finally:
        _ext.core.set_simd_level(before)


def _differ(got: Any, want: np.ndarray) -> int:
    g = cupy.asnumpy(got)
    return int(np.count_nonzero(g.view(np.uint32) != want.view(np.uint32)))


def bit_check(seed: int = 0x9E3779B97F4A7C15) -> dict[str, Any]:
    """GPU normals, factors and Philox blocks vs the CPU's at every SIMD level, bit for bit.

    Returns {level: {"values": compared, "mismatches": differing}}; raises AssertionError when
    any value differs at any level.
    """
    rng = np.random.default_rng(0)
    counters = rng.integers(0, 2**32, (10_000, 4), dtype=np.uint32)
    key = _reference.philox_key(seed)
    gpu_normals = [
        noise.normals_batch(seed, 5, keys, 3, count, offset, xp="cupy")
        for offset, count, keys in _NORMAL_CASES
    ]
    gpu_factors = [
        noise.factors(seed, 2, [0, 1, 9, 2**31], 4, shape, r, xp="cupy")
        for shape, r in _FACTOR_CASES
    ]
    gpu_philox = noise.philox4x32_10(cupy.asarray(counters), key)
    report: dict[str, Any] = {}
    for level in simd_levels():
        compared = bad = 0
        with at_simd_level(level):
            for (offset, count, keys), got in zip(_NORMAL_CASES, gpu_normals, strict=True):
                want = noise.normals_batch(seed, 5, keys, 3, count, offset)
                compared, bad = compared + want.size, bad + _differ(got, want)
            for (shape, r), (a, b) in zip(_FACTOR_CASES, gpu_factors, strict=True):
                wa, wb = noise.factors(seed, 2, [0, 1, 9, 2**31], 4, shape, r)
                compared += wa.size + wb.size
                bad += _differ(a, np.ascontiguousarray(wa)) + _differ(b, np.ascontiguousarray(wb))
            want_p = noise.philox4x32_10(counters, key)
            compared, bad = compared + want_p.size, bad + _differ(gpu_philox, want_p)
        report[level] = {"values": compared, "mismatches": bad}
    failing = {lv: r["mismatches"] for lv, r in report.items() if r["mismatches"]}
    assert not failing, f"GPU noise differs from the CPU's (mismatches per level): {failing}"
    return report


def _check_rows(out: Any, x: Any, A: Any, B: Any, keys: Any, coef: Any, rows: list[int]) -> None:
    """out[i] == x_i @ A_k @ B_k.T * coef_i (float64 NumPy) for members `rows` (tolerance 1e-4)."""
    k = np.asarray(keys)[rows]
    x_h = cupy.asnumpy(x[rows] if x.ndim == 3 else x).astype(np.float64)
    a_h, b_h = (cupy.asnumpy(F[cupy.asarray(k)]).astype(np.float64) for F in (A, B))
    c = np.asarray(coef, np.float64)[rows]
    want = np.zeros((len(rows),) + tuple(out.shape[1:]))
    lowrank.correction_reference(x_h, a_h, b_h, np.arange(len(rows)), c, want)
    np.testing.assert_allclose(cupy.asnumpy(out[rows]), want, rtol=1e-4, atol=1e-4)


def probe_many_rows() -> dict[str, Any]:
    """More rows than one grid holds: 300000 noise rows and 300000 correction rows."""
    rows = 300_000
    keys = np.arange(rows, dtype=np.uint32) * 3
    got = noise.normals_batch(1, 2, keys, 0, 6, 2, xp="cupy")
    sample = [0, 1, 65_535, 65_536, 131_071, rows - 1]
    want = noise.normals_batch(1, 2, keys[sample], 0, 6, 2)
    np.testing.assert_array_equal(cupy.asnumpy(got[cupy.asarray(sample)]), want)
    A, B = noise.factors(1, 0, np.arange(4), 0, (24, 20), 2, xp="cupy")
    x = cupy.asarray(np.random.default_rng(1).standard_normal((rows, 1, 24), dtype=np.float32))
    mkeys = np.arange(rows, dtype=np.uint32) % 4
    coef = np.linspace(-1, 1, rows, dtype=np.float32)
    out = cupy.zeros((rows, 1, 20), np.float32)
    _cuda_ops.lowrank_correction(x, A, B, mkeys, coef, out)
    _check_rows(out, x, A, B, mkeys, coef, sample)
    return {"rows": rows, "sampled": sample}


def probe_over_2_31_elements() -> dict[str, Any]:
    """One call writing more than 2^31 floats: a noise row and a correction output (8.6 GB each)."""
    count = (1 << 31) + 12
    row = noise.normals_batch(4, 1, [6], 2, count, 0, xp="cupy")
    for start in (0, (1 << 31) - 8, count - 16):
        want = noise.normals_batch(4, 1, [6], 2, 16, start)
        np.testing.assert_array_equal(cupy.asnumpy(row[:, start : start + 16]), want)
    del row
    cupy.get_default_memory_pool().free_all_blocks()
    members, n = (1 << 16) + 1, 1 << 15  # (2^16 + 1) * 2^15 > 2^31 output values
    A, B = noise.factors(4, 3, np.arange(3), 0, (4, n), 1, xp="cupy")
    x = cupy.ones((members, 1, 4), np.float32)
    mkeys = np.arange(members, dtype=np.uint32) % 3
    coef = np.ones(members, np.float32)
    out = cupy.zeros((members, 1, n), np.float32)
    _cuda_ops.lowrank_correction(x, A, B, mkeys, coef, out)
    _check_rows(out, x, A, B, mkeys, coef, [0, members // 2, members - 1])
    del out, x
    cupy.get_default_memory_pool().free_all_blocks()
    return {"noise_values": count, "correction_values": members * n}


def probe_non_default_stream() -> dict[str, Any]:
    """Noise and correction launched on a non-blocking CuPy stream equal the default stream's."""
    A0, B0 = noise.factors(7, 1, np.arange(8), 0, (256, 96), 2, xp="cupy")
    x = cupy.asarray(np.random.default_rng(2).standard_normal((8, 4, 256), dtype=np.float32))
    keys = np.arange(8, dtype=np.uint32)
    out0 = cupy.zeros((8, 4, 96), np.float32)
    _cuda_ops.lowrank_correction(x, A0, B0, keys, np.ones(8), out0)
    cupy.cuda.Device().synchronize()
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        big = noise.normals_batch(3, 0, [1], 0, 1 << 24, xp="cupy")  # work queued ahead
        A, B = noise.factors(7, 1, np.arange(8), 0, (256, 96), 2, xp="cupy")
        out = cupy.zeros((8, 4, 96), np.float32)
        _cuda_ops.lowrank_correction(x, A, B, keys, np.ones(8), out)
        snapshot = out.copy()  # ordered after the kernels on the same stream
    stream.synchronize()
    np.testing.assert_array_equal(cupy.asnumpy(snapshot), cupy.asnumpy(out0))
    np.testing.assert_array_equal(cupy.asnumpy(A), cupy.asnumpy(A0))
    assert big.shape == (1, 1 << 24)
    return {"stream": int(stream.ptr)}


def probe_misaligned_views() -> dict[str, Any]:
    """Contiguous CuPy views at 4/8/12-byte offsets: Philox counters and correction output."""
    rng = np.random.default_rng(3)
    key = np.array([5, 6], dtype=np.uint32)
    for shift in (1, 2, 3):
        host = rng.integers(0, 2**32, (1000, 4), dtype=np.uint32)
        buf = cupy.zeros(4000 + shift, dtype=np.uint32)
        view = buf[shift:].reshape(1000, 4)
        view[...] = cupy.asarray(host)
        np.testing.assert_array_equal(
            cupy.asnumpy(noise.philox4x32_10(view, key)), noise.philox4x32_10(host, key)
        )
        A, B = noise.factors(2, 0, [0, 1], 0, (32, 16), 1, xp="cupy")
        x = cupy.ones((2, 3, 32), np.float32)
        flat = cupy.zeros(2 * 3 * 16 + shift, np.float32)
        out = flat[shift:].reshape(2, 3, 16)
        _cuda_ops.lowrank_correction(x, A, B, [0, 1], [1.0, -1.0], out)
        _check_rows(out, x, A, B, [0, 1], [1.0, -1.0], [0, 1])
    cupy.cuda.Device().synchronize()  # a misaligned access would surface here, context poisoned
    assert float(cupy.ones(4).sum()) == 4.0
    return {"shifts_bytes": [4, 8, 12]}


class _CountingExtension:
    """Stands in for eggroll_np._cuda and counts the calls of each of its entry points."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if not callable(attr) or name in ("device_count", "device_info"):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return counted


_NOISE_ENTRIES = ("fill_normals", "fill_normals_many", "philox4x32_10")


def probe_engine_takes_cuda_path() -> dict[str, Any]:
    """Population.matmul (and Population.linear where it exists) on CuPy run the _cuda kernels.

    Counts the calls into the compiled extension while the engine evaluates a population: the
    low-rank correction must be the CUDA kernel, not the generic array-code fallback.
    """
    import eggroll_np as egg

    rng = np.random.default_rng(4)
    params = {"W": cupy.asarray(rng.standard_normal((12, 10), dtype=np.float32)),
              "b": cupy.zeros(10, np.float32)}  # fmt: skip
    state = egg.init(params, population=8, sigma=0.1, rank=2, seed=5)
    counting = _CountingExtension(_ext.cuda)
    real, _ext.cuda = _ext.cuda, counting
    try:
        pop = egg.ask(params, state)
        x = cupy.ones((8, 3, 12), np.float32)
        pop.matmul(x, "W")
        pop.matmul(cupy.ones((3, 12), np.float32), "W")
        used = {"matmul": [c for c in counting.calls if c not in _NOISE_ENTRIES]}
        if hasattr(pop, "linear"):
            before = len(counting.calls)
            pop.linear(x, "W", "b")
            used["linear"] = [c for c in counting.calls[before:] if c not in _NOISE_ENTRIES]
    finally:
        _ext.cuda = real
    missing = [name for name, calls in used.items() if not calls]
    assert not missing, f"Population.{'/'.join(missing)} on CuPy did not call the _cuda kernels"
    return {name: len(calls) for name, calls in used.items()}


def odd_shapes() -> dict[str, Any]:
    """Kernel calls on odd shapes and offsets, for compute-sanitizer memcheck to watch."""
    for offset, count, rows in [(0, 1, 1), (1, 3, 5), (3, 5, 2), (2, 17, 33), (0, 4, 70_001)]:
        noise.normals_batch(1, 2, np.arange(rows), 3, count, offset, xp="cupy")
    noise.normals_many(1, 0, [0, 1, 2], [(0, 1, 3), (1, 0, 0), (2, 5, 7)] * 12, xp="cupy")
    for m, n, r, batch in [(1, 1, 1, 1), (3, 5, 2, 3), (13, 7, 9, 2), (17, 12, 3, 1), (5, 4, 1, 7)]:
        A, B = noise.factors(0, 1, [0, 1, 2], 0, (m, n), r, xp="cupy")
        keys = np.array([0, 2, 1, 1], np.uint32)
        for per_member in (False, True):
            x = cupy.ones((4, batch, m) if per_member else (batch, m), np.float32)
            out = cupy.zeros((4, batch, n), np.float32)
            _cuda_ops.lowrank_correction(x, A, B, keys, np.ones(4), out)
            base = None if per_member else cupy.ones((batch, n), np.float32)
            half = x.astype(np.float16)
            _cuda_ops.lowrank_correction(half, A, B, keys, np.ones(4), out, base=base)
            xt = cupy.ones((4, batch, n) if per_member else (batch, n), np.float32)
            out_t = cupy.zeros((4, batch, m), np.float32)
            _cuda_ops.lowrank_correction(xt, A, B, keys, np.ones(4), out_t, transpose=True)
    for shift in (1, 3):  # views at 4- and 12-byte offsets: the scalar paths
        buf = cupy.zeros(4 * 37 + shift, dtype=np.uint32)
        noise.philox4x32_10(buf[shift:].reshape(37, 4), np.array([1, 2], np.uint32))
        A, B = noise.factors(0, 1, [0, 1], 0, (9, 12), 2, xp="cupy")
        flat = cupy.zeros(2 * 3 * 12 + shift, np.float32)
        out = flat[shift:].reshape(2, 3, 12)
        _cuda_ops.lowrank_correction(cupy.ones((3, 9), np.float32), A, B, [0, 1], [1.0, 1.0], out)
    cupy.cuda.Device().synchronize()
    return {"ok": True}


PROBES: dict[str, Callable[[], dict[str, Any]]] = {
    "many_rows": probe_many_rows,
    "over_2_31_elements": probe_over_2_31_elements,
    "non_default_stream": probe_non_default_stream,
    "misaligned_views": probe_misaligned_views,
    "engine_takes_cuda_path": probe_engine_takes_cuda_path,
}
