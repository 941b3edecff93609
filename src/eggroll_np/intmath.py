"""Integer leaves: the NumPy int64 reference of every rule of the contract (docs/noise-contract.md).

An int8 entry q stands for q * 2^-F (F = 4). Every function here computes in int64 with plain
NumPy integer operations (no BLAS, no floats after quantizing the noise), so it is the
independent reference that the fast rows of the dispatch table (`intops`) are tested against.
floor(v / 2^s) is an arithmetic right shift, `v >> s`, for negative v too.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from .backend import namespace_of

__all__ = [
    "F",
    "QMAX",
    "quantize",
    "rank_shift",
    "width_shift",
    "shift_floor",
    "clip8",
    "perturb_full",
    "member_lowrank",
    "gemm_reference",
    "epilogue_reference",
    "linear_reference",
    "linear_full_reference",
    "embed_reference",
    "contract_reference",
    "threshold",
    "tau",
]

#: The fraction bits F of an int8 value (q stands for q / 16).
F = 4
#: Largest magnitude of an int8 leaf entry, noise value or activation (-128 is never produced).
QMAX = 127


def quantize(z: Any) -> Any:
    """Integer noise from the contract's float32 normals: clip(rint(16 z), -127, 127) as int8.

    Args:
        z: float32 array (NumPy or CuPy), any shape. 16 * z is exact in float32, and rint
            rounds half to even.

    Returns:
        int8 array of z's shape and backend.
    """
    xp = namespace_of(z)
    v = xp.rint(xp.asarray(z, dtype=np.float32) * np.float32(16))
    return xp.clip(v, -QMAX, QMAX).astype(np.int8)


def rank_shift(r: int) -> int:
    """h = log4(r) for a rank r in 1, 4, 16, ... (ValueError otherwise)."""
    h = 0
    while 4**h < r:
        h += 1
    if r < 1 or 4**h != r:
        raise ValueError(f"rank must be a power of 4 (1, 4, 16, ...) with int8 leaves, got {r}")
    return h


def width_shift(m: int) -> int:
    """d = (bit_length(m) - 1) // 2: the output shift 2^d ~ sqrt(m) of a layer with m inputs."""
    return (int(m).bit_length() - 1) // 2


def shift_floor(v: np.ndarray, s: int) -> np.ndarray:
    """floor(v / 2^s) for int64 v: an arithmetic right shift."""
    return np.right_shift(np.asarray(v, dtype=np.int64), np.int64(s))


def clip8(v: np.ndarray) -> np.ndarray:
    """clip(v, -127, 127) as int8."""
    return np.clip(v, -QMAX, QMAX).astype(np.int8)


def _i64(a: Any) -> np.ndarray:
    return np.asarray(a).astype(np.int64)


def perturb_full(q: np.ndarray, e: np.ndarray, keys: Any, signs: Any, k: int) -> np.ndarray:
    """Every member of a full-rank int8 leaf: q_i = clip(q + floor(s_i * e_(keys[i]) / 2^k)).

    Args:
        q: int8 leaf, shape S.
        e: int8 `(K, *S)` quantized noise of the unique keys.
        keys: (N,) row of e of each member; signs: (N,) +1/-1.
        k: int_sigma_shift.

    Returns:
        int8 `(N, *S)`.
    """
    s = _i64(signs).reshape(-1, *([1] * q.ndim))
    return clip8(_i64(q)[None] + shift_floor(s * _i64(e)[_i64(keys)], k))


def member_lowrank(q: np.ndarray, a: np.ndarray, b: np.ndarray, sign: int, k: int, h: int) -> Any:
    """Weight-space member of a low-rank int8 leaf (`pop.member`).

    W_i = clip(q + floor(sign * (a @ b.T) / 2^(F + k + h))), q int8 (m, n) (or the matrix view
    of an ndim >= 3 leaf, reshaped back), a int8 (m, r), b int8 (n, r). Returns int8 of q's shape.
    """
    m = q.shape[0]
    t = _i64(a) @ _i64(b).T
    v = _i64(q).reshape(m, -1) + shift_floor(int(sign) * t, F + k + h)
    return clip8(v).reshape(q.shape)


def gemm_reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w in int64 (x (M, K), w (K, n) integers)."""
    return _i64(x) @ _i64(w)


def epilogue_reference(
    acc: np.ndarray, t: np.ndarray | None, signs: Any, bias: np.ndarray | None,
    shift_lr: int, shift_out: int, relu: bool,
) -> np.ndarray:  # fmt: skip
    """The output rule of a layer from its accumulators.

    Args:
        acc: int64 (B, n) shared or (N, B, n): x @ W (or W[ids]).
        t: int64 (N, B, n) low-rank products (x_i @ a_i) @ b_i.T, or None.
        signs: (N,) +1/-1; bias: int8 (N, n) per-member bias or None.
        shift_lr: F + k + h; shift_out: F + d (0 for an embedding).
        relu: max(y, 0) after the clip.

    Returns:
        int8 (N, B, n): clip(floor((acc + floor(s_i t_i / 2^shift_lr)) / 2^shift_out) + bias_i).
    """
    N = len(signs)
    v = np.broadcast_to(_i64(acc), (N, *acc.shape[-2:])).astype(np.int64)
    if t is not None:
        v = v + shift_floor(_i64(signs).reshape(-1, 1, 1) * t, shift_lr)
    y = shift_floor(v, shift_out)
    if bias is not None:
        y = y + _i64(bias)[:, None, :]
    y = np.clip(y, -QMAX, QMAX)
    if relu:
        y = np.maximum(y, 0)
    return y.astype(np.int8)


def _lowrank_t(x: np.ndarray, a: np.ndarray, b: np.ndarray, keys: Any) -> np.ndarray:
    """(x_i @ a_k) @ b_k.T for every member, int64 (N, B, n); x (B, m) or (N, B, m)."""
    keys = _i64(keys)
    ak, bk = _i64(a)[keys], _i64(b)[keys]  # (N, m, r), (N, n, r)
    xa = np.matmul(_i64(x), ak)  # (N, B, r), broadcasting a shared x
    return np.matmul(xa, bk.transpose(0, 2, 1))


def linear_reference(
    x: np.ndarray, w: np.ndarray, a: np.ndarray | None, b: np.ndarray | None, keys: Any,
    signs: Any, bias: np.ndarray | None, k: int, relu: bool = False,
) -> np.ndarray:  # fmt: skip
    """`pop.linear` on a low-rank (a, b given) or frozen (None) int8 leaf.

    acc_i = x_i @ W + floor(s_i ((x_i @ a_k) @ b_k.T) / 2^(F + k + h)),
    y_i = clip(floor(acc_i / 2^(F + d)) + bias_i), then relu.

    Args:
        x: int8 (B, m) shared or (N, B, m) per member.
        w: int8 (m, n).
        a, b: int8 (K, m, r), (K, n, r) quantized factors of the unique keys, or None.
        keys: (N,) row of a/b of each member; signs: (N,) +1/-1.
        bias: int8 (N, n) each member's bias, or None.
        k: int_sigma_shift.

    Returns:
        int8 (N, B, n).
    """
    m = w.shape[0]
    acc = np.matmul(_i64(x), _i64(w))  # (B, n) or (N, B, n)
    t = None if a is None else _lowrank_t(x, a, b, keys)
    h = 0 if a is None else rank_shift(a.shape[2])
    return epilogue_reference(acc, t, signs, bias, F + k + h, F + width_shift(m), relu)


def linear_full_reference(
    x: np.ndarray, w_members: np.ndarray, bias: np.ndarray | None, relu: bool = False
) -> np.ndarray:
    """`pop.linear` on a full-rank int8 leaf: acc_i = x_i @ W_i, W_i int8 (N, m, n) from
    `perturb_full`; x int8 (B, m) or (N, B, m). Returns int8 (N, B, n)."""
    N, m = w_members.shape[:2]
    acc = np.matmul(_i64(x), _i64(w_members))
    return epilogue_reference(acc, None, np.ones(N), bias, 0, F + width_shift(m), relu)


def embed_reference(
    ids: np.ndarray, w: np.ndarray, a: np.ndarray | None, b: np.ndarray | None, keys: Any,
    signs: Any, k: int,
) -> np.ndarray:  # fmt: skip
    """`pop.embed` on a low-rank (or frozen: a = b = None) int8 table w (V, d).

    ids: (L,) shared or (N, L) per member. Returns int8 (N, L, d):
    clip(W[ids] + floor(s_i (a_k[ids] @ b_k.T) / 2^(F + k + h))).
    """
    N = len(signs)
    ids = _i64(ids)
    base = _i64(w)[ids]  # (L, d) or (N, L, d)
    if a is None:
        return epilogue_reference(base, None, signs, None, 0, 0, False)
    keys = _i64(keys)
    rows = ids if ids.ndim == 2 else np.broadcast_to(ids, (N, ids.shape[0]))
    xa = _i64(a)[keys[:, None], rows]  # (N, L, r)
    t = np.matmul(xa, _i64(b)[keys].transpose(0, 2, 1))
    return epilogue_reference(base, t, signs, None, F + k + rank_shift(a.shape[2]), 0, False)


def contract_reference(a: np.ndarray, b: np.ndarray, c: Any) -> np.ndarray:
    """Z = sum_k c_k a_k @ b_k.T in int64: a int8 (K, m, r), b int8 (K, n, r), c (K,) ints."""
    K, m, r = a.shape
    ac = _i64(a) * _i64(c).reshape(-1, 1, 1)
    return ac.transpose(1, 0, 2).reshape(m, K * r) @ _i64(b).transpose(0, 2, 1).reshape(K * r, -1)


def threshold(q: np.ndarray, Z: np.ndarray, tau_: int) -> np.ndarray:
    """One step per entry where abs(Z) >= tau: clip(q + sign(Z) * [abs(Z) >= tau]) as int8."""
    Z = _i64(Z)
    step = np.sign(Z) * (np.abs(Z) >= tau_)
    return clip8(_i64(q) + step.reshape(q.shape))


def tau(alpha: float, v: float, P: int) -> int:
    """The update threshold ceil(Phi^-1(1 - alpha/2) * v * sqrt(P)) in float64.

    Under pure noise Z of an entry is ~ Normal(0, v^2 P), so about a fraction alpha of the
    entries has abs(Z) >= tau.
    """
    return math.ceil(NormalDist().inv_cdf(1.0 - alpha / 2.0) * v * math.sqrt(P))
