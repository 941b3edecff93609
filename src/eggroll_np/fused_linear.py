"""`pop.linear` on CuPy with the layer's noise made inside the CUDA kernels (no separate pass).

For a float32 low-rank W of rank <= 8 on the GPU, a layer is the base GEMM (cuBLAS, queued
first, before any noise work) and two kernels (`_cuda_layers.linear_fused`, csrc/cuda/fused.cu):
the projection x @ A_k, which makes A's values from Philox as it reads them, and the epilogue,
which makes B's and the bias noise's the same way. The values are the contract's (the same
philox.h as the normals kernel), so the output has the bits of the separate pass; factors a
generation already holds (after `pop.chunks`, or with the shared noise table) are read instead.
Per call: one GEMM, two launches, two or three allocations, no host-to-device copy after the
population's first layer and no device-to-host synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks, _ext, layers
from .backend import is_cupy_array, namespace_of
from .config import NoiseKind
from .epilogue import LeafNoise

__all__ = [
    "MAX_RANK", "Leaf", "Streams", "upload_streams", "held_noise", "fusable", "linear"
]  # fmt: skip

#: Largest rank the fused kernels take (their accumulators are registers): fused.cuh's
#: kFusedMaxRank. Larger ranks take the separate normals pass and the plain epilogue.
MAX_RANK = 8


@dataclass(frozen=True)
class Streams:
    """A population's member keys on the device, uploaded once (its first fused layer)."""

    stream_keys: Any  # (N,) uint32: member_key of each member (the Philox counter's key)
    unique_keys: Any  # (K,) uint32: the noise's sorted unique keys (shared-x projection slots)
    local: Any  # (N,) uint32: each member's index into unique_keys (and into held factors)
    slots: Any  # (K,) uint32: 0..K-1, the slots' rows of held factors


def upload_streams(member_keys: Any, keys: Any, local: Any, xp: Any) -> Streams:
    """`Streams` from the host's keys in ONE host-to-device copy (views of one array)."""
    N, K = len(member_keys), len(keys)
    d = xp.asarray(np.concatenate([member_keys, keys, local, np.arange(K)]).astype(np.uint32))
    return Streams(d[:N], d[N : N + K], d[N + K : 2 * N + K], d[2 * N + K :])


#: One leaf of a layer as `linear` takes it: (leaf index, path, value, NoiseKind).
Leaf = tuple[int, str, Any, NoiseKind]


def held_noise(noise: Any, w: int, b: int | None) -> tuple[Any, Any]:
    """(factors of leaf w, noise of the noisy bias b or None) when the `GenerationNoise` holds
    them, else (None, None): the kernels make them. The shared noise table's values are not
    Philox's: with it they are made here first (`prefetch`) and read."""
    held = noise.holds_factors(w) and (b is None or noise.held_full(b) is not None)
    if not held and noise.config.noise_table is not None:
        noise.prefetch(full=True)
        held = True
    if not held:
        return None, None
    return noise.factors(w), None if b is None else noise.held_full(b)


def fusable(leaves: list[Leaf], rank: int) -> bool:
    """True when `linear` takes the layer: a low-rank CuPy float32 W (and float32 bias), rank
    <= MAX_RANK, the CUDA extension built."""
    W, kind = leaves[0][2], leaves[0][3]
    return (
        _ext.cuda is not None
        and kind is NoiseKind.LOWRANK
        and is_cupy_array(W)
        and W.dtype == np.float32
        and 1 <= rank <= MAX_RANK
        and all(theta.dtype == np.float32 for _, _, theta, _ in leaves[1:])
    )


def linear(
    x: Any, leaves: list[Leaf], code: int, transpose: Any, noise: Any, members: int,
    streams: Callable[[], Streams], coef: Callable[[int], Any],
) -> Any:  # fmt: skip
    """act(x @ W_i + b_i) for every member of a low-rank W (`layers.linear`'s contract).

    Args:
        x: shared (B, m) or per-member (N, B, m) input (cast to W's dtype, C order).
        leaves: [W's, and the bias's if any] (leaf index, path, value, NoiseKind).
        code: activation code (`epilogue.activation_code`).
        transpose: x @ W_i.T (A and B swap places: B's values start at offset m * r).
        noise: the population's `GenerationNoise` (seed, epoch, rank; held noise is read).
        members: N.
        streams, coef: the population's device keys and each leaf's (N,) coefficients, asked
            for once the base GEMM is queued.

    Returns:
        (N, B, n) float32 CuPy array.
    """
    from . import _cuda_layers  # imports CuPy: only on this (device) path

    _checks.boolean("transpose", transpose)
    wl, W = leaves[0][0], leaves[0][2]
    w = LeafNoise(leaves[0][1], W, "lowrank", None, None)  # for the checks of `layers`
    b = bl = None
    if len(leaves) == 2:
        bl, name, theta, kind = leaves[1]
        b = LeafNoise(name, theta, kind.value, None, None)
    x = layers.as_input(x, W, w.name)
    Wt = W.T if transpose else W
    m, n = Wt.shape
    N = members
    shared = layers.rows_input(x, m, N, w.name, " (transposed)" if transpose else "")
    layers.check_bias(b, n, w)
    if shared:  # the GEMMs first: no noise work is queued before them
        base = x @ Wt
        out = None
    else:
        base = None
        out = (x.reshape(-1, m) @ Wt).reshape(N, x.shape[1], n)
    noisy = b is not None and b.kind == "full"
    s = streams()
    factors, bias_noise = held_noise(noise, wl, bl if noisy else None)
    xp = namespace_of(W)
    if out is None:
        out = xp.empty((N, x.shape[0], n), dtype=W.dtype)
    rank = noise.config.rank
    held = factors is not None
    slots = s.unique_keys.shape[0] if shared else N
    xa = xp.empty((slots, x.shape[-2], rank), dtype=W.dtype)
    left = right = None
    if held:
        left, right = (factors[1], factors[0]) if transpose else factors
    rows_w = W.shape[0]  # A's rows: B's values start after A's rows_w * r
    _cuda_layers.linear_fused(
        out, base, x, xa,
        (s.slots if held else s.unique_keys) if shared else None,
        s.local if shared else None,
        s.local if held else s.stream_keys,
        coef(wl), None if b is None else b.theta, coef(bl) if noisy else None,
        left, right, bias_noise,
        (rows_w * rank, 0) if transpose else (0, rows_w * rank),
        (wl, bl or 0), noise.config.seed, noise.epoch, code,
    )  # fmt: skip
    return out
