"""Pure-NumPy reference of the noise contract and the update contraction (slow, readable).

`normals` is the ONE float32 operation sequence of csrc/philox.h written in NumPy float32
arithmetic (every operation correctly rounded, none fused), so every compiled backend and SIMD
level must match it bit for bit; `normals_f64` evaluates the same formula in float64 for the
contract's accuracy bound. `contract` is the update's sum over keys in its fixed order (`fma32`:
an exact float32 fused multiply-add in NumPy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "philox4x32_10",
    "normals",
    "normals_f64",
    "uniforms_from_bits",
    "box_muller",
    "box_muller_f32",
    "contract",
    "fma32",
    "philox_key",
]

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counters: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Philox4x32-10 of uint32 counters (n, 4) under uint32 key (2,) -> uint32 (n, 4)."""
    c = np.asarray(counters, dtype=np.uint32).astype(np.uint64)
    c0, c1, c2, c3 = (c[:, j].copy() for j in range(4))
    k0, k1 = int(key[0]), int(key[1])
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & _MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        k0 = (k0 + _W0) & 0xFFFFFFFF
        k1 = (k1 + _W1) & 0xFFFFFFFF
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


def uniforms_from_bits(x: np.ndarray) -> np.ndarray:
    """u = ((x >> 9) + 0.5) * 2^-23 as float64 (exactly the float32 value of the contract)."""
    return ((np.asarray(x, dtype=np.uint32) >> np.uint32(9)).astype(np.float64) + 0.5) * 2.0**-23


def box_muller(ua: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box-Muller in float64: (u_a, u_b) -> (z_a, z_b)."""
    r = np.sqrt(-2.0 * np.log(ua))
    return r * np.cos(2.0 * np.pi * ub), r * np.sin(2.0 * np.pi * ub)


_F = np.float32


def _f32_bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.int32)


def _log_open01(u: np.ndarray) -> np.ndarray:
    """philox.h's log_open01 in float32: ln(u) for u in (0, 1), about 1 ulp."""
    ix = _f32_bits(u) - np.int32(0x3F3504F3)
    k = ix >> 23  # arithmetic shift, as in C++
    m = ((ix & np.int32(0x007FFFFF)) + np.int32(0x3F3504F3)).view(np.float32)
    f = m - _F(1.0)
    s = f / (_F(2.0) + f)
    z = s * s
    w = z * z
    t1 = w * (_F(0.40000972152) + w * _F(0.24279078841))
    t2 = z * (_F(0.66666662693) + w * _F(0.28498786688))
    r = t1 + t2
    hfsq = _F(0.5) * f * f
    dk = k.astype(np.float32)
    return s * (hfsq + r) + dk * _F(9.0580006145e-06) - hfsq + f + dk * _F(6.9313812256e-01)


def _sincos_2pi(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """philox.h's sincos_2pi in float32: (sin(2 pi u), cos(2 pi u)) for u in (0, 1)."""
    rnd = _F(12582912.0)  # 1.5 * 2^23: adding then subtracting rounds to an integer
    t = u - ((u + rnd) - rnd)
    qf = (_F(4.0) * t + rnd) - rnd
    q = qf.astype(np.int32)
    x = (t - _F(0.25) * qf) * _F(6.28318530717958647692)
    x2 = x * x
    sn = x * (
        _F(1.0)
        + x2
        * (
            _F(-1.6666667163e-01)
            + x2 * (_F(8.3333337680e-03) + x2 * (_F(-1.9841270114e-04) + x2 * _F(2.7557314297e-06)))
        )
    )
    cs = _F(1.0) + x2 * (
        _F(-0.5)
        + x2 * (_F(4.1666667908e-02) + x2 * (_F(-1.3888889225e-03) + x2 * _F(2.4801587642e-05)))
    )
    swap = (q & 1) != 0
    sv = np.where(swap, cs, sn)
    cv = np.where(swap, sn, cs)
    sv = np.where((q & 2) != 0, -sv, sv)
    cv = np.where(((q + 1) & 2) != 0, -cv, cv)
    return sv, cv


def box_muller_f32(xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The contract's float32 Box-Muller of two uint32 words: (x_a, x_b) -> (z_a, z_b)."""
    ua = (np.asarray(xa, dtype=np.uint32) >> np.uint32(9)).astype(np.int32).astype(np.float32)
    ub = (np.asarray(xb, dtype=np.uint32) >> np.uint32(9)).astype(np.int32).astype(np.float32)
    ua = ua * _F(1.1920928955078125e-07) + _F(5.9604644775390625e-08)
    ub = ub * _F(1.1920928955078125e-07) + _F(5.9604644775390625e-08)
    r = np.sqrt(_F(-2.0) * _log_open01(ua))
    s, c = _sincos_2pi(ub)
    return r * c, r * s


def _stream_bits(
    seed: int, leaf: int, member_key: int, epoch: int, count: int, offset: int
) -> tuple[np.ndarray, int]:
    first, last = offset // 4, (offset + count + 3) // 4
    blocks = np.arange(first, last, dtype=np.uint64).astype(np.uint32)
    ctr = np.empty((blocks.size, 4), dtype=np.uint32)
    ctr[:, 0] = blocks
    ctr[:, 1] = leaf
    ctr[:, 2] = member_key
    ctr[:, 3] = epoch
    return philox4x32_10(ctr, philox_key(seed)), offset - 4 * first


def _stream(
    seed: int,
    leaf: int,
    member_key: int,
    epoch: int,
    count: int,
    offset: int,
    pair: Any,
    dtype: Any,
) -> np.ndarray:
    # Values [offset, offset + count) of one stream, each block's two lane pairs through `pair`.
    if count == 0:
        return np.zeros(0, dtype=dtype)
    bits, start = _stream_bits(seed, leaf, member_key, epoch, count, offset)
    z = np.empty(bits.shape, dtype=dtype)
    z[:, 0], z[:, 1] = pair(bits[:, 0], bits[:, 1])
    z[:, 2], z[:, 3] = pair(bits[:, 2], bits[:, 3])
    return z.reshape(-1)[start : start + count]


def _box_muller_f64(xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return box_muller(uniforms_from_bits(xa), uniforms_from_bits(xb))


def normals(
    seed: int, leaf: int, member_key: int, epoch: int, count: int, offset: int = 0
) -> np.ndarray:
    """Values [offset, offset + count) of one stream: float32, bit-exact for every backend."""
    return _stream(seed, leaf, member_key, epoch, count, offset, box_muller_f32, np.float32)


def normals_f64(
    seed: int, leaf: int, member_key: int, epoch: int, count: int, offset: int = 0
) -> np.ndarray:
    """The same values from a float64 evaluation of the formula (the contract's 1e-5 bound)."""
    return _stream(seed, leaf, member_key, epoch, count, offset, _box_muller_f64, np.float64)


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a * b + c for float32 arrays (broadcast), rounded ONCE to float32, as a hardware FMA.

    The product is exact in float64 (24 + 24 bits); the sum is rounded to odd in float64 (round
    to nearest, then an inexact result with an even last bit moves one ulp towards the exact
    value, found by TwoSum), and rounding that to float32 is the correctly rounded result
    (Boldo & Melquiond 2008: round-to-odd with >= 2 extra bits makes double rounding exact).
    """
    p = np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)
    c64 = np.asarray(c, dtype=np.float64)
    s = p + c64
    bb = s - p
    err = (p - (s - bb)) + (c64 - bb)  # exact: s + err == p + c64
    even = (s.view(np.int64) & 1) == 0
    nudge = (err != 0) & even & np.isfinite(s)
    s = np.where(nudge, np.nextafter(s, np.copysign(np.inf, err)), s)
    return s.astype(np.float32)


def contract(A: np.ndarray, B: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_k sum_q (w[k] * A[k, :, q]) outer B[k, :, q] for A (K, m, r), B (K, n, r), w (K,).

    w * A is rounded to the factors' dtype first; then the terms are added in (k, q) order
    starting from zero: float32 as one FMA per term, float64 as a product and a sum rounded on
    their own. This is the operation sequence `_core.contract` runs on every machine.
    """
    K, m, r = A.shape
    aw = A * np.asarray(w, dtype=A.dtype).reshape(-1, 1, 1)
    out = np.zeros((m, B.shape[1]), dtype=A.dtype)
    for k in range(K):
        for q in range(r):
            if A.dtype == np.float32:
                out = fma32(aw[k, :, q, None], B[k, None, :, q], out)
            else:
                out += aw[k, :, q, None] * B[k, None, :, q]
    return out


def philox_key(seed: int) -> np.ndarray:
    """The contract's Philox key of a 64-bit seed: uint32 (seed & 0xffffffff, seed >> 32)."""
    return np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32)
