"""The one pass after a population layer's base GEMM: activations, compiled kernels, reference.

`epilogue` writes out (N, rows, n) once: its source (a shared base or out's own GEMM result),
each member's low-rank correction, its bias and the activation. It is the dispatch table's
"linear_epilogue" operation (`eggroll_np.dispatch`): `_core` runs it for float32 NumPy arrays
(SIMD, threads, GIL released), the CUDA wrappers for float32 CuPy arrays, and
`linear_epilogue_reference` (array code) otherwise: the reference the kernels are tested against.
`LeafNoise` is how a layer receives one leaf and its members' noise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import dispatch, lowrank
from .backend import namespace_of

__all__ = [
    "ACTIVATIONS",
    "LeafNoise",
    "activation_code",
    "apply_activation",
    "member_operands",
    "epilogue",
    "linear_epilogue_reference",
]

#: Activation names the layers take (None is the identity), in the kernels' code order.
ACTIVATIONS: tuple[str | None, ...] = (None, "relu", "tanh", "sigmoid", "gelu")
_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
_GELU_C = float(np.sqrt(2.0 / np.pi))


@dataclass(frozen=True)
class LeafNoise:
    """One leaf of a generation as the layers read it.

    Attributes:
        name: the leaf's path (errors name it).
        theta: the leaf's value (NumPy or CuPy array, float32/float64).
        kind: "lowrank", "full" or "frozen".
        keys: (N,) uint32 array on theta's backend: member i uses unique noise key keys[i].
        coef: (N,) array in theta's dtype: sigma * s_i (divided by sqrt(r) when low-rank).
        A: (K, m, r) low-rank factors of the matrix view (m, n) = (shape[0], prod(shape[1:])).
        B: (K, n, r).
        E: `(K, *shape)` full-rank unit noise (None when it is not held: see `chunks`).
        chunks: for a full-rank leaf, a callable giving its noise in chunks of keys, so that a
            large leaf never has all N dense perturbations in memory: (members, rows, E_c)
            triples, E_c `(k, *shape)` the noise of some keys, `members` the members that use
            them (an index array or a slice) and `rows` each one's row of E_c.
    """

    name: str
    theta: Any
    kind: str
    keys: Any
    coef: Any
    A: Any = None
    B: Any = None
    E: Any = None
    chunks: Callable[[], Iterable[tuple[Any, Any, Any]]] | None = None

    def full_chunks(self) -> Iterable[tuple[Any, Any, Any]]:
        """The full-rank noise as `chunks` triples (one chunk of every member when E is held)."""
        if self.chunks is not None:
            return self.chunks()
        return [(slice(None), self.keys, self.E)]

    @functools.cached_property
    def a_columns(self) -> Any:
        """A as one (m, K*r) matrix, so x @ a_columns is every key's x @ A_k in one GEMM (a
        shared input's projection): made at its first use, not at each layer call."""
        return _columns(self.A)

    @functools.cached_property
    def b_columns(self) -> Any:
        """B as one (n, K*r) matrix (the projection of a transposed layer)."""
        return _columns(self.B)

    @functools.cached_property
    def size(self) -> int:
        """The number of members N, cached since a population keeps its LeafNoise for every call."""
        return int(self.keys.shape[0])


def _columns(F: Any) -> Any:
    """(K, m, r) factors as an (m, K*r) matrix: column k*r + q is F[k, :, q]."""
    K, m, r = F.shape
    cols = F.transpose(1, 0, 2).reshape(m, K * r)
    if isinstance(cols, np.ndarray):
        cols.flags.writeable = False  # like the factors: the forward must not change them
    return cols


def activation_code(activation: Any) -> int:
    """The kernels' code of an activation name (None 0, relu 1, tanh 2, sigmoid 3, gelu 4)."""
    if activation is None or type(activation) is str:  # noqa: E721 - str subclasses: below
        code = _CODES.get(activation)
        if code is not None:
            return code
    if activation is not None and not isinstance(activation, str):
        raise TypeError(
            f"activation must be None or one of {list(ACTIVATIONS[1:])}, "
            f"got {type(activation).__name__}"
        )
    if activation not in _CODES:
        raise ValueError(
            f"activation must be None or one of {list(ACTIVATIONS[1:])}, got {activation!r}"
        )
    return _CODES[activation]


def apply_activation(h: Any, code: int) -> Any:
    """The activation of `code` applied to h in place (the reference of the kernels); h."""
    xp = namespace_of(h)
    if code == 1:
        xp.maximum(h, 0, out=h)
    elif code == 2:
        xp.tanh(h, out=h)
    elif code == 3:  # 1 / (1 + exp(-h)) as 0.5 * (1 + tanh(h / 2)): no overflow for large |h|
        h *= 0.5
        xp.tanh(h, out=h)
        h += 1
        h *= 0.5
    elif code == 4:  # gelu, tanh approximation: 0.5 h (1 + tanh(sqrt(2/pi) (h + 0.044715 h^3)))
        u = h * h
        u *= 0.044715
        u += 1
        u *= h
        u *= _GELU_C
        xp.tanh(u, out=u)
        u += 1
        u *= 0.5
        h *= u
    return h


def linear_epilogue_reference(
    out: Any, base: Any, x: Any, left: Any, xa: Any, xa_rows: Any, right: Any, keys: Any,
    coef: Any, bias: Any, bias_noise: Any, bias_coef: Any, act: int,
) -> Any:  # fmt: skip
    """The "linear_epilogue" operation in array code (any dtype or rank, NumPy or CuPy): the
    reference of the compiled kernels, with their arguments (`epilogue` describes them)."""
    xp = namespace_of(out)
    if base is not None:
        out[...] = base
    if right is not None:
        if x is not None:  # per-member projections x_i @ left_k
            xa, xa_rows = xp.matmul(x, left[keys]), xp.arange(out.shape[0])
        lowrank.expand_reference(xa, xa_rows, right, keys, coef, out)
    if bias is not None:
        if bias_noise is None:
            out += bias
        else:
            rows = bias + bias_coef.reshape(-1, 1) * bias_noise[keys]  # (N, n) per-member bias
            out += rows.reshape(-1, 1, out.shape[2])
    return apply_activation(out, act)


def member_operands(w: LeafNoise | None, b: LeafNoise | None) -> tuple[Any, ...]:
    """(keys, coef, bias, bias_noise, bias_coef): the per-member operands of the compiled
    epilogues, in their argument order (None where absent: no low-rank correction, no bias, the
    noise and coefficients of a frozen bias)."""
    lowrank = w is not None and w.kind == "lowrank"
    keys = w.keys if w is not None else (b.keys if b is not None else None)
    if b is None:
        bias = (None, None, None)
    elif b.kind == "frozen":
        bias = (b.theta, None, None)
    else:
        bias = (b.theta, b.E, b.coef)
    return (None if keys is None else _u32(keys), w.coef if lowrank else None, *bias)


def epilogue(
    out: Any,
    base: Any,
    w: LeafNoise | None,
    b: LeafNoise | None,
    code: int,
    *,
    x: Any = None,
    left: Any = None,
    xa: Any = None,
    xa_rows: Any = None,
    right: Any = None,
    members: tuple[Any, ...] | None = None,
    memo: dict | None = None,
) -> Any:
    """The one pass after the base GEMM, in place on out (N, rows, n):

        out[i, j, :] = act(src + coef_i * t_ij @ right[keys[i]].T + bias_i)

    src is base[j] (shared (rows, n)) or out's own contents (base None); t_ij is x[i, j] @
    left[keys[i]] (per-member input; x (N, rows, m), left (K, m, r)) or xa[xa_rows[i], j]
    (precomputed (R, rows, r): a shared projection or gathered embedding rows); right (K, n, r).
    No correction when w is None or the leaf is not low-rank; bias_i = b's theta + coef_b,i *
    E_b[keys[i]] (full) or theta (frozen). A layer called again passes `member_operands(w, b)`
    as `members` and a `memo` of its rows (`dispatch.select_kept`: its other arrays are fresh
    C-order arrays of w's dtype, so the row depends only on which of them are given).
    """
    lowrank = w is not None and w.kind == "lowrank"
    if members is None:
        members = member_operands(w, b)
    if not lowrank:
        x = left = xa = xa_rows = right = None
    arrays = [out, base, x, left, xa, right, members[2], members[3]]
    impl = dispatch.select_kept(memo, (base is None, x is None), "linear_epilogue", arrays)
    xa_rows = None if xa_rows is None else _u32(xa_rows)
    impl(out, base, x, left, xa, xa_rows, right, *members, code)
    return out


_U32 = np.dtype(np.uint32)


def _u32(a: Any) -> Any:
    if type(a) is np.ndarray and a.dtype is _U32 and a.flags.c_contiguous:
        return a  # already what the kernels take (a population's keys): no call to make
    xp = namespace_of(a)
    return xp.ascontiguousarray(a, dtype=np.uint32)
