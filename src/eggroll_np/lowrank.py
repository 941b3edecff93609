"""Low-rank algebra on stacked factors: the population correction and the update contraction.

Member i of a population perturbs a matrix leaf W (m, n) by coef_i * A_k @ B_k.T with k = keys[i],
A (K, m, r) and B (K, n, r) the stacked factors of the K unique member keys. These functions never
form an (m, n) matrix per member: the forward adds (x_i @ A_k) @ B_k.T to x_i @ W, and the update
sums sum_k w_k A_k @ B_k.T as ONE contraction of (m, K*r) by (K*r, n). The code is generic over
NumPy and CuPy (the array module of the inputs); `correction` hands float32 NumPy work of rank <= 8
to the C++ core's fused kernels (`_core.lowrank_correction` / `_core.lowrank_expand`), and
`correction_reference` is the NumPy version they are tested against. NumPy updates
(`contract`, `contract_full`) run on the core's `contract`, which adds the keys' terms in a fixed
order: the update's bits then depend on no BLAS, thread count, SIMD level or machine
(`_reference.contract` is its NumPy statement).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _ext
from .backend import is_cupy_array, namespace_of

__all__ = [
    "correction",
    "correction_reference",
    "correction_transposed",
    "contract",
    "contract_full",
]

# Values of the per-chunk product buffer in `correction` (4 MiB of float32).
_CHUNK_VALUES = 1 << 20


def _shared_projection(x: Any, A: Any) -> Any:
    """x (Bt, m) @ A_k for every key as ONE GEMM: (Bt, m) @ (m, K*r) -> (K, Bt, r) view."""
    K, m, r = A.shape
    return (x @ A.transpose(1, 0, 2).reshape(m, K * r)).reshape(x.shape[0], K, r).transpose(1, 0, 2)


# Ranks the C++ kernels take: measured against NumPy's batched matmul at ranks 1-16 (three runs,
# docs/benchmarks.md, "Low-rank correction kernels by rank"): faster on rl and sup at every rank
# up to 8, a draw on per-member multi-row inputs at ranks 4-8, mixed at 16 (BLAS keeps r > 8).
_CORE_MAX_RANK = 8


def _use_core(x: Any, A: Any, B: Any, out: Any) -> bool:
    # float32 NumPy buffers laid out in C order, and a rank the kernels win at.
    return (
        _ext.core is not None
        and A.shape[2] <= _CORE_MAX_RANK
        and all(
            isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
            for a in (x, A, B, out)
        )
        and out.flags.writeable
    )


def _use_cuda(x: Any, A: Any, B: Any, out: Any) -> bool:
    # float32 CuPy work (x may be float16) goes to the fused CUDA kernels when they are built.
    return (
        _ext.cuda is not None
        and is_cupy_array(out)
        and out.dtype == np.float32
        and A.dtype == B.dtype == np.float32
        and x.dtype in (np.float32, np.float16)
        and out.flags.c_contiguous
    )


def correction(x: Any, A: Any, B: Any, keys: Any, coef: Any, out: Any, base: Any = None) -> Any:
    """out[i] += coef[i] * (x_i @ A[keys[i]]) @ B[keys[i]].T, in place.

    Args:
        x: shared input (Bt, m) or per-member inputs (N, Bt, m).
        A: (K, m, r) left factors.
        B: (K, n, r) right factors.
        keys: (N,) integer index of each member's factors in [0, K).
        coef: (N,) per-member scale (sigma * s_i / sqrt(r) for the population forward).
        out: (N, Bt, n) array to accumulate into (same dtype as A, B and x).
        base: None, or (Bt, n) x @ W of a shared x: out[i] is then SET to base + correction
            (out's old contents are not read; on the GPU one pass over out instead of three).

    Returns:
        out.
    """
    if _use_cuda(x, A, B, out) and (base is None or _use_cuda(x, A, B, base)):
        from . import _cuda_ops  # imports CuPy: only on the GPU path

        return _cuda_ops.lowrank_correction(x, A, B, keys, coef, out, base=base)
    if base is not None:
        out[...] = base
    if not _use_core(x, A, B, out):
        return correction_reference(x, A, B, keys, coef, out)
    keys32 = np.ascontiguousarray(keys, dtype=np.uint32)
    coef32 = np.ascontiguousarray(coef, dtype=np.float32)
    if x.ndim == 2:
        xa = np.ascontiguousarray(_shared_projection(x, A))  # (K, Bt, r)
        _ext.core.lowrank_expand(xa, keys32, B, keys32, coef32, out)
    else:
        _ext.core.lowrank_correction(x, A, B, keys32, coef32, out)
    return out


def correction_reference(x: Any, A: Any, B: Any, keys: Any, coef: Any, out: Any) -> Any:
    """`correction` in NumPy/CuPy array code (any dtype, any rank): the reference and fallback."""
    xp = namespace_of(out)
    K, m, r = A.shape
    n_members, bt, n = out.shape
    if x.ndim == 2:
        xa_keys = _shared_projection(x, A)  # gathered per member below
    Bt = B.transpose(0, 2, 1)  # (K, r, n) view
    # Members in chunks whose (c, Bt, n) product fits in a cache-sized buffer: no temporary as
    # large as `out`, and the += runs on data that is still in cache.
    step = max(1, _CHUNK_VALUES // max(1, bt * n))
    tmp = xp.empty((min(step, n_members), bt, n), dtype=out.dtype)
    for s in range(0, n_members, step):
        sl = slice(s, s + step)
        k = keys[sl]
        c = k.shape[0]
        xa = xa_keys[k] if x.ndim == 2 else xp.matmul(x[sl], A[k])  # (c, Bt, r)
        xa *= coef[sl].reshape(-1, 1, 1).astype(xa.dtype, copy=False)
        if r == 1:  # an outer product: broadcasting is several times faster than matmul here
            xp.multiply(xa, Bt[k], out=tmp[:c])
        else:
            xp.matmul(xa, Bt[k], out=tmp[:c])
        out[sl] += tmp[:c]
    return out


def correction_transposed(
    x: Any, A: Any, B: Any, keys: Any, coef: Any, out: Any, base: Any = None
) -> Any:
    """out[i] += coef[i] * x_i @ (A[keys[i]] @ B[keys[i]].T).T = coef[i] * (x_i @ B_k) @ A_k.T.

    Shapes as in `correction` with m and n swapped: x (Bt, n) or (N, Bt, n), out (N, Bt, m),
    base (Bt, m).
    """
    return correction(x, B, A, keys, coef, out, base)


def _exact_core(*arrays: Any) -> bool:
    # The deterministic C++ contraction takes float32/float64 NumPy arrays of one dtype.
    dt = arrays[0].dtype
    return (
        _ext.core is not None
        and dt in (np.float32, np.float64)
        and all(isinstance(a, np.ndarray) and a.dtype == dt for a in arrays)
    )


def contract(A: Any, B: Any, w: Any, scale: float) -> Any:
    """`scale * sum_k w[k] * A[k] @ B[k].T` as one GEMM.

    Args:
        A: (K, m, r), B: (K, n, r) factors; w: (K,) weights.
        scale: a Python float folded into the weights (w * scale, then cast to the factors'
            dtype), so the (m, n) result is written once.

    Returns:
        (m, n) array in the factors' dtype. The sum is high rank: it is NOT
        (sum_k w_k A_k) @ (sum_k w_k B_k).T. On NumPy with the C++ core, the same bits on every
        machine (see the module docstring); on CuPy, cuBLAS's.
    """
    K, m, r = A.shape
    n = B.shape[1]
    ws = (w * scale).astype(A.dtype, copy=False)
    if _exact_core(A, B):
        return _ext.core.contract(A, B, ws.reshape(-1))
    ws = ws.reshape(-1, 1, 1)
    aw = A * ws  # (K, m, r): the only pass over a factor besides the GEMM itself
    if r == 1:
        # (K, m)^T @ (K, n): BLAS reads the transposed operand in place, no copies.
        return aw.reshape(K, m).T @ B.reshape(K, n)
    # (m, K*r) @ (K*r, n) with the stacked rank index contracted together with the keys.
    return aw.transpose(0, 2, 1).reshape(K * r, m).T @ B.transpose(0, 2, 1).reshape(K * r, n)


def contract_full(E: Any, w: Any, scale: float) -> Any:
    """`scale * sum_k w[k] * E[k]` for full-rank noise E `(K, *shape)` -> shape, one GEMV.

    On NumPy with the C++ core the keys are summed in order (machine-independent bits).
    """
    K = E.shape[0]
    flat = E.reshape(K, -1)
    wt = w.astype(E.dtype, copy=False)
    if _exact_core(flat, wt):  # a 1-row contraction: A = ones, so w[k] * 1 is w[k] exactly
        ones = np.ones((K, 1, 1), dtype=E.dtype)
        g = _ext.core.contract(ones, flat.reshape(K, -1, 1), wt.reshape(-1))[0]
    else:
        g = wt @ flat
    g *= scale
    return g.reshape(E.shape[1:])
