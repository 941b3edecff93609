"""Process-wide performance settings: threads (BLAS and the C++ core) and the allocator."""

from __future__ import annotations

import contextlib
import warnings
from types import TracebackType
from typing import Any, NamedTuple

from . import _checks, _ext

__all__ = ["ThreadCounts", "ThreadSetting", "threads", "threads_for_run", "retain_heap_memory"]

_INT_MAX = 2**31 - 1
_MAX_THREADS = 1 << 16  # as EGGROLL_NUM_THREADS (csrc/core/parallel.cpp)


def retain_heap_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Let glibc's malloc keep and reuse the memory of large freed arrays.

    Every generation allocates and frees the same large arrays (noise factors, population
    outputs, gradients, optimizer moments). By default glibc serves each with a fresh mmap and
    returns it on free, so every generation pays a page fault and the kernel's zeroing per 4 KiB;
    on virtual machines that costs up to a third of a generation. This raises the mmap threshold
    and the trim threshold so freed blocks are reused from the heap. It affects the whole process
    (the heap keeps up to `trim_threshold` bytes of freed memory), so it is opt-in: the `bench`
    and `train` commands and the asv suite call it, the library itself never does. A plain
    `step` loop does not need it: arrays made inside eggroll_np's calls go through its own
    array cache (`EGGROLL_NP_ARRAY_CACHE`); this still helps large arrays that a script makes
    outside them.

    Returns:
        True if the allocator accepted the settings (False off glibc or without the C++ core).
    """
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        _checks.integer(name, value, 0, _INT_MAX + 1)  # mallopt takes a C int: no wrapping
    if _ext.core is None:
        return False
    return bool(_ext.core.retain_heap_memory(int(mmap_threshold), int(trim_threshold)))


class ThreadCounts(NamedTuple):
    """Threads in use: `core` (the C++ core's pool; None without the core) and `blas` (the most
    any loaded BLAS uses; None when threadpoolctl, which reads it, is not installed)."""

    core: int | None
    blas: int | None


def _threadpoolctl() -> Any:
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl


def _blas_count(tpc: Any) -> int | None:
    if tpc is None:
        return None
    counts = [d["num_threads"] for d in tpc.threadpool_info() if d.get("user_api") == "blas"]
    return max(counts) if counts else None


def _current() -> ThreadCounts:
    core = _ext.core
    return ThreadCounts(core.num_threads() if core is not None else None,
                        _blas_count(_threadpoolctl()))  # fmt: skip


class ThreadSetting:
    """What `threads(n)` returns: the setting is already applied; as a context manager it puts
    the previous counts back on exit. `previous` holds them."""

    def __init__(self, n: int):
        tpc = _threadpoolctl()
        core = _ext.core  # a bad EGGROLL_SIMD / EGGROLL_NUM_THREADS is a ValueError here
        self.previous = ThreadCounts(core.num_threads() if core is not None else None,
                                     _blas_count(tpc))  # fmt: skip
        if tpc is None:
            warnings.warn(
                f"eggroll_np.threads({n}): threadpoolctl is not installed, so BLAS keeps its own "
                "thread count (set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS before Python starts, "
                "or `pip install threadpoolctl`); only eggroll_np's C++ core uses "
                f"{n} thread(s)",
                RuntimeWarning,
                stacklevel=3,
            )
            self._blas = None
        else:
            self._blas = tpc.threadpool_limits(limits=n, user_api="blas")
        if core is not None:
            core.set_num_threads(n)

    def __enter__(self) -> ThreadSetting:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._blas is not None:
            self._blas.restore_original_limits()
        if self.previous.core is not None:
            _ext.core.set_num_threads(self.previous.core)


def threads_for_run(n: int) -> Any:
    """The `--threads` meaning of every command: n >= 1 is `threads(n)`, 0 leaves BLAS and the
    core at their defaults (a context manager either way)."""
    n = _checks.integer("--threads", _checks.integer("--threads", n, 0), 0, _MAX_THREADS + 1)
    return contextlib.nullcontext() if n == 0 else threads(n)


def threads(n: int | None = None) -> Any:
    """The threads of BLAS and of eggroll_np's C++ core, for the whole process.

    `threads()` returns the counts in use, a ThreadCounts(core, blas). `threads(n)` sets both to
    n at once and returns a context manager that restores the previous counts on exit::

        egg.threads(1)            # from now on
        with egg.threads(2):      # inside the block only
            ...

    BLAS is limited through threadpoolctl; without it installed BLAS keeps its own count and
    `threads(n)` says so with a RuntimeWarning (the core is still set). The core's count changes
    no value: every kernel gives the same bits at any thread count. Before any call, the core uses
    EGGROLL_NUM_THREADS threads, or every hardware thread; BLAS its own default.

    Args:
        n: threads, an int >= 1; None queries.

    Returns:
        ThreadCounts when n is None, else a ThreadSetting (a context manager).
    """
    if n is None:
        return _current()
    return ThreadSetting(_checks.integer("n", _checks.integer("n", n, 1), 1, _MAX_THREADS + 1))
