"""Array backends: NumPy or CuPy (never mixed), detected from the arrays; DLPack arrays adopted."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "dtype_name",
    "cupy",
    "is_cupy_array",
    "namespace_of",
    "get_xp",
    "as_array",
    "to_numpy",
    "current_stream_ptr",
]

try:  # CuPy is optional (extra "cuda"); import errors mean "no CuPy", never a crash
    import cupy as _cupy  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001 - CuPy raises several kinds of errors without a GPU/driver
    _cupy = None
#: The ``cupy`` module, or None when CuPy is not installed or cannot load (no driver).
cupy: ModuleType | None = _cupy

# DLPack device types (dlpack.h, DLDeviceType): where an exporter's memory lives.
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13
_DL_NAMES = {
    1: "CPU",
    2: "CUDA",
    3: "CUDA host",
    4: "OpenCL",
    7: "Vulkan",
    8: "Metal",
    9: "VPI",
    10: "ROCm",
    11: "ROCm host",
    13: "CUDA managed",
    14: "oneAPI",
    15: "WebGPU",
    16: "Hexagon",
}


def is_cupy_array(x: Any) -> bool:
    """True for a cupy.ndarray (False when CuPy is not installed)."""
    return cupy is not None and isinstance(x, cupy.ndarray)


def namespace_of(x: Any) -> ModuleType:
    """numpy or cupy, by the type of one array."""
    return cupy if is_cupy_array(x) else np


def get_xp(xp: ModuleType | str | None) -> ModuleType:
    """Normalise an `xp` argument (module, "numpy"/"cupy" or None) to a module."""
    if xp is None or xp is np or xp == "numpy":
        return np
    if (cupy is not None and xp is cupy) or xp == "cupy":
        if cupy is None:
            raise ValueError("xp='cupy' needs CuPy: pip install 'eggroll_np[cuda]'")
        return cupy
    raise ValueError(f"xp must be numpy or cupy, got {xp!r}")


def as_array(x: Any, name: str) -> Any:
    """NumPy and CuPy arrays as they are; any other DLPack exporter as a NumPy or CuPy view.

    An object with ``__dlpack__`` (a PyTorch tensor, a JAX or TensorFlow array, ...) whose memory
    is on the CPU becomes a NumPy array (``numpy.from_dlpack``), one on a CUDA device a CuPy array
    (``cupy.from_dlpack``); both share the exporter's memory (no copy), so the result is read-only
    where the exporter's memory is. Anything else (lists, scalars) is returned unchanged for the
    caller's own checks.

    Args:
        x: the array-like.
        name: what `x` is to the user ("x", "params leaf 'W'"), for error messages.

    Returns:
        `x` itself, or a numpy.ndarray / cupy.ndarray over the same memory.

    Raises:
        TypeError: `x` exports DLPack but cannot be shared: a CUDA array without CuPy installed, a
            device other than CPU or CUDA, or an export the producer refuses (e.g. a PyTorch
            tensor that requires grad); the message names `name` and the reason.
    """
    if isinstance(x, np.ndarray) or is_cupy_array(x) or not hasattr(x, "__dlpack__"):
        return x
    kind = type(x).__module__.split(".")[0] + "." + type(x).__qualname__
    try:
        device_type = int(x.__dlpack_device__()[0]) if hasattr(x, "__dlpack_device__") else 1
    except Exception as exc:  # noqa: BLE001 - a producer's own error type; reported below
        raise TypeError(f"{name} ({kind}) did not report its DLPack device: {exc}") from None
    if device_type in (_DL_CPU, _DL_CUDA_HOST):
        convert, target = np.from_dlpack, "NumPy"
    elif device_type in (_DL_CUDA, _DL_CUDA_MANAGED):
        if cupy is None:
            raise TypeError(
                f"{name} ({kind}) is in CUDA device memory, which needs CuPy "
                "(pip install 'eggroll_np[cuda]'); or move it to the CPU first"
            )
        convert, target = cupy.from_dlpack, "CuPy"
    else:
        where = _DL_NAMES.get(device_type, f"DLPack device type {device_type}")
        raise TypeError(
            f"{name} ({kind}) lives on {where}; eggroll_np takes CPU arrays (as NumPy) and CUDA "
            "arrays (as CuPy): move it to one of them first"
        )
    try:
        return convert(x)
    except Exception as exc:  # noqa: BLE001 - BufferError, RuntimeError, ...: the producer's
        raise TypeError(
            f"{name} ({kind}) could not be shared with {target} via DLPack: {exc}"
        ) from None


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy/view of a NumPy or CuPy array or of any DLPack exporter (`as_array`)."""
    x = as_array(x, "array")
    return cupy.asnumpy(x) if is_cupy_array(x) else np.asarray(x)


def current_stream_ptr() -> int:
    """CuPy's current stream as a raw cudaStream_t integer (0 = legacy default stream)."""
    return int(cupy.cuda.get_current_stream().ptr) if cupy is not None else 0


_DTYPE_NAMES: dict[Any, str] = {}


def dtype_name(dtype: Any) -> str:
    """`dtype.name`, remembered per dtype: NumPy builds the name in Python on every read
    (~1 us), and every layer call and step reads several."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = dtype.name
    return name
