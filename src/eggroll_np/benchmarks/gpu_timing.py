"""GPU timers of the GPU bench: CUDA-event, wall and host medians of one call, warmed up first."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from ..backend import cupy

__all__ = ["measure", "time_gpu", "launch_bound"]


def measure(fn: Callable[[], Any], repeat: int = 5, warmup: int = 3) -> dict[str, float]:
    """Medians (ms) of `repeat` calls of fn() on the current stream, after `warmup` calls.

    event_ms: CUDA events around the call (GPU time, idle gaps included); wall_ms: host clock
    until the GPU work is done; host_ms: host clock until fn returns (its work may still be
    queued). host_ms close to event_ms means the GPU waited on Python: launch-bound.
    """
    for _ in range(warmup):
        fn()
    stream = cupy.cuda.get_current_stream()
    stream.synchronize()
    event, wall, host = [], [], []
    for _ in range(repeat):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        t0 = time.perf_counter()
        start.record()
        fn()
        t1 = time.perf_counter()
        end.record()
        end.synchronize()
        t2 = time.perf_counter()
        event.append(cupy.cuda.get_elapsed_time(start, end))
        host.append((t1 - t0) * 1e3)
        wall.append((t2 - t0) * 1e3)
    med = statistics.median
    return {"event_ms": med(event), "wall_ms": med(wall), "host_ms": med(host)}


def time_gpu(fn: Callable[[], Any], repeat: int = 5, warmup: int = 3) -> float:
    """Median CUDA-event milliseconds of fn() (see `measure`)."""
    return measure(fn, repeat, warmup)["event_ms"]


def launch_bound(t: dict[str, float]) -> bool:
    """Whether Python spent >= 80% of the GPU's elapsed time issuing the work (a `measure`
    result): the GPU mostly waited for launches."""
    return t["host_ms"] >= 0.8 * t["event_ms"]
