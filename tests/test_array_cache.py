"""The array cache: NumPy buffers made inside eggroll_np's calls are reused, not page-faulted anew."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _array_cache, _ext

pytestmark = pytest.mark.skipif(not _array_cache.enabled, reason="needs the C++ core's cache")

_multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
BIG = 1 << 18  # float32 values: 1 MiB, well above the smallest buffer the cache keeps (64 KiB)


def _handler(a: np.ndarray) -> str:
    while a.base is not None and isinstance(a.base, np.ndarray):
        a = a.base
    return _multiarray.get_handler_name(a)


@_array_cache.scoped
def _inside(fn):
    return fn()


def test_arrays_made_inside_a_call_use_the_cache_and_outside_do_not():
    inside = _inside(lambda: np.empty(BIG, np.float32))
    assert _handler(inside) == "eggroll_np_array_cache"
    assert _handler(np.empty(BIG, np.float32)) == _multiarray.get_handler_name()
    assert _multiarray.get_handler_name() != "eggroll_np_array_cache"  # put back


def test_a_freed_buffer_is_reused_and_zeros_are_zero():
    _array_cache.release()
    size = BIG + 12345

    def make_and_free():
        a = np.full(size, 7.0, np.float32)
        del a  # the buffer goes idle in the cache
        before = _array_cache.stats()["hits"]
        z = np.zeros(size, np.float32)  # the same buffer, zeroed (calloc through the cache)
        return z, _array_cache.stats()["hits"] - before

    z, hits = _inside(make_and_free)
    assert hits == 1
    assert not z.any()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="huge pages are Linux's")
@pytest.mark.parametrize("zeroed", [False, True])
def test_a_fresh_buffer_of_a_huge_page_or_more_starts_on_one(zeroed):
    # Aligned to 2 MiB (and advised MADV_HUGEPAGE), as NumPy's own allocator advises its large
    # buffers: the generation's arrays get the huge pages pure inference gets.
    _array_cache.release()
    make = np.zeros if zeroed else np.empty
    huge = _inside(lambda: make((3 << 20) + 40, np.uint8))
    below = _inside(lambda: make((1 << 20) + 40, np.uint8))
    assert huge.ctypes.data % (2 << 20) == 0
    assert _handler(below) == "eggroll_np_array_cache"  # still cached, malloc's alignment
    if zeroed:
        assert not huge.any()
        assert not below.any()


def test_small_buffers_and_the_limit_are_respected():
    _array_cache.release()
    _inside(lambda: np.ones(1000, np.float32))  # small: malloc's own
    assert _array_cache.stats()["idle_buffers"] == 0
    limit = _array_cache.stats()["limit"]
    try:
        _ext._core.array_cache_configure(3 << 20)
        _inside(lambda: [np.ones(BIG, np.float32) for _ in range(8)])  # 8 MiB freed at once
        s = _array_cache.stats()
        assert s["idle_bytes"] <= 3 << 20 and s["idle_buffers"] == 3
    finally:
        _ext._core.array_cache_configure(limit)


def test_steps_reuse_the_previous_generations_buffers():
    params = {"W": np.ones((512, 512), np.float32), "b": np.zeros(512, np.float32)}
    state = egg.init(params, population=64, seed=1)
    x = np.ones((64, 512), np.float32)

    def fitness(pop):
        return pop.linear(x, "W", "b").mean(axis=(1, 2))

    # Two generations first: a step's new params and moments are made while the previous
    # generation's are still alive, so they reuse the buffers of the generation before that.
    for _ in range(2):
        params, state = egg.step(params, fitness, state, batched=True)
    before = _array_cache.stats()
    egg.step(params, fitness, state, batched=True)
    after = _array_cache.stats()
    assert after["hits"] > before["hits"]
    assert after["misses"] == before["misses"]  # every large buffer came back warm


def _run(code: str, **env: str) -> tuple[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != _array_cache.OPT_OUT}
    done = subprocess.run(
        [sys.executable, "-P", "-W", "always", "-c", code], capture_output=True, text=True,
        env=clean | env, check=True, timeout=120,
    )  # fmt: skip
    return done.stdout.strip(), done.stderr


@pytest.mark.parametrize(
    ("value", "want"), [("0", "False 0"), ("64", "True 67108864"), ("lots", "False 0")]
)
def test_environment_sets_the_limit_or_turns_it_off(value, want):
    out, err = _run(
        "from eggroll_np import _array_cache as c; print(c.enabled, c.stats()['limit'])",
        EGGROLL_NP_ARRAY_CACHE=value,
    )
    assert out == want
    assert ("RuntimeWarning" in err) == (value == "lots")
