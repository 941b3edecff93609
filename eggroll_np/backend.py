"""Array backends: NumPy or CuPy, detected from the arrays themselves (never mixed)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["cupy", "is_cupy_array", "namespace_of", "get_xp", "to_numpy", "current_stream_ptr"]

try:  # CuPy is optional (extra "cuda"); import errors mean "no CuPy", never a crash
    import cupy  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001 - CuPy raises several kinds of errors without a GPU/driver
    cupy = None


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


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy/view of a NumPy or CuPy array."""
    return cupy.asnumpy(x) if is_cupy_array(x) else np.asarray(x)


def current_stream_ptr() -> int:
    """CuPy's current stream as a raw cudaStream_t integer (0 = legacy default stream)."""
    return int(cupy.cuda.get_current_stream().ptr) if cupy is not None else 0
