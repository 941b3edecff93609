"""Process-wide performance settings that a long ES run (or a benchmark) may opt into."""

from __future__ import annotations

import contextlib
from typing import Any

from . import _checks, _ext

__all__ = ["retain_heap_memory", "blas_threads"]

_INT_MAX = 2**31 - 1


def retain_heap_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Let glibc's malloc keep and reuse the memory of large freed arrays.

    Every generation allocates and frees the same large arrays (noise factors, population
    outputs, gradients, optimizer moments). By default glibc serves each with a fresh mmap and
    returns it on free, so every generation pays a page fault and the kernel's zeroing per 4 KiB;
    on virtual machines that costs up to a third of a generation. This raises the mmap threshold
    and the trim threshold so freed blocks are reused from the heap. It affects the whole process
    (the heap keeps up to `trim_threshold` bytes of freed memory), so it is opt-in: the `bench`
    and `train` commands and the asv suite call it, the library itself never does.

    Returns:
        True if the allocator accepted the settings (False off glibc or without the C++ core).
    """
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        _checks.integer(name, value, 0, _INT_MAX + 1)  # mallopt takes a C int: no wrapping
    if _ext.core is None:
        return False
    return bool(_ext.core.retain_heap_memory(int(mmap_threshold), int(trim_threshold)))


def blas_threads(threads: int) -> Any:
    """Context manager limiting BLAS to `threads` threads (threadpoolctl); 0 leaves BLAS alone.

    A population's many small GEMMs run fastest on one thread, and BLAS threads spinning beside
    the noise generator's threads would oversubscribe the cores. Without threadpoolctl (an
    optional dependency) BLAS keeps its own setting.
    """
    if threads == 0:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ModuleNotFoundError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")
