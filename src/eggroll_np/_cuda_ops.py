"""Thin CuPy wrappers over eggroll_np._cuda: validated arrays in, raw pointers + current stream out.

Policy lives here, the compiled module holds none: this layer checks dtypes, shapes, contiguity
and devices (errors name the argument), allocates scratch from CuPy's memory pool and launches on
CuPy's current stream. Nothing here synchronises the device or copies to the host, so the calls
can sit in a training loop's hot path. The NumPy reference of the same math is in the engine
(`eggroll_np.lowrank`); tests compare the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import dispatch
from .backend import cupy, current_stream_ptr, is_cupy_array

__all__ = ["philox", "normals", "lowrank_correction", "rank_major", "contract", "CONTRACT_TILES",
           "adam"]

_X_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}


def philox(counters: Any, key: np.ndarray) -> Any:
    """The "philox" operation on CuPy: counters (n, 4) uint32 C-contiguous, key (2,) on the host."""
    cuda = dispatch.require_cuda()
    out = cupy.empty_like(counters)
    cuda.philox4x32_10(
        counters.data.ptr, counters.shape[0], int(key[0]), int(key[1]), out.data.ptr,
        current_stream_ptr(),
    )  # fmt: skip
    return out


def normals(seed: int, epoch: int, keys: Any, leaves: list, offsets: list, outs: list) -> None:
    """The "normals" operation on CuPy: keys (K,) uint32 on the device (uploaded once by the
    caller); every request in one launch per 32 (the kernel's job table)."""
    dispatch.require_cuda().fill_normals_many(
        seed, epoch, keys.data.ptr, keys.size, leaves, offsets, [out.shape[1] for out in outs],
        [out.data.ptr for out in outs], current_stream_ptr(),
    )  # fmt: skip


def _device_array(name: str, a: Any, dtypes: tuple[np.dtype, ...], ndims: tuple[int, ...]) -> Any:
    if not is_cupy_array(a):
        raise TypeError(f"{name} must be a cupy.ndarray, got {type(a).__name__}")
    if a.dtype not in dtypes:
        want = " or ".join(str(d) for d in dtypes)
        raise TypeError(f"{name} must have dtype {want}, got {a.dtype}")
    if a.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(a.shape)}")
    return a


def _member_vector(name: str, v: Any, dtype: type, size: int, device_id: int) -> Any:
    """A C-contiguous (size,) device vector from a CuPy or host array (host input is uploaded)."""
    on_device = is_cupy_array(v)
    if not on_device:
        v = np.asarray(v)
    kinds = "iu" if dtype is np.uint32 else "fiu"
    if v.dtype.kind not in kinds:
        what = "integers" if dtype is np.uint32 else "real numbers"
        raise TypeError(f"{name} must be {what}, got dtype {v.dtype}")
    if v.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {tuple(v.shape)}")
    if on_device and v.device.id != device_id:
        raise ValueError(f"{name} is on device {v.device.id}, out on device {device_id}")
    with cupy.cuda.Device(device_id):  # a cast on the device or an upload; never a download
        return cupy.ascontiguousarray(cupy.asarray(v).astype(dtype, copy=False))


def _factor_pair(A: Any, B: Any) -> tuple[Any, Any]:
    """A (K, m, r) and B (K, n, r): float32 CuPy arrays that agree on K and r (errors name them)."""
    A = _device_array("A", A, (np.dtype(np.float32),), (3,))
    B = _device_array("B", B, (np.dtype(np.float32),), (3,))
    if A.shape[0] != B.shape[0] or A.shape[2] != B.shape[2]:
        raise ValueError(
            f"A (K, m, r) and B (K, n, r) must agree on K and r, got {tuple(A.shape)} and "
            f"{tuple(B.shape)}"
        )
    return A, B


def rank_major(F: Any) -> Any:
    """Factors (K, rows, r) as the kernels read them: a C-contiguous (K, r, rows) array.

    Free (a view) when F is already stored rank-major, as the factors `noise.as_factors` makes on
    CuPy are, and for r = 1; otherwise one transposing copy.
    """
    K, rows, r = F.shape
    if r == 1 and F.flags.c_contiguous:
        return F.reshape(K, 1, rows)
    t = F.transpose(0, 2, 1)
    return t if t.flags.c_contiguous else cupy.ascontiguousarray(t)


def lowrank_correction(
    x: Any,
    A: Any,
    B: Any,
    keys: Any,
    coef: Any,
    out: Any,
    transpose: bool = False,
    base: Any = None,
) -> Any:
    """Add every member's low-rank perturbation onto a population matmul, in place, on the GPU.

    Computes ``out[i, b, :] += coef[i] * sum_r (x_i[b] . A_k[:, r]) * B_k[:, r]`` with
    ``k = keys[i]``: the term ``x_i @ (coef_i * A_k @ B_k.T)`` of ``x_i @ W_i`` without forming any
    (m, n) matrix. With ``transpose=True`` the roles of A and B swap (the term of ``x_i @ W_i.T``).
    With ``base`` given, ``out = base[b] + correction`` and ``out``'s old contents are not read
    (the shared-batch case, where ``base = x @ W`` is computed once for all members).

    Args:
        x: CuPy array (Bt, m) shared by all members or (N, Bt, m) per member; float32 or
            float16 (accumulated in float32). With transpose=True the rows have length n.
        A: CuPy float32 (K, m, r), the per-generation factor cache. The kernels read it
            rank-major, so for r > 1 it is best stored that way (a transposed view of a
            (K, r, m) array, as `noise.as_factors` makes them); any other layout costs a
            transposing copy per call.
        B: CuPy float32 (K, n, r), the same.
        keys: (N,) integer factor index of each member, 0 <= keys[i] < K (cast to uint32). A
            NumPy/list input is range-checked and uploaded; a CuPy input is trusted, since
            checking it would cost a device-to-host copy (an out-of-range key makes that
            member's rows NaN, never an out-of-bounds read).
        coef: (N,) scale of each member (e.g. sigma * s_i / sqrt(r)), cast to float32; CuPy or
            host.
        out: CuPy float32 (N, Bt, n) (transpose: (N, Bt, m)), C-contiguous, updated in place.
        transpose: use the transposed perturbation (x @ W.T).
        base: None, or CuPy float32 (Bt, n) (transpose: (Bt, m)) holding x @ W for shared x.

    Returns:
        `out`.

    Raises:
        RuntimeError: no CUDA device / no CuPy / no CUDA extension.
        TypeError, ValueError: an argument of the wrong type, dtype, shape, layout or device;
            the message names it. Nothing is written on error.
    """
    cuda = dispatch.require_cuda()
    out = _device_array("out", out, (np.dtype(np.float32),), (3,))
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous (it is written in place)")
    A, B = _factor_pair(A, B)
    x = _device_array("x", x, tuple(_X_DTYPES), (2, 3))
    left, right = (B, A) if transpose else (A, B)
    num_keys, rows_left, rank = left.shape
    rows_right = right.shape[1]
    members, batch = out.shape[0], out.shape[1]
    if out.shape[2] != rows_right:
        raise ValueError(
            f"out must have shape (N, Bt, {rows_right}) for {'B' if not transpose else 'A'} "
            f"{tuple(right.shape)}, got {tuple(out.shape)}"
        )
    want_x = (members, batch, rows_left) if x.ndim == 3 else (batch, rows_left)
    if tuple(x.shape) != want_x:
        raise ValueError(
            f"x must have shape {want_x} for out {tuple(out.shape)}, got {tuple(x.shape)}"
        )
    device_id = out.device.id
    for name, a in (("x", x), ("A", A), ("B", B)):
        if a.device.id != device_id:
            raise ValueError(f"{name} is on device {a.device.id}, out on device {device_id}")
    if base is not None:
        base = _device_array("base", base, (np.dtype(np.float32),), (2,))
        if tuple(base.shape) != (batch, rows_right):
            raise ValueError(f"base must have shape {(batch, rows_right)}, got {tuple(base.shape)}")
        if base.device.id != device_id:
            raise ValueError(f"base is on device {base.device.id}, out on device {device_id}")
    keys_host = None if is_cupy_array(keys) else np.asarray(keys)
    if keys_host is not None and keys_host.size and keys_host.dtype.kind in "iu":
        if int(keys_host.min()) < 0 or int(keys_host.max()) >= num_keys:
            raise ValueError(f"keys must be in [0, {num_keys}) (K factor sets)")
    keys_d = _member_vector("keys", keys, np.uint32, members, device_id)
    coef_d = _member_vector("coef", coef, np.float32, members, device_id)
    if out.size == 0 or rank == 0:
        return out
    with cupy.cuda.Device(device_id):
        x_c = cupy.ascontiguousarray(x)
        left_c, right_c = rank_major(left), rank_major(right)
        base_c = None if base is None else cupy.ascontiguousarray(base)
        xa = cupy.empty(members * batch * rank, dtype=np.float32)
        cuda.lowrank_correction(
            x_c.data.ptr,
            _X_DTYPES[x_c.dtype],
            x_c.ndim == 3,
            left_c.data.ptr,
            right_c.data.ptr,
            keys_d.data.ptr,
            coef_d.data.ptr,
            members,
            batch,
            rows_left,
            rows_right,
            rank,
            num_keys,
            xa.data.ptr,
            0 if base_c is None else base_c.data.ptr,
            out.data.ptr,
            current_stream_ptr(),
        )
    return out


#: Tiles `contract` takes: 0 lets the launch code pick, 1 is the column kernel, 32/64/128 tiled.
CONTRACT_TILES = (0, 1, 32, 64, 128)


def contract(A: Any, B: Any, w: Any, tile: int = 0) -> Any:
    """The "contract" operation on the GPU with the C++ core's bits (csrc/cuda/contract.cu).

    ``sum_k w[k] * A[k] @ B[k].T`` with each entry's terms added in (key, rank) order from zero,
    one FMA each, ``w[k] * A[k]`` rounded to float32 first: `_reference.contract`'s sequence, so
    the result equals the CPU's bit for bit whatever the GPU or cuBLAS version.

    Args:
        A: CuPy float32 (K, m, r); B: CuPy float32 (K, n, r), on one device. Read in place when
            stored rank-major (as `noise.as_factors` makes them), else copied once.
        w: (K,) weights, cast to float32 (CuPy, or host values that are uploaded).
        tile: `CONTRACT_TILES`; 0 (the launch code's choice) but for tests and benchmarks.

    Returns:
        A new CuPy float32 (m, n) array.
    """
    cuda = dispatch.require_cuda()
    A, B = _factor_pair(A, B)
    if tile not in CONTRACT_TILES:
        raise ValueError(f"tile must be one of {CONTRACT_TILES}, got {tile!r}")
    num_keys, m, rank = A.shape
    n = B.shape[1]
    device_id = A.device.id
    if B.device.id != device_id:
        raise ValueError(f"B is on device {B.device.id}, A on device {device_id}")
    w_d = _member_vector("w", w, np.float32, num_keys, device_id)
    with cupy.cuda.Device(device_id):
        out = cupy.empty((m, n), dtype=np.float32)
        left, right = rank_major(A), rank_major(B)
        cuda.contract(
            left.data.ptr, right.data.ptr, w_d.data.ptr, num_keys, rank, m, n, out.data.ptr,
            tile, current_stream_ptr(),
        )  # fmt: skip
    return out


def adam(
    theta: Any, g: Any, mu: Any, nu: Any, lr: float, b1: float, b2: float, eps: float, wd: float,
    count: int,
) -> tuple[Any, Any, Any, Any]:  # fmt: skip
    """One Adam step of a float32 leaf on the GPU in one kernel (csrc/cuda/optim.cu).

    The C++ core's `adam_step` bits (adam.h's element step, NumPy's operation sequence) from one
    pass over the leaf, instead of CuPy's ~13 elementwise calls and the norm's 3.

    Args:
        theta, g, mu, nu: CuPy float32 arrays of one shape on one device (any layout: copied to
            C order where they are not).
        lr, b1, b2, eps, wd: the step's learning rate, betas, epsilon and weight decay.
        count: the update's number (>= 1), for the bias corrections.

    Returns:
        (theta', mu', nu', sq): new arrays of theta's shape, and a 0-d float64 CuPy array, the
        squared norm of the step as applied.
    """
    cuda = dispatch.require_cuda()
    f32 = (np.dtype(np.float32),)
    theta = _device_array("theta", theta, f32, tuple(range(33)))
    device_id = theta.device.id
    for name, a in (("g", g), ("mu", mu), ("nu", nu)):
        _device_array(name, a, f32, (theta.ndim,))
        if tuple(a.shape) != tuple(theta.shape):
            raise ValueError(f"{name} must have theta's shape {tuple(theta.shape)}, got {a.shape}")
        if a.device.id != device_id:
            raise ValueError(f"{name} is on device {a.device.id}, theta on device {device_id}")
    n = theta.size
    with cupy.cuda.Device(device_id):
        ins = [cupy.ascontiguousarray(a) for a in (theta, g, mu, nu)]
        outs = [cupy.empty(theta.shape, dtype=np.float32) for _ in range(3)]
        partials = cupy.empty(cuda.adam_partials(n), dtype=np.float64)
        cuda.adam_step(
            *(a.data.ptr for a in ins), n, lr, b1, b2, eps, wd, count,
            *(o.data.ptr for o in outs), partials.data.ptr, current_stream_ptr(),
        )  # fmt: skip
    return outs[0], outs[1], outs[2], partials[-1]

