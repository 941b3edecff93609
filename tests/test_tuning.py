"""eggroll_np.tuning: the opt-in allocator setting (checked in child processes: mallopt is
process-wide and has no getter, so the test process's allocator is never changed)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from eggroll_np import _ext
from eggroll_np.tuning import retain_heap_memory

# In a fresh process: is a live array of `size` bytes served by mmap (glibc's mallinfo2 counts
# mmapped bytes in hblkhd)? First 8 MiB with glibc's defaults, then, after the call under test
# (RETAIN), 16 MiB: glibc's own dynamic threshold only rises to the largest block freed (8 MiB),
# so without the setting 16 MiB is still mmapped, and with it (32 MiB threshold) it is not.
_PROBE = """
import ctypes, sys
import numpy as np
from eggroll_np.tuning import retain_heap_memory

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2

def mmapped(size):
    before = libc.mallinfo2().hblkhd
    a = np.ones(size, np.uint8)
    grew = libc.mallinfo2().hblkhd - before >= size
    del a
    return grew

first = mmapped(8 << 20)
accepted = retain_heap_memory() if sys.argv[1] == "retain" else None
print(first, accepted, mmapped(16 << 20))
"""

glibc = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or _ext.core is None,
    reason="mallopt is glibc's, called through the C++ core",
)


def _probe(mode: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@glibc
def test_retain_heap_memory_serves_large_arrays_from_the_heap():
    assert _probe("default") == ["True", "None", "True"]  # glibc alone: mmap for 16 MiB
    assert _probe("retain") == ["True", "True", "False"]  # after the call: from the heap


def test_retain_heap_memory_rejects_negative_sizes():
    with pytest.raises(ValueError, match="mmap_threshold"):
        retain_heap_memory(-1)
    with pytest.raises(ValueError, match="mmap_threshold"):
        retain_heap_memory(1 << 32)  # would wrap to 0 in mallopt's int
    with pytest.raises(ValueError, match="trim_threshold"):
        retain_heap_memory(1 << 20, (1 << 32) + 5)
