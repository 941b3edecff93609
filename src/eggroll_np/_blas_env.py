"""At import: make OpenBLAS's idle threads sleep at once instead of spinning, whatever the import order."""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["VARIABLE", "VALUE", "OPT_OUT", "applied", "restarted"]

VARIABLE = "OPENBLAS_THREAD_TIMEOUT"
#: 2**4 cycles: an idle OpenBLAS thread goes to sleep almost at once. OpenBLAS's own default,
#: 2**28 cycles (~0.1 s), keeps it spinning on a core through the noise, fused epilogue and update
#: kernels that run between a generation's GEMMs, and those kernels then run at about half speed.
VALUE = "4"
#: EGGROLL_NP_BLAS_SPIN=1 leaves OpenBLAS's default alone.
OPT_OUT = "EGGROLL_NP_BLAS_SPIN"


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries already mapped into this process (Linux; else none)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "openblas" in line}
    except OSError:
        return []
    return sorted(p for p in paths if os.path.basename(p).startswith("lib") and ".so" in p)


def _restart(path: str) -> bool:
    """Re-read the environment into an OpenBLAS that is already loaded and stop its threads.

    OpenBLAS reads OPENBLAS_THREAD_TIMEOUT into a variable when it loads (openblas_read_env) and
    copies it into its thread server when the server starts (blas_thread_init). Both entry points
    are exported, also by NumPy's own scipy_openblas build (which prefixes only the BLAS/LAPACK
    names): re-reading the environment and shutting the server down makes its next parallel call
    start fresh threads that sleep as soon as they are idle. The shutdown is the one OpenBLAS
    runs before a fork; here it runs once, while eggroll_np is imported.
    """
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)  # never loads a new one
        read_env, shutdown = lib.openblas_read_env, lib.blas_thread_shutdown_
        timeout = lib.openblas_thread_timeout
    except (OSError, AttributeError):  # not loaded after all, or too old to export them
        return False
    read_env.restype = None
    shutdown.restype = ctypes.c_int
    timeout.restype = ctypes.c_int
    read_env()
    if timeout() != int(os.environ[VARIABLE]):
        return False
    shutdown()
    return True


def _apply() -> tuple[bool, tuple[str, ...]]:
    # Never over the user's own setting.
    if os.environ.get(OPT_OUT) == "1" or VARIABLE in os.environ:
        return False, ()
    os.environ[VARIABLE] = VALUE  # read by every OpenBLAS loaded from now on
    if "numpy" not in sys.modules:
        return True, ()
    # NumPy came first: its OpenBLAS read the variable already and its threads spin.
    return True, tuple(p for p in _loaded_openblas() if _restart(p))


#: applied: True when importing eggroll_np set OPENBLAS_THREAD_TIMEOUT (`eggroll-np info` reports
#: it); restarted: the OpenBLAS libraries that were loaded before and re-read it.
applied, restarted = _apply()
