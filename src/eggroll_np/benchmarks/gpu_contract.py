"""The exact CUDA contraction against cuBLAS on the update's shapes, for `eggroll-np bench gpu`.

`EGGROLL_NP_CUDA_CONTRACT=exact` sends a CuPy update's sum_k w_k A_k B_k^T to the fixed-order
kernel (csrc/cuda/contract.cu: the C++ core's bits on any GPU); the default keeps cuBLAS's SGEMM.
These figures decide between them: on the same factors (rank-major, as a run makes them), the
kernel at the launch code's tile and at every tile, cuBLAS through `lowrank.contract_reference`
(the default row), and whether the kernel's result is the C++ core's, bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _cuda_ops, _ext, dispatch, lowrank, noise
from ..backend import cupy
from .gpu_timing import measure

__all__ = ["SHAPES", "operands", "contract_figures", "generation_figures"]

#: (name, keys K, rank r, m, n): the update contractions of the GPU bench's workloads (rl-4096 at
#: population 4096 has 2048 antithetic keys; sup at 256 has 128) and a rank-4 case.
SHAPES: tuple[tuple[str, int, int, int, int], ...] = (
    ("rl-4096 4096x4096", 2048, 1, 4096, 4096),
    ("rl-4096 4096x16", 2048, 1, 4096, 16),
    ("sup 784x256", 128, 1, 784, 256),
    ("sup 256x10", 128, 1, 256, 10),
    ("rank 4 1024x1024", 512, 4, 1024, 1024),
)


def operands(keys: int, rank: int, m: int, n: int) -> tuple[Any, Any, Any]:
    """(A, B, w) on the device for one shape: a run's factors (rank-major) and float32 weights."""
    A, B = noise.factors(0, 0, np.arange(keys), 0, (m, n), rank, xp="cupy")
    w = cupy.asarray(np.random.default_rng(keys).standard_normal(keys).astype(np.float32))
    return A, B, w


def _row(name: str, keys: int, rank: int, m: int, n: int, repeat: int) -> dict[str, Any]:
    A, B, w = operands(keys, rank, m, n)
    exact = measure(lambda: _cuda_ops.contract(A, B, w), repeat)
    cublas = measure(lambda: lowrank.contract_reference(A, B, w), repeat)
    # The tiles the launch code could choose for this shape: the column kernel below 32, else
    # every square tile that fits.
    narrow = min(m, n)
    forced = [1] if narrow < 32 else [t for t in _cuda_ops.CONTRACT_TILES[2:] if t <= narrow]
    tiles = {}
    for tile in forced:
        run = measure(lambda t=tile: _cuda_ops.contract(A, B, w, tile=t), repeat)
        tiles[str(tile)] = run["event_ms"]
    got = cupy.asnumpy(_cuda_ops.contract(A, B, w))
    host = [cupy.asnumpy(v) for v in (A, B, w)]
    same = None if _ext.core is None else got.tobytes() == _ext.core.contract(*host).tobytes()
    return {
        "shape": name, "keys": keys, "rank": rank, "m": m, "n": n,
        "exact_ms": exact["event_ms"], "cublas_ms": cublas["event_ms"],
        "cublas_over_exact": cublas["event_ms"] / exact["event_ms"],
        "exact_ms_by_tile": tiles, "core_bits": same,
    }  # fmt: skip


def contract_figures(repeat: int = 5, quick: bool = False) -> list[dict[str, Any]]:
    """One row per shape of `SHAPES` (`quick`: at most 64 keys and 256 x 256): milliseconds of
    the exact kernel (launch code's tile, and each forced tile the shape allows) and of cuBLAS,
    `cublas_over_exact` (cuBLAS time / kernel time: 1 is parity), and `core_bits`."""
    rows = []
    for name, keys, rank, m, n in SHAPES:
        if quick:
            keys, m, n = min(keys, 64), min(m, 256), min(n, 256)
        rows.append(_row(name, keys, rank, m, n, repeat))
        cupy.get_default_memory_pool().free_all_blocks()  # the row's factors are garbage now
    return rows


def generation_figures(
    fresh: Callable[[], Callable[[], Any]], population: int, repeat: int = 5
) -> dict[str, Any]:
    """Whole generations (`fresh()` gives a callable that runs the next one: ask, forward,
    fitness, tell, new noise each call) with the default contraction and with
    EGGROLL_NP_CUDA_CONTRACT=exact, three times alternating: `exact_over_cublas` is the exact
    run's best median over the default's, the cost of the CPU's bits on this device."""
    before = os.environ.get(dispatch.CUDA_CONTRACT)
    times: dict[str, list[float]] = {"cublas": [], "exact": []}
    try:
        for _ in range(3):
            for kind in ("cublas", "exact"):
                os.environ[dispatch.CUDA_CONTRACT] = kind
                times[kind].append(measure(fresh(), repeat)["event_ms"])
    finally:
        if before is None:
            os.environ.pop(dispatch.CUDA_CONTRACT, None)
        else:
            os.environ[dispatch.CUDA_CONTRACT] = before
    return {
        "population": population, "generation_cublas_ms": times["cublas"],
        "generation_exact_ms": times["exact"],
        "exact_over_cublas": min(times["exact"]) / min(times["cublas"]),
    }  # fmt: skip
