"""Pure-NumPy reference implementation of the noise contract (slow, readable, tested against)."""

from __future__ import annotations

import numpy as np

__all__ = ["philox4x32_10", "normals", "uniforms_from_bits", "box_muller"]

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


def normals(
    seed: int, leaf: int, member_key: int, epoch: int, count: int, offset: int = 0
) -> np.ndarray:
    """Values [offset, offset + count) of one stream, float64 evaluation rounded to float32."""
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    first, last = offset // 4, (offset + count + 3) // 4
    blocks = np.arange(first, last, dtype=np.uint64).astype(np.uint32)
    ctr = np.empty((blocks.size, 4), dtype=np.uint32)
    ctr[:, 0] = blocks
    ctr[:, 1] = leaf
    ctr[:, 2] = member_key
    ctr[:, 3] = epoch
    key = np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32)
    bits = philox4x32_10(ctr, key)
    u = uniforms_from_bits(bits)
    z = np.empty_like(u)
    z[:, 0], z[:, 1] = box_muller(u[:, 0], u[:, 1])
    z[:, 2], z[:, 3] = box_muller(u[:, 2], u[:, 3])
    start = offset - 4 * first
    return z.reshape(-1)[start : start + count].astype(np.float32)
