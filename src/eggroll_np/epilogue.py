"""The one pass after a population layer's base GEMM: activations, compiled kernels, reference.

`epilogue` writes out (N, rows, n) once: its source (a shared base or out's own GEMM result),
each member's low-rank correction, its bias and the activation; `_core` runs it for float32 NumPy
arrays (SIMD, threads, GIL released), the CUDA wrappers for float32 CuPy arrays, and
`epilogue_reference` (array code) otherwise: the reference the kernels are tested against.
`LeafNoise` is how a layer receives one leaf and its members' noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _ext
from .backend import is_cupy_array, namespace_of

__all__ = [
    "ACTIVATIONS",
    "LeafNoise",
    "activation_code",
    "apply_activation",
    "member_operands",
    "compiled_ops",
    "epilogue",
    "epilogue_reference",
]

#: Activation names the layers take (None is the identity), in the kernels' code order.
ACTIVATIONS: tuple[str | None, ...] = (None, "relu", "tanh", "sigmoid", "gelu")
_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
_GELU_C = float(np.sqrt(2.0 / np.pi))
# Members per chunk of the reference expansion: (c, rows, n) products stay cache-sized.
_CHUNK_VALUES = 1 << 20


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
        E: `(K, *shape)` full-rank unit noise.
    """

    name: str
    theta: Any
    kind: str
    keys: Any
    coef: Any
    A: Any = None
    B: Any = None
    E: Any = None

    @property
    def size(self) -> int:
        """Members N."""
        return int(self.keys.shape[0])


def activation_code(activation: Any) -> int:
    """The kernels' code of an activation name (None 0, relu 1, tanh 2, sigmoid 3, gelu 4)."""
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


def _expand_reference(xa: Any, xa_rows: Any, R: Any, keys: Any, coef: Any, out: Any) -> None:
    """out[i] += coef[i] * xa[xa_rows[i]] @ R[keys[i]].T, members in cache-sized chunks."""
    xp = namespace_of(out)
    n_members, rows, n = out.shape
    step = max(1, _CHUNK_VALUES // max(1, rows * n))
    for s in range(0, n_members, step):
        sl = slice(s, s + step)
        t = xa[xa_rows[sl]] * coef[sl].reshape(-1, 1, 1)
        out[sl] += xp.matmul(t, R[keys[sl]].transpose(0, 2, 1))


def _bias_rows(b: LeafNoise, sl: slice | None = None) -> Any:
    """(N, n) per-member bias (or (n,) for a frozen one)."""
    if b.kind == "frozen":
        return b.theta
    keys = b.keys if sl is None else b.keys[sl]
    coef = b.coef if sl is None else b.coef[sl]
    return b.theta + coef.reshape(-1, 1) * b.E[keys]


def epilogue_reference(
    out: Any,
    base: Any,
    xa: Any,
    xa_rows: Any,
    w: LeafNoise | None,
    right: Any,
    b: LeafNoise | None,
    code: int,
) -> Any:
    """`epilogue` in array code (any dtype or rank, NumPy or CuPy): the reference."""
    if base is not None:
        out[...] = base
    if w is not None and xa is not None:
        _expand_reference(xa, xa_rows, right, w.keys, w.coef, out)
    if b is not None:
        out += _bias_rows(b).reshape(-1, 1, out.shape[2]) if b.kind != "frozen" else b.theta
    return apply_activation(out, code)


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


def compiled_ops(kernel: str, arrays: list[Any], contiguous: bool = True) -> Any:
    """The compiled ops that run `kernel` on these arrays: `_core` for float32 NumPy arrays (C
    order unless `contiguous` is False), the CUDA wrappers for float32 CuPy arrays, else None
    (the array-code reference runs instead)."""
    present = [a for a in arrays if a is not None]
    if (
        _ext.core is not None
        and hasattr(_ext.core, kernel)
        and all(
            isinstance(a, np.ndarray)
            and a.dtype == np.float32
            and (a.flags.c_contiguous or not contiguous)
            for a in present
        )
    ):
        return _ext.core
    if (
        _ext.cuda is not None
        and hasattr(_ext.cuda, kernel)
        and all(is_cupy_array(a) and a.dtype == np.float32 for a in present)
    ):
        from . import _cuda_layers  # imports CuPy: only on the GPU path

        return _cuda_layers
    return None


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
) -> Any:
    """The one pass after the base GEMM, in place on out (N, rows, n):

        out[i, j, :] = act(src + coef_i * t_ij @ right[keys[i]].T + bias_i)

    src is base[j] (shared (rows, n)) or out's own contents (base None); t_ij is x[i, j] @
    left[keys[i]] (per-member input; x (N, rows, m), left (K, m, r)) or xa[xa_rows[i], j]
    (precomputed (R, rows, r): a shared projection or gathered embedding rows); right (K, n, r).
    No correction when w is None or the leaf is not low-rank; bias_i = b's theta + coef_b,i *
    E_b[keys[i]] (full) or theta (frozen).
    """
    lowrank = w is not None and w.kind == "lowrank"
    if lowrank and x is not None:
        if compiled_ops("linear_epilogue", [out, x, left, right]) is None:
            xp = namespace_of(out)
            xa, xa_rows = xp.matmul(x, left[w.keys]), xp.arange(out.shape[0])
            x = None
    members = member_operands(w, b)
    bias, bias_e = members[2], members[3]
    arrays = [out, base, x, left, xa, right, bias, bias_e] if lowrank else [out, base, bias, bias_e]
    ops = compiled_ops("linear_epilogue", arrays)
    if ops is not None:
        ops.linear_epilogue(
            out,
            base,
            x if lowrank else None,
            left if lowrank else None,
            xa if lowrank else None,
            None if not lowrank or xa_rows is None else _u32(xa_rows),
            right if lowrank else None,
            *members,
            code,
        )
        return out
    return epilogue_reference(out, base, xa, xa_rows, w if lowrank else None, right, b, code)


def _u32(a: Any) -> Any:
    xp = namespace_of(a)
    return xp.ascontiguousarray(a, dtype=np.uint32)
