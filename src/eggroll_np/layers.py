"""Population layers on explicit noise arrays: fused linear and embedding (conv2d is in `conv`).

Every function here takes a `LeafNoise` (a leaf's value theta plus its members' noise: low-rank
factors, dense noise or none) instead of a Population, so the math has no dependence on how a
generation's noise is produced or cached. Member i's leaf is theta + coef_i * eps_(keys[i]),
eps = A_k @ B_k.T (reshaped to the leaf for ndim >= 3) for a low-rank leaf, E_k for a full-rank
one, 0 for a frozen one. A low-rank leaf never becomes N dense matrices: a shared input is
multiplied by theta once and each member adds its rank-r correction.

After the base GEMM the rest of a layer is ONE pass over the output (`eggroll_np.epilogue`):
base (shared or per member) + low-rank correction + per-member bias + activation, on the C++ core
for float32 NumPy arrays and on the CUDA core for float32 CuPy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks
from .backend import as_array, namespace_of
from .epilogue import LeafNoise, activation_code, epilogue, member_operands

__all__ = [
    "same_backend",
    "as_input",
    "check_bias",
    "check_pair",
    "check_ids",
    "rows_input",
    "LinearPlan",
    "linear",
    "run_linear",
    "embed",
]


_I8 = np.dtype(np.int8)  # a dtype compares with a dtype faster than with a scalar type


def same_backend(x: Any, theta: Any, name: str, what: str) -> Any:
    """x (a DLPack array adopted first, without a copy: `backend.as_array`) when it is on
    theta's backend or a Python value; mixed NumPy/CuPy is a TypeError naming both."""
    x = as_array(x, what)
    xp = namespace_of(theta)
    if namespace_of(x) is not xp and not isinstance(x, (list, tuple, float, int)):
        raise TypeError(
            f"{what} is a {namespace_of(x).__name__} array but leaf '{name}' is a "
            f"{xp.__name__} array; mixed NumPy/CuPy is not supported"
        )
    return x


def as_input(x: Any, theta: Any, name: str, what: str = "x") -> Any:
    """x as a C-contiguous array of theta's backend and dtype (`same_backend` first): the one
    validation of every layer's input (linear, conv2d)."""
    xp = namespace_of(theta)
    if type(x) is not xp.ndarray:  # a plain array of theta's backend: nothing to adopt or mix
        x = same_backend(x, theta, name, what)
    x = _checks.real_array(what, x, xp)  # never cast strings
    if x.dtype == _I8:  # int8 activations belong to int8 leaves: never silently cast
        raise TypeError(
            f"{what} is int8 but leaf '{name}' is {theta.dtype}; int8 inputs need an int8 leaf "
            f"(convert x to {theta.dtype} to use this float leaf)"
        )
    return xp.ascontiguousarray(x, dtype=theta.dtype)


def check_bias(b: LeafNoise | None, width: int, w: LeafNoise) -> None:
    """A bias leaf must be 1-D of the layer's output width, w's dtype and backend, not low-rank."""
    if b is None:
        return
    t = b.theta
    if t.ndim != 1 or t.shape[0] != width:
        raise ValueError(f"b: leaf '{b.name}' must have shape ({width},), got {tuple(t.shape)}")
    if t.dtype != w.theta.dtype or namespace_of(t) is not namespace_of(w.theta):
        raise TypeError(
            f"b: leaf '{b.name}' ({t.dtype}) must have the dtype and backend of w '{w.name}' "
            f"({w.theta.dtype})"
        )
    if b.kind == "lowrank":  # unreachable through init (1-D leaves are never low-rank)
        raise ValueError(f"b: leaf '{b.name}' is low-rank; a bias must be full-rank or frozen")


def rows_input(x: Any, m: int, n_members: int, name: str, what: str) -> bool:
    """True for a shared (B, m) input, False for per-member (N, B, m); else a ValueError."""
    if x.ndim == 2 and x.shape[1] == m:
        return True
    if x.ndim == 3 and x.shape[0] == n_members and x.shape[2] == m:
        return False
    raise ValueError(
        f"x must have shape (B, {m}) or ({n_members}, B, {m}) for leaf '{name}'{what}, "
        f"got {tuple(x.shape)}"
    )


class LinearPlan:
    """What a population layer call of `linear` keeps between calls: its leaves, checked
    once (activation, transpose, W's ndim, the bias), the epilogue's per-member operands and
    its dispatch rows (`dispatch.select_kept`). Only x changes from call to call."""

    __slots__ = ("w", "b", "code", "transpose", "members", "memo")

    def __init__(self, w: LeafNoise, b: LeafNoise | None, activation: Any, transpose: Any) -> None:
        self.code = activation_code(activation)
        self.transpose = _checks.boolean("transpose", transpose)
        W = w.theta
        if W.ndim != 2:
            raise ValueError(f"w: linear needs a 2-D leaf, '{w.name}' has shape {tuple(W.shape)}")
        check_bias(b, W.shape[0] if self.transpose else W.shape[1], w)
        self.w, self.b = w, b
        self.members = member_operands(w if w.kind == "lowrank" else None, b)
        self.memo: dict = {}


def linear(
    x: Any, w: LeafNoise, b: LeafNoise | None = None, activation: str | None = None,
    transpose: bool = False,
) -> Any:  # fmt: skip
    """act(x @ W_i + b_i) for every member: the base GEMM, then one fused pass.

    Args:
        x: shared (B, m) or per-member (N, B, m) input, cast to w's dtype.
        w: a 2-D leaf (m, n) (low-rank, full-rank or frozen).
        b: None or a 1-D leaf (n,) (full-rank or frozen).
        activation: None, "relu", "tanh", "sigmoid" or "gelu" (tanh approximation).
        transpose: use W_i.T (x then has n columns, the output m).

    Returns:
        (N, B, n) array in w's dtype and backend.
    """
    return run_linear(x, LinearPlan(w, b, activation, transpose))


def run_linear(x: Any, plan: LinearPlan) -> Any:
    """`linear` of a plan (a population keeps one per layer): x checked, the GEMMs, the
    epilogue."""
    w, b, code, transpose = plan.w, plan.b, plan.code, plan.transpose
    W = w.theta
    x = as_input(x, W, w.name)
    Wt = W.T if transpose else W
    m, n = Wt.shape
    N = w.size
    shared = rows_input(x, m, N, w.name, " (transposed)" if transpose else "")
    xp = namespace_of(W)
    if shared:
        base = x @ Wt  # the shared GEMM, once for the whole population
        out = xp.empty((N, x.shape[0], n), dtype=W.dtype)
    else:
        base = None
        out = (x.reshape(-1, m) @ Wt).reshape(N, x.shape[1], n)
    ops = {"members": plan.members, "memo": plan.memo}
    if w.kind == "full":  # dense noise: its own GEMMs, then the epilogue adds bias/activation
        if base is not None:
            out[...] = base
        # key chunk by key chunk: a large leaf (naive ES on a 1024x1024 layer) never has all N
        # dense perturbations in memory at once, only one chunk of noise
        for members, rows, E in w.full_chunks():
            Et = E.transpose(0, 2, 1) if transpose else E
            scale = w.coef[members].reshape(-1, 1, 1)
            if shared:
                out[members] += scale * xp.matmul(x, Et)[rows]
            else:
                out[members] += scale * xp.matmul(x[members], Et[rows])
            del E, Et  # free this chunk before the next one is generated
        return epilogue(out, None, None, b, code, **ops)
    if w.kind == "frozen":
        return epilogue(out, base, None, b, code, **ops)
    left, right = (w.B, w.A) if transpose else (w.A, w.B)
    if shared:  # x @ left_k for every key as ONE GEMM: (B, m) @ (m, K*r) -> (K, B, r)
        K, _, r = left.shape
        xa = (x @ (w.b_columns if transpose else w.a_columns)).reshape(x.shape[0], K, r)
        xa = xp.ascontiguousarray(xa.transpose(1, 0, 2))
        return epilogue(out, base, w, b, code, xa=xa, xa_rows=w.keys, right=right, **ops)
    return epilogue(out, None, w, b, code, x=x, left=left, right=right, **ops)


def embed(ids: Any, w: LeafNoise, per_member: bool = False) -> Any:
    """Rows of every member's table W_i at integer ids, without forming any W_i.

    Args:
        ids: integers of any shape S in [0, V) (shared), or `(N, *S)` with per_member=True.
        w: a 2-D leaf (V, d).
        per_member: ids[i] are member i's own ids.

    Returns:
        `(N, *S, d)` array in w's dtype and backend.
    """
    ids, flat, shape = check_ids(ids, w, per_member)
    W = w.theta
    xp = namespace_of(W)
    d = W.shape[1]
    N = w.size
    L = flat.shape[-1]
    if per_member:
        out = W[flat]  # (N, L, d), a gather: each member's own rows
        base = None
    else:
        base = W[flat]  # (L, d), shared by every member
        out = xp.empty((N, L, d), dtype=W.dtype)
    if w.kind == "full":
        if base is not None:
            out[...] = base
        out += w.coef.reshape(-1, 1, 1) * w.E[w.keys[:, None], flat]  # (N, L, d) gathered rows
        return out.reshape(N, *shape, d)
    if w.kind == "frozen":
        if base is not None:
            out[...] = base
        return out.reshape(N, *shape, d)
    if per_member:  # rows of A_k at member i's ids: (N, L, r)
        xa = xp.ascontiguousarray(w.A[w.keys[:, None], flat])
        xa_rows = xp.arange(N)
    else:  # rows of every key's A at the shared ids: (K, L, r)
        xa = xp.ascontiguousarray(w.A[:, flat])
        xa_rows = w.keys
    epilogue(out, base, w, None, 0, xa=xa, xa_rows=xa_rows, right=w.B)
    return out.reshape(N, *shape, d)


def check_ids(ids: Any, w: LeafNoise, per_member: Any) -> tuple[Any, Any, tuple[int, ...]]:
    """Validate an embedding's ids for a 2-D leaf (V, d): integers in [0, V) on its backend,
    `(N, ...)` with per_member. Returns (ids, flat ids (L,) or (N, L), their shape S)."""
    per_member = _checks.boolean("per_member", per_member)
    W = w.theta
    if W.ndim != 2:
        raise ValueError(f"w: embed needs a 2-D leaf (V, d), '{w.name}' has shape {tuple(W.shape)}")
    xp = namespace_of(W)
    ids = _checks.rectangular("ids", same_backend(ids, W, w.name, "ids"), xp)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
    V = W.shape[0]
    N = w.size
    if per_member and (ids.ndim < 1 or ids.shape[0] != N):
        raise ValueError(
            f"ids must have shape ({N}, ...) with per_member=True, got {tuple(ids.shape)}"
        )
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= V):
        raise ValueError(
            f"ids must be in [0, {V}) for leaf '{w.name}', got values in "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )
    shape = ids.shape[1:] if per_member else ids.shape
    flat = ids.reshape(N, -1) if per_member else ids.reshape(-1)
    return ids, flat, tuple(shape)


# conv2d's stride and padding stay below 2^31: the kernels index in 32 bits, and a larger one
# would only overflow NumPy's strides or allocate an impossible padded input.
_PAIR_LIMIT = 2**31


def check_pair(name: str, value: Any, lo: int) -> tuple[int, int]:
    """An int or a pair of ints, each in [lo, 2^31), as a pair (conv2d's stride and padding)."""
    vals = value if isinstance(value, (tuple, list)) else (value, value)
    if len(vals) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return (
        _checks.integer(name, vals[0], lo, _PAIR_LIMIT),
        _checks.integer(name, vals[1], lo, _PAIR_LIMIT),
    )
