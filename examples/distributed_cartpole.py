"""Generations/s of the `cartpole` workload in one process, on 1 Ray actor and on 2 Ray actors.

    python examples/distributed_cartpole.py --population 1024 --generations 20

Every configuration starts from the same params and seed; the script checks that each one ends
with bit-identical params, and prints generations/s (after `--warmup` untimed generations) and the
bytes that crossed process boundaries per generation (driver -> workers, workers -> driver).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import eggroll_np as egg
from eggroll_np.training.options import ES_KEYS, resolve_config
from eggroll_np.training.workloads import get

__all__ = ["main"]


def _same(a: Any, b: Any) -> bool:
    leaves_a, leaves_b = egg.tree.flatten(a)[0], egg.tree.flatten(b)[0]
    return all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b, strict=True))


def _line(label: str, seconds: float, generations: int, state: Any, extra: str = "") -> None:
    rate = generations / seconds
    mean = state.info["fitness_mean"]
    print(f"{label:<22} {rate:8.2f} gen/s   fitness mean {mean:6.1f}{extra}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Time the configurations and print one line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=None, help="default: the workload's (64)")
    ap.add_argument("--episodes", type=int, default=None, help="default: the workload's (4)")
    ap.add_argument("--generations", type=int, default=20, help="timed generations")
    ap.add_argument("--warmup", type=int, default=2, help="untimed generations per config")
    ap.add_argument("--address", default=None, help="an existing Ray cluster (default: local)")
    args = ap.parse_args(argv)

    import ray

    from eggroll_np.distributed import RayEvaluator

    workload = get("cartpole")
    config = resolve_config(workload, {"population": args.population, "episodes": args.episodes})
    task = workload.make(config)
    params, state = task.params, egg.init(task.params, **{k: config[k] for k in ES_KEYS})
    print(
        f"cartpole: population {config['population']}, episodes {config['episodes']}, "
        f"{args.generations} timed generations after {args.warmup} warm-up"
    )

    with threadpool_limits(1, user_api="blas"):  # one BLAS thread: many small GEMMs
        p, s = params, state
        for _ in range(args.warmup):
            p, s = egg.step(p, task.fitness, s, batched=True)
        t0 = time.perf_counter()
        for _ in range(args.generations):
            p, s = egg.step(p, task.fitness, s, batched=True)
        _line("one process", time.perf_counter() - t0, args.generations, s)
    reference = p

    if args.address is None:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=args.address, log_to_driver=False)
    try:
        for workers, cpus in ((1, 1), (1, 2), (2, 1)):
            with RayEvaluator(
                params, state, task.fitness, workers=workers, batched=True, cpus_per_worker=cpus
            ) as ev:
                ev.run(args.warmup)
                t0 = time.perf_counter()
                p, s = ev.run(args.generations)
                seconds = time.perf_counter() - t0
                timed = ev.reports[args.warmup :]
                sent = np.mean([r.bytes_sent for r in timed])
                back = np.mean([r.bytes_received for r in timed])
                _line(
                    f"{workers} actor(s) x {cpus} CPU",
                    seconds,
                    args.generations,
                    s,
                    f"   {sent:.0f} B out, {back:.0f} B back per generation; "
                    f"setup {ev.setup_bytes} B; params identical to one process: "
                    f"{_same(p, reference)}",
                )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
