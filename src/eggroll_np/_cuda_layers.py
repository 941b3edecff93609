"""CuPy wrappers of the population layers' CUDA epilogues: CuPy arrays in, raw pointers out.

Same call signatures as `eggroll_np._core.linear_epilogue` / `conv_epilogue` (the signatures of
the dispatch table's "linear_epilogue" and "conv_epilogue" operations, `eggroll_np.dispatch`). The arrays come from those modules (already
shaped and typed); this layer makes them contiguous where the kernels need it, checks shapes,
and launches on CuPy's current stream without synchronising or copying to the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import dispatch
from .backend import cupy, current_stream_ptr

__all__ = ["linear_epilogue", "conv_epilogue", "linear_fused"]


def _ptr(a: Any) -> int:
    return 0 if a is None else int(a.data.ptr)


def _f32(name: str, a: Any, ndim: int, contiguous: bool = True) -> Any:
    if a is None:
        return None
    if not isinstance(a, cupy.ndarray) or a.dtype != np.float32 or a.ndim != ndim:
        raise TypeError(f"{name} must be a {ndim}-D float32 cupy.ndarray")
    return cupy.ascontiguousarray(a) if contiguous else a


def _u32(a: Any) -> Any:
    return None if a is None else cupy.ascontiguousarray(cupy.asarray(a), dtype=np.uint32)


def _keys_bound(*indexed: Any) -> int:
    """The number of noise keys every key-indexed operand has (keys must be below it)."""
    return min([t.shape[0] for t in indexed if t is not None], default=np.iinfo(np.uint32).max)


def _strides(a: Any) -> list[int]:
    return [s // a.itemsize for s in a.strides]


def linear_epilogue(
    out: Any, base: Any, x: Any, a: Any, xa: Any, xa_rows: Any, b: Any, keys: Any, coef: Any,
    bias: Any, bias_noise: Any, bias_coef: Any, act: int,
) -> None:  # fmt: skip
    """See `eggroll_np._core.linear_epilogue` (here on CuPy float32 arrays)."""
    cuda = dispatch.require_cuda()
    out = _f32("out", out, 3)
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous (it is written in place)")
    N, rows, n = out.shape
    base, b = _f32("base", base, 2), _f32("b", b, 3)
    keys = _u32(keys)
    rank = xa_count = 0
    if b is not None:
        if x is not None:  # per-member projection x_i @ a_k with cuBLAS (batched GEMMs)
            xa = cupy.matmul(_f32("x", x, 3), _f32("a", a, 3)[keys])
            xa_rows = None
        xa = _f32("xa", xa, 3)
        rank, xa_count = b.shape[2], xa.shape[0]
        if b.shape[1] != n or xa.shape[1:] != (rows, rank):
            raise ValueError(f"b {b.shape} / xa {xa.shape} do not match out {out.shape}")
    bias, bias_noise = _f32("bias", bias, 1), _f32("bias_noise", bias_noise, 2)
    bound = _keys_bound(b, bias_noise)
    with cupy.cuda.Device(out.device.id):
        cuda.linear_epilogue(
            _ptr(out), _ptr(base), _ptr(xa if b is not None else None),
            _ptr(_u32(xa_rows) if b is not None else None), False, _ptr(b), _ptr(keys),
            _ptr(_f32("coef", coef, 1)), _ptr(bias), _ptr(bias_noise),
            _ptr(_f32("bias_coef", bias_coef, 1)), int(act), N, rows, n, rank, xa_count, bound,
            current_stream_ptr(),
        )  # fmt: skip


def conv_epilogue(
    out: Any, src: Any, a: Any, v: Any, v_index: Any, keys: Any, coef: Any, bias: Any,
    bias_noise: Any, bias_coef: Any, act: int,
) -> None:  # fmt: skip
    """See `eggroll_np._core.conv_epilogue` (here on CuPy float32 arrays)."""
    cuda = dispatch.require_cuda()
    out = _f32("out", out, 4)
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous (it is written in place)")
    N, Bt, Co, P = out.shape
    src = _f32("src", src, 4, contiguous=False)
    if src.shape[0] not in (1, N) or src.shape[1:] != (Bt, Co, P):
        raise ValueError(f"src must have shape (1 or {N}, {Bt}, {Co}, {P}), got {src.shape}")
    a, v = _f32("a", a, 3), _f32("v", v, 4, contiguous=False)
    rank = v_count = 0
    if a is not None:
        rank, v_count = a.shape[2], v.shape[0]
        if a.shape[1] != Co or v.shape[1:] != (Bt, rank, P):
            raise ValueError(f"a {a.shape} / v {v.shape} do not match out {out.shape}")
    bias, bias_noise = _f32("bias", bias, 1), _f32("bias_noise", bias_noise, 2)
    bound = _keys_bound(a, bias_noise)
    with cupy.cuda.Device(out.device.id):
        cuda.conv_epilogue(
            _ptr(out), _ptr(src), _strides(src), src.shape[0] == 1, _ptr(a), _ptr(v),
            _strides(v) if v is not None else [0, 0, 0, 0], _ptr(_u32(v_index)), _ptr(_u32(keys)),
            _ptr(_f32("coef", coef, 1)), _ptr(bias), _ptr(bias_noise),
            _ptr(_f32("bias_coef", bias_coef, 1)), int(act), N, Bt, Co, P, rank, v_count, bound,
            current_stream_ptr(),
        )  # fmt: skip


def _elem_strides(a: Any) -> list[int]:
    return [0, 0, 0] if a is None else [s // a.itemsize for s in a.strides] + [0] * (3 - a.ndim)


def linear_fused(
    out: Any, base: Any, x: Any, xa: Any, slot_keys: Any, xa_rows: Any, keys: Any, coef: Any,
    bias: Any, bias_coef: Any, left: Any, right: Any, bias_noise: Any, offsets: tuple[int, int],
    leaves: tuple[int, int], seed: int, epoch: int, act: int,
) -> None:  # fmt: skip
    """The fused linear layer (csrc/cuda/fused.cuh) on CuPy arrays, already shaped, typed and
    C-contiguous by `eggroll_np.fused_linear` (this is its hot path: pointers only, no checks
    that cost a launch or a copy). left/right/bias_noise None: made from Philox in the kernels
    (keys are then stream keys); arrays: held factors read with their strides (keys index them).
    """
    cuda = dispatch.require_cuda()
    N, rows, n = out.shape
    slots, _, rank = xa.shape
    generate = left is None
    noisy = bias_coef is not None
    cuda.linear_fused(
        _ptr(out), _ptr(base), _ptr(x), _ptr(xa), _ptr(slot_keys), _ptr(xa_rows), _ptr(keys),
        _ptr(coef), _ptr(bias), _ptr(bias_coef), _ptr(left), _elem_strides(left), offsets[0],
        _ptr(right), _elem_strides(right), offsets[1], _ptr(bias_noise),
        _elem_strides(bias_noise), leaves[0], leaves[1], generate, noisy, seed, epoch, act, N,
        rows, x.shape[-1], n, rank, slots, 0 if generate else left.shape[0],
        current_stream_ptr(),
    )  # fmt: skip
