"""The counter-based noise contract: Philox4x32-10 streams, Gaussian normals and low-rank factors.

Noise is a pure function of (seed, leaf, member_key, epoch): nothing is stored between a
population's forward pass and its update. See docs/noise-contract.md. Which implementation
generates them is the dispatch table's "philox" and "normals" rows (`eggroll_np.dispatch`): the
C++ core (SIMD, multithreaded) for NumPy, the CUDA core for CuPy, and `eggroll_np._reference`, the
readable pure-NumPy version that both are tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from . import _checks, _ext, _reference, dispatch, intmath
from .backend import dtype_name, get_xp, is_cupy_array, namespace_of

__all__ = [
    "philox4x32_10",
    "normals",
    "normals_batch",
    "normals_many",
    "check_requests",
    "Requests",
    "factors",
    "factor_requests",
    "as_factors",
    "matrix_shape",
    "member_keys",
    "signs",
    "epoch_of",
]

_U32 = 1 << 32
_U32_DTYPE = np.dtype(np.uint32)
_U64 = 1 << 64
_STREAM_VALUES = 1 << 34  # 2^32 Philox blocks of 4 values each
# Values of one stream the pure-NumPy fallback generates at a time (its temporaries: ~2.5 MiB).
_REFERENCE_PIECE = 1 << 16


def check_seed(seed: Any) -> int:
    """Validate a 64-bit run seed (0 <= seed < 2^64)."""
    return _checks.integer("seed", seed, 0, _U64)


def philox4x32_10(counters: Any, key: Any) -> Any:
    """Philox4x32-10 block function.

    Args:
        counters: uint32 array of shape (n, 4) (NumPy or CuPy).
        key: uint32 array of shape (2,).

    Returns:
        uint32 array of shape (n, 4) on the backend of `counters`.
    """
    xp = namespace_of(counters)
    if xp is np:
        counters = np.asarray(counters)
    if counters.dtype != np.uint32:
        raise TypeError(f"counters must have dtype uint32, got {counters.dtype}")
    if counters.ndim != 2 or counters.shape[1] != 4:
        raise ValueError(f"counters must have shape (n, 4), got {tuple(counters.shape)}")
    key_h = np.asarray(key.get() if is_cupy_array(key) else key)
    if key_h.dtype != np.uint32:
        raise TypeError(f"key must have dtype uint32, got {key_h.dtype}")
    if key_h.shape != (2,):
        raise ValueError(f"key must have shape (2,), got {key_h.shape}")
    counters = xp.ascontiguousarray(counters)
    return dispatch.select("philox", [counters])(counters, key_h)


def _keys_array(member_keys: Any) -> np.ndarray:
    keys = np.asarray(member_keys)
    if keys.ndim == 0:
        keys = keys.reshape(1)
    if keys.ndim != 1:
        raise ValueError(f"member_keys must be 1-D, got shape {keys.shape}")
    if keys.size and (keys.dtype.kind not in "iu"):
        raise TypeError(f"member_keys must be integers, got dtype {keys.dtype}")
    if keys.dtype == _U32_DTYPE:  # every value is in range: no pass over them (noise's own keys)
        return keys
    if keys.size and (int(keys.min()) < 0 or int(keys.max()) >= _U32):
        raise ValueError("member_keys must be in [0, 2^32)")
    return keys.astype(np.uint32, copy=False)


def _device_xp(xp: ModuleType | str | None) -> ModuleType:
    """get_xp, plus a clear "no CUDA device" error before CuPy allocates anything."""
    mod = get_xp(xp)
    if mod is not np:
        dispatch.require_cuda()
    return mod


def _fill(
    seed: int, epoch: int, keys: np.ndarray, leaves: list, offsets: list, outs: list, xp: Any,
    rows: dict | None = None,
) -> None:  # fmt: skip
    """outs[j] (K, count_j) = values [offsets[j], +count_j) of stream leaves[j] for every key:
    the table's "normals" row for xp's backend (keys uploaded once; kept in `rows`, a
    `dispatch.select_kept` memo, when given)."""
    if not keys.size or not outs:
        return
    key = ("normals", outs[0].dtype)
    impl = dispatch.select_kept(rows, key, "normals", [outs[0]], device=xp is not np)
    impl(seed, epoch, xp.asarray(keys), leaves, offsets, outs)


def normals_core(
    seed: int, epoch: int, keys: np.ndarray, leaves: list, offsets: list, outs: list
) -> None:
    """The "normals" operation on the C++ core: one parallel pass over every request."""
    _ext.core.fill_normals_many(seed, leaves, keys, epoch, offsets, outs)


def normals_int8_core(
    seed: int, epoch: int, keys: np.ndarray, leaves: list, offsets: list, outs: list
) -> None:
    """The "normals" operation into int8 outs on the C++ core: the quantized normals
    (`intmath.quantize`) in one parallel pass, never holding their float32 values."""
    _ext.core.fill_int8_noise_many(seed, leaves, keys, epoch, offsets, outs)


def normals_int8(
    seed: int, epoch: int, keys: Any, leaves: list, offsets: list, outs: list
) -> None:
    """The "normals" operation into int8 outs in array code (NumPy or CuPy): the float32
    row's normals, then `intmath.quantize`."""
    xp = namespace_of(outs[0])
    tmp = [xp.empty(o.shape, dtype=np.float32) for o in outs]
    fill = dispatch.select("normals", [tmp[0]], device=xp is not np)
    fill(seed, epoch, keys, leaves, offsets, tmp)
    for o, t in zip(outs, tmp, strict=True):
        o[...] = intmath.quantize(t)


def normals_reference(
    seed: int, epoch: int, keys: np.ndarray, leaves: list, offsets: list, outs: list
) -> None:
    """The "normals" operation in NumPy (`_reference.normals`), a piece at a time (it holds
    ~40 bytes of temporaries a value)."""
    for leaf, offset, out in zip(leaves, offsets, outs, strict=True):
        count = out.shape[1]
        for i, k in enumerate(keys):
            for a in range(0, count, _REFERENCE_PIECE):
                b = min(count, a + _REFERENCE_PIECE)
                out[i, a:b] = _reference.normals(seed, leaf, int(k), epoch, b - a, offset + a)


def normals_batch(
    seed: int,
    leaf: int,
    member_keys: Sequence[int] | np.ndarray,
    epoch: int,
    count: int,
    offset: int = 0,
    xp: ModuleType | str | None = None,
) -> Any:
    """Values [offset, offset + count) of each member's stream.

    Returns:
        float32 array of shape (len(member_keys), count) on backend `xp`.
    """
    seed = check_seed(seed)
    leaf = _checks.integer("leaf", leaf, 0, _U32)
    epoch = _checks.integer("epoch", epoch, 0, _U32)
    count = _checks.integer("count", count, 0, _STREAM_VALUES + 1)
    offset = _checks.integer("offset", offset, 0, _STREAM_VALUES)
    if offset + count > _STREAM_VALUES:
        raise ValueError("offset + count exceeds the 2^34 values of one Philox stream")
    keys = _keys_array(member_keys)
    xp = _device_xp(xp)
    out = xp.empty((keys.size, count), dtype=np.float32)
    _fill(seed, epoch, keys, [leaf], [offset], [out], xp)
    return out


def normals(
    seed: int,
    leaf: int,
    member_key: int,
    epoch: int,
    count: int,
    xp: ModuleType | str | None = None,
) -> Any:
    """The first `count` values of stream (leaf, member_key, epoch) under `seed`.

    Returns:
        float32 array of shape (count,) on backend `xp` (NumPy by default).
    """
    key = _checks.integer("member_key", member_key, 0, _U32)
    return normals_batch(seed, leaf, [key], epoch, count, 0, xp)[0]


def normals_many(
    seed: int,
    epoch: int,
    member_keys: Sequence[int] | np.ndarray,
    requests: Sequence[tuple[int, int, int]],
    xp: ModuleType | str | None = None,
    dtype: Any = np.float32,
    rows: dict | None = None,
) -> list[Any]:
    """Several stream reads for the same members and epoch, generated together.

    NumPy: one parallel pass of the C++ core over every request. CuPy: the member keys are
    uploaded once and the requests run as one kernel launch per 32 (a job table).

    Args:
        requests: (leaf, offset, count) triples; `Requests` (from `check_requests`) are not
            checked again (a run's reads are the same every generation).
        dtype: float32, or int8 for the quantized normals of int8 leaves
            (`intmath.quantize` of the same values, docs/noise-contract.md).
        rows: a run's `dispatch.select_kept` memo (`GenerationNoise.rows`), or None.

    Returns:
        One array of shape (len(member_keys), count) per request, on backend `xp`;
        request j equals normals_batch(seed, leaf_j, member_keys, epoch, count_j, offset_j)
        (quantized with dtype int8).
    """
    dtype = np.dtype(dtype)
    if dtype_name(dtype) not in ("float32", "int8"):
        raise ValueError(f"dtype must be float32 or int8, got {dtype}")
    seed = check_seed(seed)
    epoch = _checks.integer("epoch", epoch, 0, _U32)
    keys = _keys_array(member_keys)
    xp = _device_xp(xp)
    if type(requests) is not Requests:
        requests = check_requests(requests)
    outs = [xp.empty((keys.size, count), dtype=dtype) for count in requests.counts]
    _fill(seed, epoch, keys, requests.leaves, requests.offsets, outs, xp, rows)
    return outs


class Requests(tuple):
    """`normals_many`'s (leaf, offset, count) triples as `check_requests` passed them, with
    their columns as lists (what the "normals" rows take)."""

    leaves: list[int]
    offsets: list[int]
    counts: list[int]


def check_requests(requests: Sequence[Any]) -> Requests:
    """`normals_many`'s requests checked (each value in range, each read within one stream,
    else an error naming requests[j]) as `Requests`."""
    leaves, offsets, counts = [], [], []
    for j, (leaf, offset, count) in enumerate(requests):
        try:
            leaves.append(_checks.integer("leaf", leaf, 0, _U32))
            offsets.append(_checks.integer("offset", offset, 0, _STREAM_VALUES))
            counts.append(_checks.integer("count", count, 0, _STREAM_VALUES + 1))
        except (TypeError, ValueError) as exc:  # "requests[j] ..." made only when one fails
            raise type(exc)(f"requests[{j}] {exc}") from None
        if offsets[-1] + counts[-1] > _STREAM_VALUES:
            raise ValueError(
                f"requests[{j}]: offset + count exceeds the 2^34 values of one Philox stream"
            )
    checked = Requests(zip(leaves, offsets, counts, strict=True))
    checked.leaves, checked.offsets, checked.counts = leaves, offsets, counts
    return checked


def factors(
    seed: int,
    leaf: int,
    member_keys: Sequence[int] | np.ndarray,
    epoch: int,
    shape: tuple[int, ...],
    rank: int,
    xp: ModuleType | str | None = None,
) -> tuple[Any, Any]:
    """Low-rank factors of a low-rank leaf for several members.

    `shape` is the leaf's shape, (m, n) for a matrix or any ndim >= 3 shape, which uses the
    matrix view (m, n) = (shape[0], prod(shape[1:])) (`matrix_shape`). The unit noise of member
    key k is eps_k = A_k @ B_k.T / sqrt(rank) (reshaped to `shape`), with A_k the stream's values
    [0, m*r) and B_k the values [m*r, (m+n)*r), both in C order.

    Returns:
        (A, B): float32 arrays of shapes (K, m, r) and (K, n, r), K = len(member_keys).
    """
    if not isinstance(shape, (tuple, list)) or len(shape) < 2:
        raise ValueError(f"shape must have 2 or more dimensions, got {shape!r}")
    for j, d in enumerate(shape):
        _checks.integer(f"shape[{j}]", d, 0, _STREAM_VALUES)
    m, n = matrix_shape(shape)
    _checks.integer("prod(shape[1:])", n, 0, _STREAM_VALUES)
    r = _checks.integer("rank", rank, 1)
    leaf = _checks.integer("leaf", leaf, 0, _U32)
    a, b = normals_many(seed, epoch, member_keys, factor_requests(leaf, shape, r), xp)
    return as_factors(a, b, shape, r)


def matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    """The matrix view (m, n) of a low-rank leaf: (shape[0], prod(shape[1:])).

    A 2-D leaf is its own view; a leaf with ndim >= 3 (a conv kernel (O, C, kh, kw)) is perturbed
    as (A @ B.T / sqrt(r)).reshape(shape) with A (m, r) and B (n, r) (docs/noise-contract.md,
    "Perturbation of a leaf").
    """
    n = 1
    for d in shape[1:]:
        n *= int(d)
    return int(shape[0]), n


def factor_requests(leaf: int, shape: Sequence[int], rank: int) -> list[tuple[int, int, int]]:
    """The two stream reads of a low-rank leaf's factors, for `normals_many`: A's values
    [0, m*r), then B's [m*r, (m+n)*r) with (m, n) = matrix_shape(shape) (the contract's
    layout, in one place)."""
    m, n = matrix_shape(shape)
    return [(leaf, 0, m * rank), (leaf, m * rank, n * rank)]


def as_factors(a: Any, b: Any, shape: Sequence[int], rank: int) -> tuple[Any, Any]:
    """The reads of `factor_requests`, (K, m*r) and (K, n*r), as A (K, m, r) and B (K, n, r).

    (m, n) is the leaf's matrix view (`matrix_shape`). Same values on every backend. On CuPy with
    r > 1 they are stored rank-major (A is a transposed view of a C-contiguous (K, r, m) array,
    one copy per generation): the CUDA kernels' lanes then read consecutive addresses for every
    rank.
    """
    m, n = matrix_shape(shape)
    A, B = a.reshape(a.shape[0], m, rank), b.reshape(b.shape[0], n, rank)
    if rank > 1 and is_cupy_array(A):
        xp = namespace_of(A)
        A = xp.ascontiguousarray(A.transpose(0, 2, 1)).transpose(0, 2, 1)
        B = xp.ascontiguousarray(B.transpose(0, 2, 1)).transpose(0, 2, 1)
    return A, B


def member_keys(population: int, antithetic: bool = True) -> np.ndarray:
    """Noise-stream key of each member: i // 2 with antithetic sampling, else i (uint32 (N,))."""
    i = np.arange(population, dtype=np.uint32)
    return i // 2 if antithetic else i


def signs(population: int, antithetic: bool = True) -> np.ndarray:
    """s_i of each member: +1 for even i, -1 for odd i with antithetic sampling, else +1."""
    s = np.ones(population, dtype=np.float32)
    if antithetic:
        s[1::2] = -1.0
    return s


def epoch_of(generation: int, noise_reuse: int = 1) -> int:
    """The noise epoch of a generation: generation // noise_reuse (wrapped to uint32)."""
    return (int(generation) // int(noise_reuse)) & 0xFFFFFFFF
