"""Integer operations of the dispatch table: their array-code rows and the calls that select them.

The "numpy" rows here are exact and fast without a compiled kernel: a product of two int8
values is at most 2^14 in magnitude, so a float32 GEMM over K <= 1024 terms (every partial sum
an integer of magnitude <= 2^24) or a float64 GEMM over K <= 2^39 terms is exact in any
summation order, FMA or not; that runs on BLAS (cuBLAS for CuPy arrays) instead of NumPy's
integer matmul (no BLAS, ~100x slower). Beyond those bounds they fall back to int64. The tests
compare every row with `intmath`'s plain int64 reference; compiled rows ("core"/"cuda", int8)
plug in through `eggroll_np.dispatch` with the same signatures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import dispatch
from .backend import namespace_of

__all__ = [
    "exact_float",
    "gemm",
    "gemm_numpy",
    "int_epilogue",
    "epilogue_numpy",
    "contract",
    "contract_numpy",
    "xa_per_member",
    "xa_numpy",
    "linear",
    "linear_numpy",
]

#: The most terms K of one int8 GEMM (K * 128 * 128 < 2^31 keeps its int32 sums exact).
MAX_DEPTH = 131071


def exact_float(terms: int, bound: int) -> Any:
    """float32 or float64 when a sum of `terms` integers of magnitude <= `bound` is exact in
    it whatever the order (every partial sum <= 2^24 or 2^53), else None (use int64)."""
    total = int(terms) * int(bound)
    if total <= 2**24:
        return np.float32
    if total <= 2**53:
        return np.float64
    return None


def _matmul_exact(x: Any, w: Any, terms: int, bound: int) -> Any:
    """x @ w (integer arrays, any batch dims) exactly, as int64 (or float when exact)."""
    xp = namespace_of(x)
    ft = exact_float(terms, bound)
    if ft is None:
        return xp.matmul(x.astype(np.int64), w.astype(np.int64))
    return xp.matmul(x.astype(ft), w.astype(ft))


def gemm_numpy(x: Any, w: Any, out: Any) -> Any:
    """The "int_gemm" array-code row: out (M, n) int32 = x (M, K) int8 @ w (K, n) int8."""
    out[...] = _matmul_exact(x, w, x.shape[1], 128 * 128)
    return out


def gemm(x: Any, w: Any) -> Any:
    """x (M, K) int8 @ w (K, n) int8 -> int32 (M, n), exact (K <= MAX_DEPTH), on the table's row."""
    xp = namespace_of(x)
    if x.shape[1] > MAX_DEPTH:
        raise ValueError(
            f"an int8 GEMM over {x.shape[1]} terms could overflow int32 (max {MAX_DEPTH})"
        )
    x = xp.ascontiguousarray(x)
    w = xp.ascontiguousarray(w)
    out = xp.empty((x.shape[0], w.shape[1]), dtype=np.int32)
    dispatch.select("int_gemm", [x, w, out])(x, w, out)
    return out


#: The output values per chunk of the array-code epilogue (its float64 temporaries stay in cache).
_EPILOGUE_CHUNK = 1 << 16


def epilogue_numpy(
    out: Any, acc: Any, xa: Any, xa_rows: Any, right: Any, keys: Any, signs: Any, bias: Any,
    shift_lr: int, shift_out: int, relu: bool,
) -> None:  # fmt: skip
    """The "int_epilogue" array-code row (the rule in `intmath.epilogue_reference`):
    out[i] = clip(((acc + ((s_i * xa[xa_rows[i]] @ right[keys[i]].T) >> shift_lr))
    >> shift_out) + bias[i]), then relu. Shapes as in `int_epilogue`.

    Computed in float64, which is exact here: every value is an integer below 2^53
    (abs(xa) < 2^31, abs(right) <= 128, r < 2^14), a product by 2^-s is exact and floor(v 2^-s) is
    v >> s. Members go in chunks so that the temporaries stay in cache.
    """
    xp = namespace_of(out)
    N, rows, n = out.shape
    if xa is not None and xa.shape[2] >= 1 << 14:
        raise ValueError(f"int_epilogue takes rank < 16384, got {xa.shape[2]}")
    step = max(1, _EPILOGUE_CHUNK // max(1, rows * n))
    lr_scale, out_scale = 2.0**-shift_lr, 2.0**-shift_out
    shared = acc.ndim == 2
    acc_f = acc.astype(np.float64) if shared else None
    lo = 0.0 if relu else -127.0
    for s in range(0, N, step):
        e = min(N, s + step)
        v = xp.empty((e - s, rows, n), dtype=np.float64)
        if xa is not None:
            xp.matmul(
                xa[xa_rows[s:e]].astype(np.float64),
                right[keys[s:e]].astype(np.float64).transpose(0, 2, 1),
                out=v,
            )
            v *= (signs[s:e].astype(np.float64) * lr_scale).reshape(-1, 1, 1)
            xp.floor(v, out=v)
            v += acc_f if shared else acc[s:e]
        else:
            v[...] = acc_f if shared else acc[s:e]
        v *= out_scale
        xp.floor(v, out=v)
        if bias is not None:
            v += bias[s:e, None, :]
        xp.clip(v, lo, 127.0, out=v)
        out[s:e] = v


def int_epilogue(
    out: Any, acc: Any, xa: Any, xa_rows: Any, right: Any, keys: Any, signs: Any, bias: Any,
    shift_lr: int, shift_out: int, relu: bool,
) -> Any:  # fmt: skip
    """One pass writing an int8 layer output from its int32 accumulators (table row).

    Args:
        out: int8 (N, B, n), written.
        acc: int32 (B, n) shared or (N, B, n).
        xa: int32 (R, B, r) rows x @ a, or None (no low-rank term).
        xa_rows: uint32 (N,) row of xa of member i; right: int8 (K, n, r) the b factors;
            keys: uint32 (N,) row of right of member i; signs: int8 (N,) +1/-1.
        bias: int8 (N, n) per-member bias, or None.
        shift_lr: F + k + h; shift_out: F + d (0 for an embedding); relu: clamp below at 0.

    Returns:
        out.
    """
    xp = namespace_of(out)
    c = xp.ascontiguousarray
    args = [c(a) if a is not None else None for a in (acc, xa, xa_rows, right, keys, signs, bias)]
    fn = dispatch.select("int_epilogue", [out, args[1], args[3], args[6]])
    fn(out, *args[:6], args[6], int(shift_lr), int(shift_out), bool(relu))
    return out


def contract_numpy(a: Any, b: Any, c: Any) -> Any:
    """The "int_contract" array-code row: Z = sum_k c_k a_k @ b_k.T as int32 (m, n), one GEMM
    of c-folded a (m, K*r) by b (K*r, n) (`gemm`; c in {-1, 0, 1} keeps the factors int8)."""
    xp = namespace_of(a)
    K, m, r = a.shape
    left = (a * c.astype(np.int8).reshape(-1, 1, 1)).transpose(1, 0, 2).reshape(m, K * r)
    right = b.transpose(0, 2, 1).reshape(K * r, b.shape[1])
    return gemm(xp.ascontiguousarray(left), xp.ascontiguousarray(right))


def contract(a: Any, b: Any, c: Any) -> Any:
    """Z = sum_k c_k a_k @ b_k.T exactly: int32 (m, n) when K * r * 127^2 < 2^31 (the table's
    row), else int64 (`intmath.contract_reference`). a int8 (K, m, r), b int8 (K, n, r),
    c (K,) in {-1, 0, 1}."""
    K, _, r = a.shape
    if K * r * 127 * 127 >= 2**31:
        xp = namespace_of(a)
        ac = a.astype(np.int64) * c.astype(np.int64).reshape(-1, 1, 1)
        return xp.einsum("kmr,knr->mn", ac, b.astype(np.int64))
    c8 = namespace_of(a).asarray(c, dtype=np.int8)
    return dispatch.select("int_contract", [a, b, c8])(a, b, c8)


def xa_numpy(x: Any, a: Any, keys: Any) -> Any:
    """The "int_xa" array-code row: int32 (N, B, r), xa[i] = x[i] @ a[keys[i]]."""
    return _matmul_exact(x, a[keys], x.shape[2], 128 * 128).astype(np.int32)


def xa_per_member(x: Any, a: Any, keys: Any) -> Any:
    """x (N, B, m) int8 times each member's factor a[keys[i]] (a int8 (K, m, r)): int32."""
    xp = namespace_of(x)
    x, a, keys = xp.ascontiguousarray(x), xp.ascontiguousarray(a), xp.ascontiguousarray(keys)
    return dispatch.select("int_xa", [x, a])(x, a, keys)


def linear_numpy(
    x: Any, w: Any, out: Any, a: Any = None, b: Any = None, keys: Any = None, signs: Any = None,
    lr_shift: int = 0, bias: Any = None, bias_noise: Any = None, bias_shift: int = 0,
    out_shift: int = 0, relu: bool = False,
) -> None:  # fmt: skip
    """The "int_linear" array-code row: `int_gemm` rows, then `int_epilogue` (see `linear`)."""
    xp = namespace_of(out)
    N, B, n = out.shape
    m = x.shape[2]
    shared = x.shape[0] == 1
    keys = xp.zeros(N, dtype=np.uint32) if keys is None else keys
    signs = xp.ones(N, dtype=np.int8) if signs is None else signs
    if w.ndim == 3:  # each member's own (full-rank) weights
        acc = xp.stack([gemm(x[0 if shared else i], w[i]) for i in range(N)])
    else:
        acc = gemm(x.reshape(-1, m), w).reshape(x.shape[0], B, n)
        acc = acc[0] if shared else acc
    xa = xa_rows = None
    if a is not None:
        K, _, r = a.shape
        if shared:  # x @ a_k of every key as ONE GEMM: (B, m) @ (m, K*r) -> (K, B, r)
            xa = gemm(x[0], xp.ascontiguousarray(a.transpose(1, 0, 2).reshape(m, K * r)))
            xa = xp.ascontiguousarray(xa.reshape(B, K, r).transpose(1, 0, 2))
            xa_rows = keys
        else:
            xa = xa_per_member(x, a, keys)
            xa_rows = xp.arange(N, dtype=np.uint32)
    if bias is not None and bias_noise is not None:
        t = signs.astype(np.int16)[:, None] * bias_noise[keys].astype(np.int16)
        bias = xp.clip(bias.astype(np.int16) + xp.right_shift(t, bias_shift), -127, 127)
        bias = bias.astype(np.int8)
    elif bias is not None and bias.ndim == 1:
        bias = xp.broadcast_to(bias, (N, n))
    epilogue_numpy(out, acc, xa, xa_rows, b, keys, signs, bias, lr_shift, out_shift, relu)


def linear(
    x: Any, w: Any, out: Any, a: Any = None, b: Any = None, keys: Any = None, signs: Any = None,
    lr_shift: int = 0, bias: Any = None, out_shift: int = 0, relu: bool = False,
) -> Any:  # fmt: skip
    """Every member's int8 layer in one call of the table's "int_linear" row.

    out[i] = clip(floor((x_i @ W_i + floor(s_i (x_i @ a_k) @ b_k.T / 2^lr_shift))
    / 2^out_shift) + bias_i), then relu, k = keys[i].

    Args:
        x: int8 (1, B, m) shared or (N, B, m) per member.
        w: int8 (m, n), or (N, m, n) each member's own weights (full-rank leaves).
        out: int8 (N, B, n), written.
        a, b: int8 (K, m, r), (K, n, r) factors of the keys, or None (no low-rank term).
        keys: uint32 (N,) each member's key; signs: int8 (N,) +1/-1.
        lr_shift: F + k + h; out_shift: F + d.
        bias: int8 (N, n) each member's bias, or None.
        relu: clamp below at 0.

    Returns:
        out.
    """
    xp = namespace_of(out)
    c = xp.ascontiguousarray
    args = [None if v is None else c(v) for v in (x, w, a, b, keys, signs, bias)]
    x, w, a, b, keys, signs, bias = args
    fn = dispatch.select("int_linear", [out, x, w, a, b, bias])
    fn(x, w, out, a, b, keys, signs, int(lr_shift), bias, None, 0, int(out_shift), bool(relu))
    return out
