"""Inside eggroll_np's own calls, NumPy allocates large buffers through the C++ core's array cache."""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from . import _ext

__all__ = ["OPT_OUT", "enabled", "scoped", "stats", "release"]

#: EGGROLL_NP_ARRAY_CACHE=0 turns the cache off; another integer sets its limit in MiB.
OPT_OUT = "EGGROLL_NP_ARRAY_CACHE"
#: Freed large buffers kept by default (the rl generation's arrays are ~100 MiB together).
DEFAULT_LIMIT_MIB = 256

F = TypeVar("F", bound=Callable[..., Any])


def _configure() -> bool:
    # The raw module: the cache does not depend on EGGROLL_SIMD/EGGROLL_NUM_THREADS, whose
    # checks `_ext.core` runs at first use (importing eggroll_np never raises).
    core = _ext._core
    if core is None:
        return False
    value = os.environ.get(OPT_OUT, str(DEFAULT_LIMIT_MIB)).strip()
    mib = int(value) if value.isdigit() else -1
    if mib < 0:
        warnings.warn(
            f"{OPT_OUT} must be a whole number of MiB (0: off), got {value!r}; the array cache "
            "is off",
            RuntimeWarning,
            stacklevel=2,
        )
        mib = 0
    core.array_cache_configure(mib << 20)
    return mib > 0


#: True when NumPy arrays made inside eggroll_np's calls use the cache.
enabled = _configure()
_local = threading.local()  # .depth: nesting of scoped calls in this thread (outermost switches)


def scoped(fn: F) -> F:
    """`fn` with NumPy's allocator set to the array cache for its duration (a NEP 49 handler
    in the current context, so other threads and tasks are untouched); nested calls cost one
    integer test. Arrays made inside are freed through the cache wherever they die."""
    if not enabled:
        return fn
    enter, exit_ = _ext._core.array_cache_enter, _ext._core.array_cache_exit  # looked up once

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "depth", 0):
            return fn(*args, **kwargs)
        previous = enter()
        _local.depth = 1
        try:
            return fn(*args, **kwargs)
        finally:
            _local.depth = 0
            exit_(previous)

    return run  # type: ignore[return-value]


def stats() -> dict[str, int]:
    """The cache's counters (hits, misses, idle_bytes, idle_buffers, live_buffers, limit,
    min_bytes); {} without the C++ core."""
    core = _ext._core
    return dict(core.array_cache_stats()) if core is not None else {}


def release() -> None:
    """Give every idle buffer back to malloc (arrays in use are untouched)."""
    if _ext._core is not None:
        _ext._core.array_cache_release()
