"""The opt-in shared noise table (`init(noise_table=T)`): noise read from T precomputed normals.

The default contract generates every value of every (leaf, member_key, epoch) stream. With
`noise_table=T` (docs/noise-contract.md, "Shared noise table"), the run's seed first gives ONE
table: values [0, T) of the reserved stream (leaf=TABLE_LEAF, member_key=0, epoch=0). The values
a request would read from stream (leaf, key, epoch) are then read from the table instead, as one
contiguous slice of `extent(leaf)` values starting at

    offset = (x0 + 2^32 * x1) mod (T - extent + 1)

with (x0, x1) lanes 0 and 1 of the Philox block at counter (leaf, OFFSET_LEAF, key, epoch): value
j of the request is table[offset + j]. Both reserved words sit in the counter's leaf position,
which per-leaf streams never reach (a tree has fewer than OFFSET_LEAF leaves), so neither the
table nor the offsets overlap any per-leaf stream. Everything stays a pure function of
(seed, T, leaf, key, epoch); the table is cached per (seed, T, backend) as a cache, not state.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import _reference, dispatch
from . import noise as _noise

__all__ = [
    "TABLE_LEAF",
    "OFFSET_LEAF",
    "MAX_TABLE",
    "MAX_CACHED",
    "table",
    "offsets",
    "read_many",
    "clear_cache",
]

TABLE_LEAF = 0xFFFFFFFF  # counter word 1 of the table's stream (member_key 0, epoch 0)
OFFSET_LEAF = 0xFFFFFFFE  # counter word 1 of the offset draws; word 0 holds the leaf
# At most 2^30 float32 values (4 GiB): the table must fit in host (and device) memory.
MAX_TABLE = 1 << 30
MAX_CACHED = 2  # tables kept per process (least recently used dropped first)

_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_lock = threading.Lock()


def _backend_key(xp: ModuleType) -> tuple[str, int]:
    if xp is np:
        return ("numpy", -1)
    return (xp.__name__, int(xp.cuda.Device().id))


def table(seed: int, size: int, xp: ModuleType = np) -> Any:
    """The run's table: float32 (size,) = values [0, size) of stream (TABLE_LEAF, 0, 0).

    Generated once per (seed, size, backend and device) and cached (MAX_CACHED tables at most);
    the returned array is shared, read-only on NumPy: never write into it.
    """
    key = (seed, size, *_backend_key(xp))
    with _lock:
        t = _cache.get(key)
        if t is not None:
            _cache.move_to_end(key)
            return t
    t = _noise.normals_batch(seed, TABLE_LEAF, [0], 0, size, 0, xp)[0]
    if xp is np:
        t.flags.writeable = False
    with _lock:
        _cache[key] = t
        _cache.move_to_end(key)
        while len(_cache) > MAX_CACHED:
            _cache.popitem(last=False)
    return t


def clear_cache() -> None:
    """Drop every cached table (they are regenerated, bit for bit, when next asked for)."""
    with _lock:
        _cache.clear()


def offsets(
    seed: int, size: int, leaf: int, keys: np.ndarray, epoch: int, extent: int
) -> np.ndarray:
    """Start of each key's slice for `leaf`: int64 (len(keys),), uniform in [0, size - extent].

    The modulo's bias is below (size - extent + 1) / 2^64 < 2^-34: negligible.
    """
    keys = np.asarray(keys, dtype=np.uint32).reshape(-1)
    counters = np.empty((keys.size, 4), dtype=np.uint32)
    counters[:, 0] = leaf
    counters[:, 1] = OFFSET_LEAF
    counters[:, 2] = keys
    counters[:, 3] = epoch
    seed_key = _reference.philox_key(seed)
    x = _noise.philox4x32_10(counters, seed_key).astype(np.uint64)
    u = x[:, 0] | (x[:, 1] << np.uint64(32))
    return (u % np.uint64(size - extent + 1)).astype(np.int64)


def _gather(t: Any, starts: list[np.ndarray], counts: list[int], xp: ModuleType) -> list[Any]:
    """One float32 (len(starts[j]), counts[j]) array per job: row i = t[starts[j][i]:][:count]."""
    if xp is np:
        outs = [
            np.empty((s.size, c), dtype=np.float32) for s, c in zip(starts, counts, strict=True)
        ]
        # The core: one memcpy per row, multithreaded, GIL released (csrc/core/noise_bindings.cpp, drivers.cpp).
        dispatch.select("gather_rows", [t])(t, starts, outs)
        return outs
    ar = xp.arange
    return [
        t[xp.asarray(s)[:, None] + ar(c, dtype=xp.int64)[None, :]]
        for s, c in zip(starts, counts, strict=True)
    ]


def gather_reference(t: np.ndarray, starts: list[np.ndarray], outs: list[np.ndarray]) -> None:
    """The "gather_rows" operation in NumPy: outs[j][i] = t[starts[j][i]:][:outs[j].shape[1]]."""
    # The fastest NumPy form measured: fancy indexing of the sliding-window view (one copy
    # loop per row; an explicit (K, count) index array is far slower).
    for s, out in zip(starts, outs, strict=True):
        if out.shape[1]:
            out[...] = sliding_window_view(t, out.shape[1])[s]


def read_many(
    seed: int,
    size: int,
    epoch: int,
    keys: np.ndarray,
    requests: Sequence[tuple[int, int, int]],
    extents: Sequence[int],
    xp: ModuleType = np,
) -> list[Any]:
    """`noise.normals_many`'s reads, from the table: one float32 (len(keys), count) per
    (leaf, offset, count) request, row i = table[start(leaf, keys[i]) + offset : ... + count].

    `extents[leaf]` is the number of values the leaf reads per key (the slice length the start
    is drawn for); every request must lie within it.
    """
    t = table(seed, size, xp)
    starts: dict[int, np.ndarray] = {}
    jobs, counts = [], []
    for leaf, offset, count in requests:
        if offset + count > extents[leaf]:
            raise ValueError(
                f"read [{offset}, {offset + count}) of leaf {leaf} exceeds its extent "
                f"{extents[leaf]} in the noise table"
            )
        s = starts.get(leaf)
        if s is None:
            s = starts[leaf] = offsets(seed, size, leaf, keys, epoch, extents[leaf])
        jobs.append(s + offset)
        counts.append(count)
    return _gather(t, jobs, counts, xp)
