"""Low-rank algebra on stacked factors: the population correction and the update contraction.

Member i of a population perturbs a matrix leaf W (m, n) by coef_i * A_k @ B_k.T with k = keys[i],
A (K, m, r) and B (K, n, r) the stacked factors of the K unique member keys. These functions never
form an (m, n) matrix per member: the forward adds (x_i @ A_k) @ B_k.T to x_i @ W, and the update
sums sum_k w_k A_k @ B_k.T as ONE contraction of (m, K*r) by (K*r, n). The code is generic over
NumPy and CuPy (the array module of the inputs); the dispatch table (`eggroll_np.dispatch`)
hands `correction` on float32 NumPy work of rank <= 8 to the C++ core's fused kernels, and
`expand_reference` is the array code they are tested against. NumPy updates (`contract`,
`contract_full`) run on the core's `contract`, which adds the keys' terms in a fixed order: the
update's bits then depend on no BLAS, thread count, SIMD level or machine (`_reference.contract`
is its NumPy statement).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from . import _ext, dispatch
from .backend import namespace_of

__all__ = [
    "correction",
    "correction_reference",
    "correction_transposed",
    "expand_reference",
    "contract",
    "contract_reference",
    "contract_full",
]

# Members per chunk of the reference expansion: (c, Bt, n) products stay cache-sized.
_CHUNK_VALUES = 1 << 20


def _shared_projection(x: Any, A: Any) -> Any:
    """x (Bt, m) @ A_k for every key as ONE GEMM: (Bt, m) @ (m, K*r) -> (K, Bt, r) view."""
    K, m, r = A.shape
    return (x @ A.transpose(1, 0, 2).reshape(m, K * r)).reshape(x.shape[0], K, r).transpose(1, 0, 2)


def correction(x: Any, A: Any, B: Any, keys: Any, coef: Any, out: Any, base: Any = None) -> Any:
    """out[i] += coef[i] * (x_i @ A[keys[i]]) @ B[keys[i]].T, in place.

    The standalone correction kernel (benchmarks, GPU probes); the population layers add the
    same term inside their fused epilogue (`eggroll_np.epilogue`).

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
    impl = dispatch.select("lowrank_correction", [out, A, B, base, x])
    return impl(x, A, B, keys, coef, out, base=base)


def correction_core(
    x: np.ndarray, A: np.ndarray, B: np.ndarray, keys: Any, coef: Any, out: np.ndarray,
    base: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """`correction` on the C++ core's fused kernels (float32, C order, rank <= 8)."""
    if base is not None:
        out[...] = base
    keys32 = np.ascontiguousarray(keys, dtype=np.uint32)
    coef32 = np.ascontiguousarray(coef, dtype=np.float32)
    if x.ndim == 2:
        xa = np.ascontiguousarray(_shared_projection(x, A))  # (K, Bt, r)
        _ext.core.lowrank_expand(xa, keys32, B, keys32, coef32, out)
    else:
        _ext.core.lowrank_correction(x, A, B, keys32, coef32, out)
    return out


def correction_reference(
    x: Any, A: Any, B: Any, keys: Any, coef: Any, out: Any, base: Any = None
) -> Any:
    """`correction` in NumPy/CuPy array code (any dtype, any rank): the reference and fallback."""
    xp = namespace_of(out)
    if base is not None:
        out[...] = base
    if x.ndim == 2:
        expand_reference(_shared_projection(x, A), keys, B, keys, coef, out)
    else:
        expand_reference(xp.matmul(x, A[keys]), xp.arange(out.shape[0]), B, keys, coef, out)
    return out


def expand_reference(xa: Any, xa_rows: Any, R: Any, keys: Any, coef: Any, out: Any) -> Any:
    """out[i] += coef[i] * xa[xa_rows[i]] @ R[keys[i]].T in array code: the one reference of
    the low-rank term of every population layer (`correction`, the epilogues).

    xa (X, Bt, r): projections (x @ A_k of a shared input per key, or per member); R (K, n, r).
    """
    xp = namespace_of(out)
    n_members, bt, n = out.shape
    r = R.shape[2]
    Rt = R.transpose(0, 2, 1)  # (K, r, n) view
    # Members in chunks whose (c, Bt, n) product fits in a cache-sized buffer: no temporary as
    # large as `out`, and the += runs on data that is still in cache.
    step = max(1, _CHUNK_VALUES // max(1, bt * n))
    tmp = xp.empty((min(step, n_members), bt, n), dtype=out.dtype)
    for s in range(0, n_members, step):
        sl = slice(s, s + step)
        k = keys[sl]
        c = k.shape[0]
        t = xa[xa_rows[sl]] * coef[sl].reshape(-1, 1, 1).astype(xa.dtype, copy=False)
        if r == 1:  # an outer product: broadcasting is several times faster than matmul here
            xp.multiply(t, Rt[k], out=tmp[:c])
        else:
            xp.matmul(t, Rt[k], out=tmp[:c])
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


def contract(A: Any, B: Any, w: Any, scale: float, kept: tuple[dict, Any] | None = None) -> Any:
    """`scale * sum_k w[k] * A[k] @ B[k].T` as one GEMM.

    Args:
        A: (K, m, r), B: (K, n, r) factors; w: (K,) weights.
        scale: a Python float folded into the weights (w * scale, then cast to the factors'
            dtype), so the (m, n) result is written once.

    Returns:
        (m, n) array in the factors' dtype. The sum is high rank: it is NOT
        (sum_k w_k A_k) @ (sum_k w_k B_k).T. On NumPy with the C++ core, the same bits on every
        machine (see the module docstring); on CuPy, cuBLAS's.
    `kept`: (memo, key) for `dispatch.select_kept`, where key fixes the arrays' kinds.
    """
    ws = (w if scale == 1.0 else w * scale).astype(A.dtype, copy=False)  # x * 1.0 is x
    if ws.ndim != 1:
        ws = ws.reshape(-1)
    memo, key = kept or (None, None)
    return dispatch.select_kept(memo, key, "contract", [A, B, ws])(A, B, ws)


def contract_reference(A: Any, B: Any, w: Any) -> Any:
    """`contract`'s sum_k w[k] * A[k] @ B[k].T with the array library's GEMM (BLAS/cuBLAS)."""
    K, m, r = A.shape
    n = B.shape[1]
    aw = A * w.reshape(-1, 1, 1)  # (K, m, r): the only pass over a factor besides the GEMM itself
    if r == 1:
        # (K, m)^T @ (K, n): BLAS reads the transposed operand in place, no copies.
        return aw.reshape(K, m).T @ B.reshape(K, n)
    # (m, K*r) @ (K*r, n) with the stacked rank index contracted together with the keys.
    return aw.transpose(0, 2, 1).reshape(K * r, m).T @ B.transpose(0, 2, 1).reshape(K * r, n)


@functools.lru_cache(maxsize=16)
def _host_ones(K: int, dtype: np.dtype) -> np.ndarray:
    """A read-only (K, 1, 1) array of ones: the same for every generation of a run."""
    ones = np.ones((K, 1, 1), dtype=dtype)
    ones.flags.writeable = False
    return ones


def contract_full(E: Any, w: Any, scale: float, kept: tuple[dict, Any] | None = None) -> Any:
    """`scale * sum_k w[k] * E[k]` for full-rank noise E `(K, *shape)` -> shape.

    `contract` of a one-row contraction (A = ones: w[k] * 1 is w[k] exactly), so on NumPy with
    the C++ core the keys are summed in order (machine-independent bits).
    """
    K = E.shape[0]
    xp = namespace_of(E)
    ones = _host_ones(K, E.dtype) if xp is np else xp.ones((K, 1, 1), dtype=E.dtype)
    g = contract(ones, E.reshape(K, -1, 1), w, 1.0, kept)[0]
    if scale != 1.0:  # x * 1.0 is x, bit for bit (the update passes 1.0): no pass to make
        g *= scale
    return g.reshape(E.shape[1:])
