"""One dispatch table: which implementation runs each operation, and the one CUDA device check.

The table
---------
`ROWS` maps ``(operation, backend, dtype)`` to a `Row`; `select` picks the row that runs a call.

* **operation**: a name in `OPERATIONS`, which states its ONE signature. Every row of an
  operation takes exactly those arguments (the compiled bindings, the CuPy wrappers, the
  array-code reference), so the caller never knows which one ran.
* **backend**: where it runs. ``"core"`` is the C++ extension (NumPy arrays), ``"cuda"`` the
  CUDA extension through its CuPy wrappers (CuPy arrays), ``"numpy"`` array code: the
  readable reference, which every operation has (`test_dispatch` checks it) and which is the
  fallback whenever no compiled row takes the call. Its rows run on NumPy arrays, and on CuPy
  arrays too where the row says ``cupy=True``.
* **dtype**: the dtype name of the call's first array (`select`'s ``arrays[0]``: the output,
  or the data being read), e.g. ``"float32"``; ``"*"`` means any dtype.
* **Row.impl**: ``"module:attribute"``. ``_core`` / ``_cuda`` are the compiled extensions
  (looked up at each call, so a forced SIMD level or an emulated binding is honoured); other
  names are eggroll_np modules, imported on first use (the CUDA wrappers import CuPy).
* **Row.when**: an extra condition on the call's arrays (a rank the kernel wins at, a second
  accepted dtype), beyond what every compiled row requires: every array given to `select`
  of that backend's type, of the row's dtype, and C-contiguous unless ``strided=True``.

Lookup order for NumPy arrays: core, then numpy; for CuPy arrays: cuda, then numpy. `use`
forces one backend (tests compare the compiled rows with the reference this way). Adding an
operation is one `OPERATIONS` entry and its rows (a "numpy" row first).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import _ext
from .backend import cupy, dtype_name, is_cupy_array

__all__ = [
    "OPERATIONS", "BACKENDS", "Row", "ROWS", "select", "select_kept", "rows_of", "use",
    "cuda_unavailable_reason", "cuda_available", "require_cuda", "CUDA_CONTRACT", "cuda_contract",
]  # fmt: skip

BACKENDS = ("core", "cuda", "numpy")
"""Where a row runs: the C++ extension, the CUDA extension, or array code (the reference)."""

#: Each operation's one signature (every row of it takes exactly these arguments).
OPERATIONS: dict[str, str] = {
    "philox": "(counters (n, 4) uint32, key (2,) uint32 host) -> (n, 4) uint32 blocks",
    "normals": (
        "(seed, epoch, keys (K,) uint32 on outs' backend, leaves, offsets, outs) -> None: "
        "outs[j] (K, count_j) float32 gets values [offsets[j], +count_j) of the streams "
        "(leaves[j], keys[k], epoch); int8 outs get them quantized (intmath.quantize)"
    ),
    "gather_rows": "(table (T,) float32, starts [(K_j,) int64], outs [(K_j, c_j)]) -> None",
    "lowrank_correction": (
        "(x (Bt, m) or (N, Bt, m), A (K, m, r), B (K, n, r), keys (N,), coef (N,), "
        "out (N, Bt, n), base (Bt, n) or None) -> out"
    ),
    "contract": "(A (K, m, r), B (K, n, r), w (K,)) -> (m, n) sum_k w[k] A[k] @ B[k].T",
    "linear_epilogue": (
        "(out, base, x, left, xa, xa_rows, right, keys, coef, bias, bias_noise, bias_coef, "
        "act) -> None (see epilogue.epilogue)"
    ),
    "conv_epilogue": (
        "(out, src, a, v, v_index, keys, coef, bias, bias_noise, bias_coef, act) -> None "
        "(see conv.conv_epilogue)"
    ),
    "int_gemm": (
        "(x (M, K) int8, w (K, n) int8, out (M, n) int32) -> out = x @ w exactly "
        "(K <= 131072; select's arrays: [x, w, out])"
    ),
    "int_epilogue": (
        "(out (N, B, n) int8, acc (B, n) or (N, B, n) int32, xa (R, B, r) int32 or None, "
        "xa_rows (N,) uint32, right (K, n, r) int8 or None, keys (N,) uint32, signs (N,) int8, "
        "bias (N, n) int8 or None, shift_lr, shift_out, relu) -> None (see intops.int_epilogue; "
        "select's arrays: [out, xa, right, bias])"
    ),
    "int_contract": (
        "(a (K, m, r) int8, b (K, n, r) int8, c (K,) int8 in {-1,0,1}) -> (m, n) int32 "
        "sum_k c[k] a[k] @ b[k].T (K * r * 127^2 < 2^31)"
    ),
    "int_xa": "(x (N, B, m) int8, a (K, m, r) int8, keys (N,) uint32) -> (N, B, r) int32",
    "int_linear": (
        "(x (1 or N, B, m) int8, w (m, n) or (N, m, n) int8, out (N, B, n) int8, a, b, keys, "
        "signs, lr_shift, bias, bias_noise, bias_shift, out_shift, relu) -> None: a whole int8 "
        "population layer (see intops.linear; select's arrays: [out, x, w, a, b, bias])"
    ),
    "sgd_step": "(hp, theta, g, state, count, lr, wd) -> (theta', state', sq_norm of the step)",
    "momentum_step": "(hp, theta, g, state, count, lr, wd) -> (theta', state', sq_norm)",
    "adam_step": "(hp, theta, g, state, count, lr, wd) -> (theta', state', sq_norm)",
}


@dataclass(frozen=True)
class Row:
    """One implementation of an operation for one backend and dtype (see the module docstring)."""

    impl: str
    strided: bool = False  # takes arrays of any strides (compiled rows: else C order only)
    cupy: bool = False  # a "numpy" row that also runs on CuPy arrays
    loose: tuple[int, ...] = ()  # positions in select's arrays exempt from the dtype/layout check
    when: Callable[[Sequence[Any]], bool] | None = None  # an extra condition on those arrays

    @functools.cached_property
    def target(self) -> tuple[str, str]:
        """(module, attribute) of `impl`, split once."""
        module, attr = self.impl.split(":")
        return module, attr


# ---- conditions beyond "every array of the backend's type and the row's dtype" ---------------
# Ranks the C++ correction kernels take: faster than NumPy's batched matmul on rl and sup at ranks
# up to 8, mixed at 16 (docs/benchmarks.md, "Low-rank correction kernels by rank").
_CORE_MAX_RANK = 8


def _core_correction(arrays: Sequence[Any]) -> bool:
    """(out, A, B, base, x), select's order: a rank the kernels win at, and a writable out."""
    return arrays[1].shape[2] <= _CORE_MAX_RANK and arrays[0].flags.writeable


def _cuda_correction(arrays: Sequence[Any]) -> bool:
    """A C-order out, x (arrays[4]) float32 or float16 on the device, factors in any layout."""
    x = arrays[4]
    return arrays[0].flags.c_contiguous and is_cupy_array(x) and x.dtype in (np.float32, np.float16)


#: EGGROLL_NP_CUDA_CONTRACT=exact: CuPy float32 updates on the fixed-order CUDA kernel (the C++
#: core's bits on any GPU); "cublas", the default, until `eggroll-np bench gpu` has measured it.
CUDA_CONTRACT = "EGGROLL_NP_CUDA_CONTRACT"


def cuda_contract() -> str:
    """EGGROLL_NP_CUDA_CONTRACT, checked: "exact" or "cublas" (read at a run's first update)."""
    value = os.environ.get(CUDA_CONTRACT, "cublas").strip().lower()
    if value not in ("exact", "cublas"):
        raise ValueError(f"{CUDA_CONTRACT} must be 'exact' or 'cublas', got {value!r}")
    return value


_F32, _F64, _I8, ANY = "float32", "float64", "int8", "*"
# The native dtype object of each row dtype: NumPy arrays of a builtin native dtype share it.
_NATIVE = {name: np.dtype(name) for name in (_F32, _F64, _I8, "uint32")}
_NDARRAY = np.ndarray

_REFERENCE_STEP = Row("eggroll_np.optim:reference_step", cupy=True, strided=True)
#: The table: (operation, backend, dtype) -> Row.
ROWS: dict[tuple[str, str, str], Row] = {
    ("philox", "core", "uint32"): Row("_core:philox4x32_10"),
    ("philox", "cuda", "uint32"): Row("eggroll_np._cuda_ops:philox"),
    ("philox", "numpy", ANY): Row("eggroll_np._reference:philox4x32_10"),
    ("normals", "core", _F32): Row("eggroll_np.noise:normals_core"),
    ("normals", "cuda", _F32): Row("eggroll_np._cuda_ops:normals"),
    ("normals", "numpy", _F32): Row("eggroll_np.noise:normals_reference"),
    ("normals", "core", _I8): Row("eggroll_np.noise:normals_int8_core"),
    ("normals", "numpy", _I8): Row("eggroll_np.noise:normals_int8", cupy=True),
    ("gather_rows", "core", _F32): Row("_core:gather_rows_many"),
    ("gather_rows", "numpy", _F32): Row("eggroll_np.noise_table:gather_reference"),
    ("lowrank_correction", "core", _F32): Row(
        "eggroll_np.lowrank:correction_core", when=_core_correction
    ),
    ("lowrank_correction", "cuda", _F32): Row(
        "eggroll_np._cuda_ops:lowrank_correction", strided=True, loose=(4,), when=_cuda_correction
    ),
    ("lowrank_correction", "numpy", ANY): Row(
        "eggroll_np.lowrank:correction_reference", cupy=True, strided=True
    ),
    ("contract", "core", _F32): Row("_core:contract", strided=True),
    ("contract", "core", _F64): Row("_core:contract", strided=True),
    ("contract", "cuda", _F32): Row(
        "eggroll_np._cuda_ops:contract", strided=True, when=lambda _: cuda_contract() == "exact"
    ),
    ("contract", "numpy", ANY): Row("eggroll_np.lowrank:contract_reference", cupy=True),
    ("linear_epilogue", "core", _F32): Row("_core:linear_epilogue"),
    ("linear_epilogue", "cuda", _F32): Row("eggroll_np._cuda_layers:linear_epilogue"),
    ("linear_epilogue", "numpy", ANY): Row(
        "eggroll_np.epilogue:linear_epilogue_reference", cupy=True, strided=True
    ),
    ("conv_epilogue", "core", _F32): Row("_core:conv_epilogue", strided=True),
    ("conv_epilogue", "cuda", _F32): Row("eggroll_np._cuda_layers:conv_epilogue", strided=True),
    ("conv_epilogue", "numpy", ANY): Row(
        "eggroll_np.conv:conv_epilogue_reference", cupy=True, strided=True
    ),
    # Integer leaves (docs/noise-contract.md, "Integer leaves"): exact array code on BLAS
    # (intops), compared bit for bit with intmath's int64 reference by the tests.
    ("int_gemm", "numpy", _I8): Row("eggroll_np.intops:gemm_numpy", cupy=True, strided=True),
    ("int_epilogue", "numpy", _I8): Row(
        "eggroll_np.intops:epilogue_numpy", cupy=True, strided=True
    ),
    ("int_contract", "numpy", _I8): Row(
        "eggroll_np.intops:contract_numpy", cupy=True, strided=True
    ),
    ("int_xa", "numpy", _I8): Row("eggroll_np.intops:xa_numpy", cupy=True, strided=True),
    ("int_linear", "numpy", _I8): Row("eggroll_np.intops:linear_numpy", cupy=True, strided=True),
    # The C++ core's exact int8 kernels (one per ISA: VNNI, AVX-512BW/AVX2, baseline), the
    # same bits as the rows above at every SIMD level and thread count (tests/test_core_int8).
    ("int_gemm", "core", _I8): Row("_core:gemm_s8s8s32", loose=(2,)),
    ("int_epilogue", "core", _I8): Row("_core:int8_epilogue", loose=(1,)),
    ("int_contract", "core", _I8): Row("_core:int8_contract"),
    ("int_xa", "core", _I8): Row("_core:int8_xa"),
    ("int_linear", "core", _I8): Row("_core:int8_linear"),
    # The same on the GPU: one tensor-core (mma.sync) GEMM with the epilogue fused, the core's
    # bits (tests/test_cuda_int8*.py: host emulation here, the GPU run where there is one).
    ("int_gemm", "cuda", _I8): Row("eggroll_np._cuda_int8:gemm_s8s8s32", loose=(2,)),
    ("int_epilogue", "cuda", _I8): Row("eggroll_np._cuda_int8:int8_epilogue", loose=(1,)),
    ("int_contract", "cuda", _I8): Row("eggroll_np._cuda_int8:int8_contract"),
    ("int_xa", "cuda", _I8): Row("eggroll_np._cuda_int8:int8_xa"),
    ("int_linear", "cuda", _I8): Row("eggroll_np._cuda_int8:int8_linear"),
    ("sgd_step", "numpy", ANY): _REFERENCE_STEP,
    ("momentum_step", "numpy", ANY): _REFERENCE_STEP,
    # The fused step: the reference's float32 operations in order (the same bits), one pass
    # over memory instead of ~10; any layout or byte order (it converts).
    ("adam_step", "core", _F32): Row("eggroll_np.optim:adam_step_core", strided=True),
    ("adam_step", "cuda", _F32): Row("eggroll_np.optim:adam_step_cuda", strided=True),
    ("adam_step", "numpy", ANY): _REFERENCE_STEP,
}

_forced: str | None = None


@contextlib.contextmanager
def use(backend: str) -> Iterator[None]:
    """Within the block, `select` takes only `backend`'s rows ("numpy": the reference for every
    call; "core"/"cuda": the compiled rows where they take the call, else the reference)."""
    global _forced
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    before, _forced = _forced, backend
    try:
        yield
    finally:
        _forced = before


def rows_of(operation: str) -> dict[tuple[str, str], Row]:
    """(backend, dtype) -> Row of one operation."""
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {sorted(OPERATIONS)}, got {operation!r}")
    return {(b, d): row for (op, b, d), row in ROWS.items() if op == operation}


def _module(name: str) -> Any:
    if name == "_core":
        return _ext.core
    if name == "_cuda":
        return _ext.cuda
    # sys.modules first: import_module's own lookup costs more than a tiny layer call's kernel
    return sys.modules.get(name) or importlib.import_module(name)


def _resolve(row: Row) -> Callable[..., Any]:
    module, attr = row.target
    return getattr(_module(module), attr)


def _loaded(backend: str) -> bool:
    return backend == "numpy" or (_ext.core if backend == "core" else _ext.cuda) is not None


def _plain(arrays: Sequence[Any], native: np.dtype, strided: bool) -> bool:
    """Every array given is a plain NumPy array of this native dtype object (NumPy shares one
    per builtin native dtype, so an identity test says dtype and byte order at once), and C
    order unless `strided`: the common case, which the core's rows take, checked in one loop;
    False sends a call to `_takes`' array-by-array test."""
    for a in arrays:
        if a is None:
            continue
        if type(a) is not _NDARRAY or a.dtype is not native:
            return False
        if not (strided or a.flags.c_contiguous):
            return False
    return True


def _takes(backend: str, row: Row, dtype: str, arrays: Sequence[Any]) -> bool:
    """A compiled row takes the call: every array (but the loose ones) of the backend's type,
    the row's dtype and (unless strided) C order, and its `when` holds."""
    native = _NATIVE.get(dtype) if backend == "core" else None
    if native is not None and _plain(arrays, native, row.strided):
        return row.when is None or row.when(arrays)
    for j, a in enumerate(arrays):
        if a is None or j in row.loose:
            continue
        if is_cupy_array(a) != (backend == "cuda") or not hasattr(a, "flags"):
            return False
        if dtype != ANY and dtype_name(a.dtype) != dtype:
            return False
        if not row.strided and not (a.flags.c_contiguous and a.dtype.isnative):
            return False
    return row.when is None or row.when(arrays)


# Backends in lookup order, by whether the call's arrays are on the device.
_ORDERS = {False: ("core", "numpy"), True: ("cuda", "numpy")}


def _forced_order(on_device: bool) -> tuple[str, ...]:
    """The lookup order under `use(backend)`: that backend's rows, then the reference."""
    return tuple(b for b in _ORDERS[on_device] if b in (_forced, "numpy"))


def select(operation: str, arrays: Sequence[Any], device: bool | None = None) -> Callable[..., Any]:
    """The implementation that runs `operation` on these arrays.

    Args:
        operation: a key of `OPERATIONS`.
        arrays: the call's arrays that decide the row (None entries are ignored); arrays[0]'s
            dtype is the row's dtype. For "lowrank_correction": (out, A, B, base, x).
        device: True/False when the backend is known without arrays (noise made on CuPy or
            NumPy); None: CuPy when arrays[0] is a CuPy array.

    Returns:
        A callable with the operation's signature.

    Raises:
        RuntimeError: CuPy arrays and no row that takes them (the CUDA extension missing or no
            device; `require_cuda`'s message).
    """
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {sorted(OPERATIONS)}, got {operation!r}")
    first = None
    for a in arrays:  # a loop, not next() over a generator: this runs on every layer call
        if a is not None:
            first = a
            break
    if type(first) is _NDARRAY:  # the common case: a host array, its dtype at hand
        on_device = False if device is None else bool(device)
        dtype = dtype_name(first.dtype)
    else:
        on_device = is_cupy_array(first) if device is None else bool(device)
        dtype = dtype_name(first.dtype) if first is not None and hasattr(first, "dtype") else ANY
    order = _ORDERS[on_device] if _forced is None else _forced_order(on_device)
    for backend in order:
        row = ROWS.get((operation, backend, dtype)) or ROWS.get((operation, backend, ANY))
        if row is None or not _loaded(backend):
            continue
        if backend == "numpy" and on_device and not row.cupy:
            continue
        if backend != "numpy" and device is None and not _takes(backend, row, dtype, arrays):
            continue
        return _resolve(row)
    require_cuda()  # CuPy arrays that nothing takes: say why (no extension, no device)
    raise TypeError(f"no implementation of {operation} takes {dtype} arrays on this backend")


def select_kept(memo: dict | None, key: Any, operation: str, arrays: Sequence[Any],
                device: bool | None = None) -> Callable[..., Any]:  # fmt: skip
    """`select(operation, arrays, device)` kept in `memo` under `key` while `use` and the loaded
    extensions stay the same: for calls whose arrays `key` fixes (types, dtypes, layouts,
    a row's `when`), e.g. a population layer's held operands and fresh C-order outputs.
    memo None: `select` itself, nothing kept."""
    if memo is None:
        return select(operation, arrays, device)
    k = (key, _forced, _ext.core, _ext.cuda)
    impl = memo.get(k)
    if impl is None:
        impl = memo[k] = select(operation, arrays, device)
    return impl


# ---- the one CUDA check ------------------------------------------------------------------------


def cuda_unavailable_reason() -> str | None:
    """Why CuPy arrays cannot be used here (CuPy, the CUDA extension, a device), or None."""
    if cupy is None:
        return "CuPy is not installed (pip install 'eggroll_np[cuda]')"
    if _ext.cuda is None:
        return (
            "eggroll_np was built without its CUDA extension "
            f"({_ext.cuda_error or 'no CUDA compiler at build time'}); reinstall with nvcc on PATH"
        )
    if _ext.cuda_device_count() == 0:
        return "the CUDA extension is built but no GPU/driver is usable"
    try:
        if int(cupy.cuda.runtime.getDeviceCount()) == 0:
            return "CuPy sees no CUDA device"
    except Exception as exc:  # noqa: BLE001 - CuPy raises CUDARuntimeError subclasses
        return f"CuPy sees no CUDA device ({type(exc).__name__})"
    return None


def cuda_available() -> bool:
    """True when CuPy is installed, the CUDA extension is built and a device is usable."""
    return cuda_unavailable_reason() is None


def require_cuda() -> ModuleType:
    """The _cuda extension module, or a RuntimeError "no CUDA device can be used: <why>"."""
    if cupy is not None and _ext.cuda_device_count() > 0:
        return _ext.cuda  # the fast path of every launch: no CuPy runtime query
    raise RuntimeError(f"no CUDA device can be used: {cuda_unavailable_reason()}")
