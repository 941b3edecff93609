"""Loads the compiled extensions: _core (always built) and _cuda (built when nvcc was found).

The C++ core picks the best SIMD level this processor supports (AVX-512 with VNNI, AVX-512,
AVX2, baseline); the environment variable EGGROLL_SIMD=baseline|avx2|avx512|avx512vnni forces
one. Every level gives the same bits, so forcing one is for testing and for ruling the kernels
out when debugging.

Importing never raises: EGGROLL_SIMD and EGGROLL_NUM_THREADS are applied when `core` is first
read (module __getattr__), and a bad value is a ValueError naming the variable there, at every
read until it is fixed.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = [
    "core",
    "cuda",
    "cuda_device_count",
    "core_error",
    "cuda_error",
    "SIMD_ENV",
    "SIMD_LEVELS",
    "simd_forced",
]

SIMD_ENV = "EGGROLL_SIMD"
"""Environment variable that forces the C++ core's SIMD level (applied at first use)."""
SIMD_LEVELS = ("baseline", "avx2", "avx512", "avx512vnni")
"""The levels EGGROLL_SIMD may name."""

core_error: str | None = None
cuda_error: str | None = None


def _load(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(f"eggroll_np.{name}"), None
    except ImportError as exc:  # a broken or missing build: fall back, and say why in `info`
        return None, f"{type(exc).__name__}: {exc}"


def _force_simd(core: ModuleType | None) -> bool:
    """Apply EGGROLL_SIMD (unset or empty: keep the best level); True when a level was forced."""
    value = os.environ.get(SIMD_ENV, "").strip()
    if not value:
        return False
    if value not in SIMD_LEVELS:
        raise ValueError(
            f"{SIMD_ENV}={value!r} is not a SIMD level; use one of {', '.join(SIMD_LEVELS)} "
            f"(or unset {SIMD_ENV} for the best one this processor supports)"
        )
    if core is None:
        raise ValueError(
            f"{SIMD_ENV}={value!r} needs eggroll_np's C++ core, which is not loaded "
            f"({core_error or 'not built'})"
        )
    available = list(core.available_simd_levels())
    if value not in available:
        raise ValueError(
            f"{SIMD_ENV}={value!r}: this processor or build does not support {value}; "
            f"available here: {', '.join(available)}"
        )
    core.set_simd_level(value)
    return True


_core, core_error = _load("_core")
cuda, cuda_error = _load("_cuda")
core: ModuleType | None  # set by __getattr__ on first read (the environment checked)
simd_forced: bool
"""Whether EGGROLL_SIMD chose the core's SIMD level (else the best available one is used)."""


def __getattr__(name: str) -> object:
    # `core` and `simd_forced` are module globals only once the environment was applied; until
    # then (and while it is bad) every read lands here.
    if name in ("core", "simd_forced"):
        forced = _force_simd(_core)
        if _core is not None:
            _core.num_threads()  # ValueError naming EGGROLL_NUM_THREADS when it is bad
        globals().update(core=_core, simd_forced=forced)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cuda_device_count() -> int:
    """Usable CUDA devices seen by the _cuda extension (0 when it is absent or has no GPU)."""
    if cuda is None:
        return 0
    return int(cuda.device_count())
