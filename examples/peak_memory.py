"""Peak memory and time of one batched ES step for a single (m, n) layer, against the params.

    python examples/peak_memory.py --m 1024 --n 1024 --population 1024 --batch 1

`measure(...)` is importable (benchmarks call it). Memory is traced with tracemalloc, which sees
every NumPy allocation; the fitness function's own activations (N, B, n) are reported apart.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from typing import Any

import numpy as np

import eggroll_np as egg

__all__ = ["measure", "main"]


def measure(
    m: int = 1024,
    n: int = 1024,
    population: int = 1024,
    rank: int = 1,
    batch: int = 1,
    shared: bool = False,
    optimizer: str = "adam",
    dtype: str = "float32",
) -> dict[str, Any]:
    """Peak traced bytes of `egg.step(..., batched=True)` on params {"W": (m, n)}.

    The fitness is sum(x @ W_i) for x of shape (batch, m) shared by all members, or
    (population, batch, m) per member. The first generation (which also allocates the optimizer
    state) is run untraced; the figures are from the second.

    Returns:
        dict of bytes: params, activations (the (N, B, n) output of pop.matmul), peak_step (the
        whole step, fitness included, above what was live before it), and seconds for the step.
    """
    rng = np.random.default_rng(0)
    params = {"W": (rng.standard_normal((m, n)) / np.sqrt(m)).astype(dtype)}
    x_shape = (batch, m) if shared else (population, batch, m)
    x = rng.standard_normal(x_shape).astype(dtype)

    def fitness(pop: egg.Population) -> np.ndarray:
        return pop.matmul(x, "W").sum(axis=(1, 2))

    state = egg.init(params, population=population, rank=rank, optimizer=optimizer)
    params, state = egg.step(params, fitness, state, batched=True)
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    t0 = time.perf_counter()
    params, state = egg.step(params, fitness, state, batched=True)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    itemsize = np.dtype(dtype).itemsize
    return {
        "m": m,
        "n": n,
        "population": population,
        "rank": rank,
        "batch": batch,
        "shared_x": shared,
        "optimizer": optimizer,
        "params_bytes": m * n * itemsize,
        "activations_bytes": population * batch * n * itemsize,
        "factor_bytes": population // 2 * (m + n) * rank * itemsize,
        "peak_step_bytes": peak - base,
        "step_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: print measure()'s dict as JSON, with MiB figures and ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=1024)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--population", type=int, default=1024)
    p.add_argument("--rank", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--shared", action="store_true", help="one x (B, m) for all members")
    p.add_argument("--optimizer", default="adam")
    a = p.parse_args(argv)
    r = measure(a.m, a.n, a.population, a.rank, a.batch, a.shared, a.optimizer)
    mib = 2.0**20
    r["params_MiB"] = r["params_bytes"] / mib
    r["peak_step_MiB"] = r["peak_step_bytes"] / mib
    r["peak_over_params"] = r["peak_step_bytes"] / r["params_bytes"]
    r["peak_minus_activations_over_params"] = (r["peak_step_bytes"] - r["activations_bytes"]) / r[
        "params_bytes"
    ]
    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
