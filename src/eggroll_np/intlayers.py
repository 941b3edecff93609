"""Population layers on int8 leaves: `linear`, `embed`, and the weight-space members.

The integer rules are in docs/noise-contract.md ("Integer leaves") and, as plain int64 code, in
`intmath`. Here they run on the dispatch table's integer rows (`intops`): one int8 GEMM for the
shared (or per-member) x @ W, one for x @ a of every key, then ONE pass (`intops.int_epilogue`)
adding each member's low-rank term, shifting, adding its bias, clipping and the relu. A
low-rank leaf never becomes N dense matrices. An int8 leaf's `LeafNoise` holds the quantized
factors (or noise) and, as `coef`, the (N,) int8 signs s_i.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import intmath, intops
from .backend import namespace_of
from .epilogue import LeafNoise
from .layers import rows_input, same_backend

__all__ = ["check_int_input", "dense", "perturbed", "member_leaf", "linear", "embed"]

_ACTIVATIONS = (None, "relu")


def check_int_input(x: Any, theta: Any, name: str, what: str = "x") -> Any:
    """x as a C-contiguous int8 array of theta's backend: an int8 leaf takes int8 inputs only
    (TypeError naming the leaf otherwise; no silent rounding of floats)."""
    xp = namespace_of(theta)
    x = same_backend(x, theta, name, what)
    dt = getattr(x, "dtype", None)
    if dt is None or dt != np.int8:
        got = dt if dt is not None else type(x).__name__
        raise TypeError(
            f"{what} must be an int8 array for int8 leaf '{name}', got {got} "
            "(quantize inputs to int8 first: value * 16, rounded and clipped to [-127, 127])"
        )
    return xp.ascontiguousarray(x)


def dense(x: Any, w: Any, b: Any = None, activation: str | None = None) -> Any:
    """The unperturbed int8 layer (inference): clip(floor(x @ W / 2^(F + d)) + b), then relu.

    Args:
        x: int8 (..., m) rows; w: int8 (m, n); b: None or int8 (n,); activation: None or "relu".

    Returns:
        int8 (..., n), the same bits as member i of `linear` would give with zero noise.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be None or 'relu' for int8 layers, got {activation!r}")
    x = check_int_input(x, w, "w")
    m, n = w.shape
    if x.shape[-1] != m:
        raise ValueError(f"x must have {m} columns for w of shape {tuple(w.shape)}, got {x.shape}")
    xp = namespace_of(w)
    rows = x.reshape(1, -1, m)
    out = xp.empty((1, rows.shape[1], n), dtype=np.int8)
    if b is not None and (getattr(b, "dtype", None) != np.int8 or tuple(b.shape) != (n,)):
        raise TypeError(f"b must be an int8 array of shape ({n},), got {getattr(b, 'dtype', b)}")
    bias = None if b is None else b.reshape(1, n)
    shift = intmath.F + intmath.width_shift(m)
    intops.linear(rows, w, out, None, None, None, None, 0, bias, shift, activation == "relu")
    return out.reshape(*x.shape[:-1], n)


def _shift_lr(w: LeafNoise, k: int) -> int:
    return intmath.F + k + intmath.rank_shift(w.A.shape[2])


def perturbed(w: LeafNoise, k: int) -> Any:
    """`(N, *shape)` int8: every member's value of an int8 leaf (full-rank rule, or the
    weight-space low-rank rule of `pop.member`)."""
    xp = namespace_of(w.theta)
    N = w.size
    if w.kind == "frozen":
        return xp.broadcast_to(w.theta, (N, *w.theta.shape)).copy()
    if w.kind == "full":
        return _full_members(w.theta, w.E, w.keys, w.coef, k)
    m = w.theta.shape[0]
    t = xp.matmul(w.A[w.keys].astype(np.int64), w.B[w.keys].transpose(0, 2, 1).astype(np.int64))
    t *= w.coef.astype(np.int64).reshape(-1, 1, 1)
    v = w.theta.reshape(1, m, -1).astype(np.int64) + xp.right_shift(t, _shift_lr(w, k))
    return xp.clip(v, -127, 127).astype(np.int8).reshape(N, *w.theta.shape)


def _full_members(theta: Any, E: Any, keys: Any, signs: Any, k: int) -> Any:
    xp = namespace_of(theta)
    s = signs.astype(np.int16).reshape(-1, *([1] * theta.ndim))
    v = theta.astype(np.int16) + xp.right_shift(s * E[keys].astype(np.int16), k)
    return xp.clip(v, -127, 127).astype(np.int8)


def member_leaf(theta: Any, kind: str, A: Any, B: Any, E: Any, sign: int, k: int) -> Any:
    """One member's value of an int8 leaf (a new array): frozen theta, full-rank
    clip(q + floor(s e / 2^k)), or low-rank clip(W + floor(s (a @ b.T) / 2^(F + k + h)))."""
    xp = namespace_of(theta)
    if kind == "frozen":
        return theta.copy()
    if kind == "full":
        s = xp.asarray([sign], dtype=np.int8)
        return _full_members(theta, E[None], xp.zeros(1, dtype=np.intp), s, k)[0]
    m = theta.shape[0]
    t = A.astype(np.int64) @ B.T.astype(np.int64)
    shift = intmath.F + k + intmath.rank_shift(A.shape[1])
    v = theta.reshape(m, -1).astype(np.int64) + xp.right_shift(int(sign) * t, shift)
    return xp.clip(v, -127, 127).astype(np.int8).reshape(theta.shape)


def _bias(b: LeafNoise | None, width: int, w: LeafNoise, k: int) -> Any:
    """(N, n) int8 per-member bias, or None."""
    if b is None:
        return None
    t = b.theta
    if t.dtype != np.int8:
        raise TypeError(f"b: leaf '{b.name}' ({t.dtype}) must be int8 like w '{w.name}'")
    if t.ndim != 1 or t.shape[0] != width:
        raise ValueError(f"b: leaf '{b.name}' must have shape ({width},), got {tuple(t.shape)}")
    if b.kind == "lowrank":
        raise ValueError(f"b: leaf '{b.name}' is low-rank; a bias must be full-rank or frozen")
    return perturbed(b, k)


def linear(
    x: Any, w: LeafNoise, b: LeafNoise | None, activation: str | None, k: int,
    transpose: bool = False,
) -> Any:  # fmt: skip
    """Every member's int8 layer: acc_i = x_i @ W_i (the low-rank term added to the int32
    accumulator before the shift), y_i = clip(floor(acc_i / 2^(F + d)) + b_i), relu.

    Args:
        x: int8 (B, m) shared or (N, B, m) per member.
        w: int8 leaf (m, n): low-rank, full-rank or frozen.
        b: None or an int8 1-D leaf (n,), full-rank or frozen.
        activation: None or "relu".
        k: the run's int_sigma_shift.
        transpose: not supported for int8 leaves (ValueError).

    Returns:
        int8 (N, B, n) on w's backend.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"activation must be None or 'relu' for int8 leaf '{w.name}', got {activation!r}"
        )
    if transpose:
        raise ValueError(f"transpose=True is not supported for int8 leaf '{w.name}'")
    W = w.theta
    if W.ndim != 2:
        raise ValueError(f"w: linear needs a 2-D leaf, '{w.name}' has shape {tuple(W.shape)}")
    x = check_int_input(x, W, w.name)
    m, n = W.shape
    N = w.size
    shared = rows_input(x, m, N, w.name, "")
    bias = _bias(b, n, w, k)
    xp = namespace_of(W)
    out = xp.empty((N, x.shape[-2], n), dtype=np.int8)
    shift_out = intmath.F + intmath.width_shift(m)
    relu = activation == "relu"
    xs = x[None] if shared else x
    if w.kind == "full":  # per-member weights W_i (full-rank int8 leaves are small)
        return intops.linear(xs, perturbed(w, k), out, None, None, w.keys, w.coef, 0, bias,
                             shift_out, relu)  # fmt: skip
    if w.kind == "frozen":
        return intops.linear(xs, W, out, None, None, w.keys, w.coef, 0, bias, shift_out, relu)
    return intops.linear(
        xs, W, out, w.A, w.B, w.keys, w.coef, _shift_lr(w, k), bias, shift_out, relu
    )


def embed(ids: Any, w: LeafNoise, per_member: bool, k: int) -> Any:
    """Rows of every member's int8 table at `ids` (`layers.embed`'s checks and shapes):
    clip(W[ids] + floor(s_i (a_k[ids] @ b_k.T) / 2^(F + k + h))); a full-rank table: rows of
    each member's clip(q + floor(s_i e / 2^k)). Returns int8 `(N, *S, d)`."""
    from .layers import check_ids

    W = w.theta
    xp = namespace_of(W)
    ids, flat, shape = check_ids(ids, w, per_member)
    N, d = w.size, W.shape[1]
    if w.kind == "full":
        Wi = perturbed(w, k)  # (N, V, d): full-rank tables are small
        rows = flat if per_member else xp.broadcast_to(flat, (N, flat.shape[-1]))
        return Wi[xp.arange(N)[:, None], rows].reshape(N, *shape, d)
    acc = W[flat].astype(np.int32)  # (L, d) shared or (N, L, d)
    out = xp.empty((N, flat.shape[-1], d), dtype=np.int8)
    if w.kind == "frozen":
        intops.int_epilogue(out, acc, None, None, None, None, w.coef, None, 0, 0, False)
        return out.reshape(N, *shape, d)
    if per_member:  # rows of a_k at member i's ids: (N, L, r)
        xa = w.A[w.keys[:, None], flat].astype(np.int32)
        xa_rows = xp.arange(N, dtype=np.uint32)
    else:  # rows of every key's a at the shared ids: (K, L, r)
        xa = w.A[:, flat].astype(np.int32)
        xa_rows = w.keys
    intops.int_epilogue(out, acc, xa, xa_rows, w.B, w.keys, w.coef, None, _shift_lr(w, k), 0,
                        False)  # fmt: skip
    return out.reshape(N, *shape, d)
