"""Where a launch-bound generation's host time goes, for `eggroll-np bench gpu` (its `profile`).

`cupyx.profiler.benchmark` times the sup generation's host (CPU) and device (GPU) time per call,
as CuPy measures them; `host_profile` runs the same call under cProfile and lists the functions
that take the host's time, the list to cut Python and CuPy calls from.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable
from typing import Any

__all__ = ["host_profile", "cupyx_times"]


def host_profile(fn: Callable[[], Any], calls: int = 20, top: int = 15) -> list[dict[str, Any]]:
    """The `top` functions by own host time over `calls` calls of fn() (after one warm-up call):
    name ("file:line(function)"), primitive calls a call of fn, own and cumulative ms a call."""
    fn()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    # (file, line, name) -> (primitive calls, all calls, own time, cumulative time, callers)
    stats = pstats.Stats(prof).stats
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    return [
        {"function": f"{file}:{line}({name})", "calls": prim / calls,
         "own_ms": tot * 1e3 / calls, "cumulative_ms": cum * 1e3 / calls}
        for (file, line, name), (prim, _, tot, cum, _) in rows
    ]  # fmt: skip


def cupyx_times(fn: Callable[[], Any], repeat: int = 20) -> dict[str, float]:
    """`cupyx.profiler.benchmark` of fn: mean CPU (host) and GPU ms a call, and their ratio."""
    from cupyx.profiler import benchmark

    result = benchmark(fn, n_repeat=repeat, n_warmup=3)
    cpu, gpu = float(result.cpu_times.mean()) * 1e3, float(result.gpu_times.mean()) * 1e3
    return {"cpu_ms": cpu, "gpu_ms": gpu, "cpu_over_gpu": cpu / gpu}
