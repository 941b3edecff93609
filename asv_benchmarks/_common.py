"""Settings the CPU benchmarks share, so that `asv continuous` verdicts hold on a busy machine.

Why each one (docs/asv.md, "Stable comparisons"):

- One thread for BLAS and the C++ core (`eggroll_np.threads`): a parallel call on a shared
  2-core machine waits for whichever core another job holds; one thread never waits for a
  second.
- Process CPU time as the timer: time another process takes from ours is not counted, so a
  job sharing the machine slows the benchmark run, not its figures. With one thread the CPU
  time of the process is the time of the work.
- A warm-up before the samples (first-touch page faults, the first call's allocations), rounds
  that `--interleave-rounds` alternates between the two commits, and several samples a round.
- Ratios (`track_*`) are the median of interleaved rounds, each timing both sides back to back,
  and always read lower-is-better: asv scores every figure that way.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import eggroll_np as egg
from eggroll_np.tuning import retain_heap_memory

__all__ = ["THREADS", "RATIO_UNIT", "Timed", "configure", "cpu_time", "ratio_of_times", "round_ratio"]

#: Threads of BLAS and the C++ core in every CPU benchmark.
THREADS = 1
#: The unit of every `track_` ratio: time of the thing / time of what it is compared with.
RATIO_UNIT = "ratio (lower is better)"


def configure() -> None:
    """The process settings of a benchmark module: pinned threads, `eggroll-np bench`'s
    allocator setting (freed large arrays are reused, not re-faulted)."""
    retain_heap_memory()
    egg.threads(THREADS)


def cpu_time(fn: Callable[[], Any]) -> float:
    """CPU seconds of this process while fn runs."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def ratio_of_times(num: Callable[[], Any], den: Callable[[], Any], rounds: int = 5) -> float:
    """Median over `rounds` of cpu_time(num) / cpu_time(den), each round timing both back to
    back, after one warm-up call of each. Lower is better when num is the thing measured."""
    num(), den()
    ratios = []
    for _ in range(rounds):
        t_num = cpu_time(num)
        ratios.append(t_num / max(cpu_time(den), 1e-9))
    return round_ratio(statistics.median(ratios))


def round_ratio(value: float) -> float:
    """value to 4 significant digits: asv prints a track_ figure with every digit it has."""
    return float(f"{value:.4g}")


class Timed:
    """asv attributes of the CPU classes (a mix-in; a class may override any of them)."""

    timer = time.process_time
    warmup_time = 0.2
    # Rounds: separate processes per benchmark, alternated between commits by
    # `asv continuous --interleave-rounds`; repeat: (min, max samples, seconds) per round.
    rounds = 4
    repeat = (3, 10, 4.0)
    timeout = 300
