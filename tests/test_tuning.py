"""eggroll_np.tuning: the opt-in allocator setting."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from eggroll_np import _ext, noise
from eggroll_np.tuning import retain_heap_memory


def test_retain_heap_memory_is_accepted_on_glibc_and_keeps_results():
    before = noise.normals(5, 1, 2, 3, 10_000)
    ok = retain_heap_memory()
    if _ext.core is not None and platform.libc_ver()[0] == "glibc":
        assert ok is True
    np.testing.assert_array_equal(noise.normals(5, 1, 2, 3, 10_000), before)


def test_retain_heap_memory_rejects_negative_sizes():
    with pytest.raises(ValueError, match="mmap_threshold"):
        retain_heap_memory(-1)
    with pytest.raises(ValueError, match="mmap_threshold"):
        retain_heap_memory(1 << 32)  # would wrap to 0 in mallopt's int
    with pytest.raises(ValueError, match="trim_threshold"):
        retain_heap_memory(1 << 20, (1 << 32) + 5)
