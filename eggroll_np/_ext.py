"""Loads the compiled extensions: _core (always built) and _cuda (built when nvcc was found)."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["core", "cuda", "cuda_device_count", "require_cuda", "core_error", "cuda_error"]

core_error: str | None = None
cuda_error: str | None = None


def _load(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(f"eggroll_np.{name}"), None
    except ImportError as exc:  # a broken or missing build: fall back, and say why in `info`
        return None, f"{type(exc).__name__}: {exc}"


core, core_error = _load("_core")
cuda, cuda_error = _load("_cuda")


def cuda_device_count() -> int:
    """Usable CUDA devices seen by the _cuda extension (0 when it is absent or has no GPU)."""
    if cuda is None:
        return 0
    return int(cuda.device_count())


def require_cuda() -> ModuleType:
    """The _cuda module, or a RuntimeError that says why CuPy arrays cannot be used."""
    if cuda is None:
        raise RuntimeError(
            "eggroll_np was built without its CUDA extension "
            f"({cuda_error or 'no CUDA compiler at build time'}); reinstall with nvcc on PATH"
        )
    if cuda.device_count() == 0:
        raise RuntimeError(
            "no CUDA device: the CUDA extension is built but no GPU/driver is usable"
        )
    return cuda
