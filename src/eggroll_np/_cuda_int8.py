"""CuPy wrappers of the integer leaves' CUDA kernels: CuPy arrays in, raw pointers out.

The same call signatures and results, bit for bit, as `eggroll_np._core`'s int8 functions
(`gemm_s8s8s32`, `int8_linear`, `int8_epilogue`, `int8_xa`, `int8_contract`, `int8_update`),
here on CuPy arrays: the dispatch table's ("int_*", "cuda", "int8") rows. This layer checks
dtypes and shapes (host metadata only), makes operands contiguous, allocates the kernels'
packing workspaces and launches on CuPy's current stream without synchronising. Keys are not
read back to the host: a member whose key is out of range gets -128 in every output of the
layer (a value it never produces otherwise) and zero projections in `int8_xa`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import dispatch
from .backend import cupy, current_stream_ptr

__all__ = [
    "gemm_s8s8s32",
    "int8_linear",
    "int8_epilogue",
    "int8_xa",
    "int8_contract",
    "int8_update",
]

MAX_DEPTH = 131071
"""Largest inner dimension of an exact int32 sum of int8 products (128 * 128 * K < 2^31)."""


def _ptr(a: Any) -> int:
    return 0 if a is None else int(a.data.ptr)


def _arr(name: str, a: Any, dtype: Any, ndims: tuple[int, ...]) -> Any:
    if a is None:
        return None
    if not isinstance(a, cupy.ndarray) or a.dtype != dtype or a.ndim not in ndims:
        dims = " or ".join(f"{d}-D" for d in ndims)
        raise TypeError(f"{name} must be a {dims} {np.dtype(dtype).name} cupy.ndarray")
    return cupy.ascontiguousarray(a)


def _check_depth(k: int, what: str) -> None:
    if k > MAX_DEPTH:
        raise ValueError(f"{what} is {k}, above {MAX_DEPTH} (int32 accumulation would overflow)")


def _shift(name: str, s: int) -> int:
    if not 0 <= int(s) <= 62:
        raise ValueError(f"{name} must be in [0, 62]")
    return int(s)


def _work(nbytes: int, dtype: Any = np.int8) -> Any:
    return cupy.empty(max(int(nbytes), 1), dtype)


def _members(name: str, a: Any, N: int, dtype: Any) -> Any:
    a = _arr(name, a, dtype, (1,))
    if a is not None and a.shape != (N,):
        raise ValueError(f"{name} must have shape ({N},), got {a.shape}")
    return a


def gemm_s8s8s32(x: Any, w: Any, out: Any = None) -> Any:
    """out int32 (M, N) = x int8 (M, K) @ w int8 (K, N), exactly (see `_core.gemm_s8s8s32`)."""
    cuda = dispatch.require_cuda()
    x, w = _arr("x", x, np.int8, (2,)), _arr("w", w, np.int8, (2,))
    (M, K), N = x.shape, w.shape[1]
    if w.shape[0] != K:
        raise ValueError(f"x {x.shape} and w {w.shape} must agree on K")
    _check_depth(K, "K")
    if out is None:
        out = cupy.empty((M, N), np.int32)
    elif (
        not isinstance(out, cupy.ndarray)
        or out.dtype != np.int32
        or out.shape != (M, N)
        or not out.flags.c_contiguous
    ):
        raise ValueError(f"out must be a C-contiguous int32 cupy.ndarray of shape ({M}, {N})")
    with cupy.cuda.Device(x.device.id):
        cuda.int8_gemm(
            _ptr(x),
            _ptr(w),
            _ptr(out),
            M,
            K,
            N,
            _ptr(_work(cuda.int8_packed_rows(M, K))),
            _ptr(_work(cuda.int8_packed_cols(N, K))),
            current_stream_ptr(),
        )
    return out


def int8_linear(
    x: Any,
    w: Any,
    out: Any,
    a: Any = None,
    b: Any = None,
    keys: Any = None,
    signs: Any = None,
    lr_shift: int = 0,
    bias: Any = None,
    bias_noise: Any = None,
    bias_shift: int = 0,
    out_shift: int = 0,
    relu: bool = False,
) -> None:
    """The fused integer population linear layer into out (see `_core.int8_linear`)."""
    cuda = dispatch.require_cuda()
    x, w = _arr("x", x, np.int8, (3,)), _arr("w", w, np.int8, (2, 3))
    if not isinstance(out, cupy.ndarray) or out.dtype != np.int8 or out.ndim != 3:
        raise TypeError("out must be a 3-D int8 cupy.ndarray")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous (it is written in place)")
    N, B, n = out.shape
    X, m = x.shape[0], x.shape[2]
    if X not in (1, N) or x.shape[1] != B:
        raise ValueError(f"x must have shape (1 or {N}, {B}, m), got {x.shape}")
    per_member = w.ndim == 3
    if w.shape != ((N, m, n) if per_member else (m, n)):
        raise ValueError(f"w must have shape ({m}, {n}) or ({N}, {m}, {n}), got {w.shape}")
    a, b = _arr("a", a, np.int8, (3,)), _arr("b", b, np.int8, (3,))
    if (a is None) != (b is None):
        raise ValueError("give both a and b, or neither")
    K, r = (a.shape[0], a.shape[2]) if a is not None else (0, 0)
    if a is not None and (a.shape[1] != m or b.shape != (K, n, r) or r > 64):
        raise ValueError(f"a {a.shape} / b {b.shape} must be (K, {m}, r) / (K, {n}, r), r <= 64")
    bias = _arr("bias", bias, np.int8, (1, 2))
    if bias is not None and bias.shape not in ((n,), (N, n)):
        raise ValueError(f"bias must have shape ({n},) or ({N}, {n}), got {bias.shape}")
    bias_noise = _arr("bias_noise", bias_noise, np.int8, (2,))
    if bias_noise is not None:
        if bias is None or bias.ndim != 1 or bias_noise.shape[1] != n:
            raise ValueError(f"bias_noise (K, {n}) needs a shared bias ({n},)")
        K = min(K, bias_noise.shape[0]) if a is not None else bias_noise.shape[0]
    keys, signs = _members("keys", keys, N, np.uint32), _members("signs", signs, N, np.int8)
    if keys is None and (a is not None or bias_noise is not None):
        raise ValueError("keys are needed with a/b or bias_noise")
    _check_depth(m, "m")
    rows = cuda.int8_packed_rows(B, m) * X if per_member else cuda.int8_packed_rows(X * B, m)
    work_xa = _work((K if X == 1 else N) * B * r if a is not None else 0, np.int32)
    with cupy.cuda.Device(out.device.id):
        cuda.int8_linear(
            _ptr(x),
            _ptr(w),
            _ptr(a),
            m,
            _ptr(out),
            N,
            B,
            n,
            X,
            per_member,
            _ptr(b),
            K,
            r,
            _ptr(keys),
            _ptr(signs),
            _shift("lr_shift", lr_shift),
            _ptr(bias),
            bias is not None and bias.ndim == 2,
            _ptr(bias_noise),
            _shift("bias_shift", bias_shift),
            _shift("out_shift", out_shift),
            bool(relu),
            _ptr(_work(rows)),
            _ptr(_work((N if per_member else 1) * cuda.int8_packed_cols(n, m))),
            _ptr(work_xa),
            current_stream_ptr(),
        )


def int8_epilogue(
    out: Any,
    acc: Any,
    xa: Any,
    xa_rows: Any,
    right: Any,
    keys: Any,
    signs: Any,
    bias: Any,
    shift_lr: int,
    shift_out: int,
    relu: bool,
) -> None:
    """int8_linear's epilogue alone on a GEMM result (see `_core.int8_epilogue`)."""
    cuda = dispatch.require_cuda()
    if not isinstance(out, cupy.ndarray) or out.dtype != np.int8 or out.ndim != 3:
        raise TypeError("out must be a 3-D int8 cupy.ndarray")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous (it is written in place)")
    N, B, n = out.shape
    acc = _arr("acc", acc, np.int32, (2, 3))
    if acc.shape not in ((B, n), (N, B, n)):
        raise ValueError(f"acc must have shape ({B}, {n}) or ({N}, {B}, {n}), got {acc.shape}")
    xa, right = _arr("xa", xa, np.int32, (3,)), _arr("right", right, np.int8, (3,))
    if (xa is None) != (right is None):
        raise ValueError("give both xa and right, or neither")
    K, r, count = 0, 0, 0
    if xa is not None:
        K, r, count = right.shape[0], right.shape[2], xa.shape[0]
        if right.shape[1] != n or xa.shape[1:] != (B, r) or r > 64:
            raise ValueError(f"xa {xa.shape} / right {right.shape} do not match out {out.shape}")
        if xa_rows is None and count < N:
            raise ValueError("xa_rows is needed when xa has fewer than N rows")
    keys, signs = _members("keys", keys, N, np.uint32), _members("signs", signs, N, np.int8)
    if keys is None and xa is not None:
        raise ValueError("keys are needed with xa and right")
    bias = _arr("bias", bias, np.int8, (1, 2))
    if bias is not None and bias.shape not in ((n,), (N, n)):
        raise ValueError(f"bias must have shape ({n},) or ({N}, {n}), got {bias.shape}")
    with cupy.cuda.Device(out.device.id):
        cuda.int8_epilogue(
            _ptr(out),
            _ptr(acc),
            acc.ndim == 3,
            _ptr(xa),
            _ptr(_members("xa_rows", xa_rows, N, np.uint32)),
            count,
            _ptr(right),
            K,
            r,
            _ptr(keys),
            _ptr(signs),
            _ptr(bias),
            bias is not None and bias.ndim == 2,
            _shift("shift_lr", shift_lr),
            _shift("shift_out", shift_out),
            bool(relu),
            N,
            B,
            n,
            current_stream_ptr(),
        )


def int8_xa(x: Any, a: Any, keys: Any) -> Any:
    """xa int32 (N, B, r) = x[(i or 0)] @ a[keys[i]] (see `_core.int8_xa`)."""
    cuda = dispatch.require_cuda()
    x, a = _arr("x", x, np.int8, (3,)), _arr("a", a, np.int8, (3,))
    keys = _arr("keys", keys, np.uint32, (1,))
    N, (X, B, m), (K, _, r) = keys.shape[0], x.shape, a.shape
    if a.shape[1] != m or X not in (1, N):
        raise ValueError(f"x {x.shape} must be (1 or {N}, B, m) with a (K, m, r) {a.shape}")
    _check_depth(m, "m")
    xa = cupy.empty((N, B, r), np.int32)
    with cupy.cuda.Device(x.device.id):
        cuda.int8_xa(_ptr(x), X, _ptr(a), _ptr(keys), N, K, B, m, r, _ptr(xa), current_stream_ptr())
    return xa


def _contract(a: Any, b: Any, c: Any, q: Any = None, tau: int = 0) -> Any:
    """z = sum_k c[k] a[k] @ b[k].T (q None), else the new leaf from q and the threshold tau."""
    cuda = dispatch.require_cuda()
    a, b, c = (_arr(k, v, np.int8, (d,)) for k, v, d in (("a", a, 3), ("b", b, 3), ("c", c, 1)))
    K, m, r = a.shape
    n = b.shape[1]
    if b.shape[0] != K or b.shape[2] != r or c.shape != (K,):
        raise ValueError(f"a {a.shape}, b {b.shape} and c {c.shape} must agree on K and r")
    _check_depth(K * r, "K * r")
    q = _arr("q", q, np.int8, (2,))
    if q is not None and q.shape != (m, n):
        raise ValueError(f"q must have shape ({m}, {n}), got {q.shape}")
    out = cupy.empty((m, n), np.int32 if q is None else np.int8)
    work_a = _work(cuda.int8_packed_rows(m, K * r))
    work_b = _work(cuda.int8_packed_cols(n, K * r))
    z, q_out = (out, None) if q is None else (None, out)
    with cupy.cuda.Device(a.device.id):
        cuda.int8_contract(
            _ptr(a), _ptr(b), _ptr(c), K, m, n, r, _ptr(z), _ptr(q), int(tau), _ptr(q_out),
            _ptr(work_a), _ptr(work_b), current_stream_ptr(),
        )  # fmt: skip
    return out


def int8_contract(a: Any, b: Any, c: Any) -> Any:
    """z int32 (m, n) = sum_k c[k] a[k] @ b[k].T (see `_core.int8_contract`; a != -128)."""
    return _contract(a, b, c)


def int8_update(q: Any, a: Any, b: Any, c: Any, tau: int) -> Any:
    """The new int8 (m, n) clip(q + sign(z) * (|z| >= tau)) (see `_core.int8_update`)."""
    if q is None:
        raise TypeError("q must be a 2-D int8 cupy.ndarray")
    return _contract(a, b, c, q, tau)
