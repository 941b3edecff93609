"""Per-call overhead of tiny calls, and of one call small enough that starting threads dominates.

asv times `Overhead`: one `pop.linear` and one `ask` + `tell` of a tiny model (population 8,
params {"W": (4, 4), "b": (4,)} float32, defaults otherwise), with the suite's settings
(`_common.Timed`): what the Python layers cost per call (issue 23: <= 10 us and <= 100 us).

Run as a script, from the repository root (median and minimum over --repeats batches of
--calls calls each, microseconds per call):
    python -m asv_benchmarks.bench_overhead [--repeats 15] [--calls 200] [--json PATH]

- linear: pop.linear on a population of 8, one input row, W 4 -> 4 (plus a bias, tanh).
- ask_tell: egg.ask + egg.tell of a 4 x 4 W, population 8.
- split_empty: the core's fill_normals of 16 rows x 4 normals: next to no work, but 16 items,
  which parallel_for splits over two threads: what a parallel call pays to wake (before the
  pool: start and join) a thread.
- fill_2x: fill_normals of 8 rows x 32768 normals, a real job split over two threads.
Timings are wall-clock medians on whatever machine runs it: compare two builds by running them
alternately on the same machine (docs/threads.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import eggroll_np as egg
from eggroll_np import _ext

from ._common import Timed, configure


def tiny() -> tuple[dict, object, np.ndarray, np.ndarray]:
    """(params, state, x, fitness) of the tiny model: W (4, 4) and b (4,), population 8."""
    rng = np.random.default_rng(0)
    params = {
        "W": rng.standard_normal((4, 4)).astype(np.float32),
        "b": np.zeros(4, np.float32),
    }
    state = egg.init(params, population=8, sigma=0.1, lr=0.01, seed=0)
    x = rng.standard_normal((1, 4)).astype(np.float32)
    return params, state, x, rng.standard_normal(8).astype(np.float32)


#: Calls per timed sample: per-call figures (the sample / CALLS) of warm, back-to-back calls,
#: as a training loop makes them, also where asv re-runs setup before every timed sample.
LINEAR_CALLS, GENERATIONS = 100, 20


class Overhead(Timed):
    """A tiny model's calls, where the Python layers are all of the time: `time_linear` is
    LINEAR_CALLS `pop.linear` calls, `time_ask_tell` GENERATIONS generations of ask + tell."""

    def setup(self):
        configure()
        self.params, self.state, self.x, self.fitness = tiny()
        self.pop = egg.ask(self.params, self.state)
        self.pop.linear(self.x, "W", "b", activation="relu")  # its noise made: steady state

    def time_linear(self):
        pop, x = self.pop, self.x
        for _ in range(LINEAR_CALLS):
            pop.linear(x, "W", "b", activation="relu")

    def time_ask_tell(self):
        params, state, fitness = self.params, self.state, self.fitness
        for _ in range(GENERATIONS):  # a fresh generation each: its noise made anew
            params, state = egg.tell(params, fitness, state, egg.ask(params, state))


def _per_call_us(fn, calls: int, repeats: int) -> list[float]:
    """[median, min] over `repeats` batches of the time per call; the minimum is the batch the
    machine's other load disturbed least."""
    fn()  # warm-up: first-call allocations, the pool's start
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return [round(statistics.median(times), 2), round(min(times), 2)]


def main() -> None:
    """Print (and with --json write) the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="the core's threads")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    _ext.core.set_num_threads(args.threads)  # through the raw binding: older builds lack threads()
    params, state, x, fitness = tiny()
    pop = egg.ask(params, state)

    def ask_tell():
        p = egg.ask(params, state)
        egg.tell(params, fitness, state, p)

    keys = np.arange(8, dtype=np.uint32)
    out = np.empty((8, 1 << 15), np.float32)
    keys16 = np.arange(16, dtype=np.uint32)
    rows16 = np.empty((16, 4), np.float32)
    results = {
        "linear_us": _per_call_us(lambda: pop.linear(x, "W", "b", "tanh"), args.calls, args.repeats),
        "ask_tell_us": _per_call_us(ask_tell, max(1, args.calls // 4), args.repeats),
        "split_empty_us": _per_call_us(
            lambda: _ext.core.fill_normals(0, 0, keys16, 0, 0, rows16), args.calls, args.repeats
        ),
        "fill_2x_us": _per_call_us(
            lambda: _ext.core.fill_normals(0, 0, keys, 0, 0, out), args.calls, args.repeats
        ),
    }
    print(json.dumps(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
