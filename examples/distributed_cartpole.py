"""Generations/s of CartPole ES on one process, on 1 Ray actor and on 2 Ray actors.

Uses the `cartpole` workload of `eggroll_np.workloads` when it exists, else the batched NumPy
CartPole below (the classic-control dynamics of Barto, Sutton & Anderson 1983, as in Gymnasium's
CartPole-v1: Euler steps of 20 ms, failure at |x| > 2.4 or |theta| > 12 degrees, at most 500 steps,
reward 1 per step survived). Every member of a slice is simulated at once with `pop.matmul`.

    python examples/distributed_cartpole.py --population 256 --generations 20

Prints one line per configuration: generations/s, mean fitness at the end, and the bytes that
crossed process boundaries per generation (driver -> workers, workers -> driver).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import eggroll_np as egg

__all__ = ["cartpole_fitness", "make_policy", "main"]

_GRAVITY, _CART_MASS, _POLE_MASS, _HALF_LENGTH = 9.8, 1.0, 0.1, 0.5
_FORCE, _TAU, _X_LIMIT, _THETA_LIMIT = 10.0, 0.02, 2.4, 12 * 2 * np.pi / 360
_MAX_STEPS = 500


def make_policy(hidden: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """An MLP 4 -> hidden -> 2 (push left / right), float32."""
    rng = np.random.default_rng(seed)
    return {
        "W1": (rng.standard_normal((4, hidden)) / 2.0).astype(np.float32),
        "b1": np.zeros(hidden, dtype=np.float32),
        "W2": (rng.standard_normal((hidden, 2)) / np.sqrt(hidden)).astype(np.float32),
        "b2": np.zeros(2, dtype=np.float32),
    }


def cartpole_fitness(pop: Any) -> np.ndarray:
    """Steps survived by each member of `pop` (float64 (pop.size,)), one episode each.

    The start state depends only on the generation, so every worker simulates the same episode.
    """
    n = pop.size
    start = np.random.default_rng(pop.generation).uniform(-0.05, 0.05, size=4)
    s = np.tile(start, (n, 1))  # x, x_dot, theta, theta_dot
    b1, b2 = pop.perturbed("b1")[:, None, :], pop.perturbed("b2")[:, None, :]
    alive = np.ones(n, dtype=bool)
    steps = np.zeros(n)
    total_mass, pole_ml = _CART_MASS + _POLE_MASS, _POLE_MASS * _HALF_LENGTH
    for _ in range(_MAX_STEPS):
        h = np.tanh(pop.matmul(s[:, None, :].astype(np.float32), "W1") + b1)
        logits = (pop.matmul(h, "W2") + b2)[:, 0, :]
        force = np.where(logits[:, 1] > logits[:, 0], _FORCE, -_FORCE)
        x, x_dot, th, th_dot = s.T
        cos, sin = np.cos(th), np.sin(th)
        temp = (force + pole_ml * th_dot**2 * sin) / total_mass
        th_acc = (_GRAVITY * sin - cos * temp) / (
            _HALF_LENGTH * (4.0 / 3.0 - _POLE_MASS * cos**2 / total_mass)
        )
        x_acc = temp - pole_ml * th_acc * cos / total_mass
        new = np.stack(
            [x + _TAU * x_dot, x_dot + _TAU * x_acc, th + _TAU * th_dot, th_dot + _TAU * th_acc],
            axis=1,
        )
        s = np.where(alive[:, None], new, s)
        steps += alive
        alive &= (np.abs(s[:, 0]) <= _X_LIMIT) & (np.abs(s[:, 2]) <= _THETA_LIMIT)
        if not alive.any():
            break
    return steps


def _workload(population: int | None, hidden: int) -> tuple[Any, Any, dict[str, Any], str]:
    """(params, fitness, init kwargs, source): the workloads' CartPole when it exists."""
    try:
        from eggroll_np import workloads
    except ImportError:
        es = {"population": population or 256, "sigma": 0.1, "lr": 0.05, "seed": 0}
        return make_policy(hidden), cartpole_fitness, es, "NumPy CartPole of this script"
    wl = workloads.get("cartpole")
    task = wl.make(wl.config(hidden=[hidden]))
    es = {k: v for k, v in wl.es_defaults().items() if k != "generations"}
    if population:
        es["population"] = population
    return task.params, task.fitness, es, "eggroll_np.workloads cartpole"


def _report(label: str, seconds: float, generations: int, state: Any, extra: str = "") -> None:
    rate = generations / seconds
    mean = state.info.get("fitness_mean", float("nan"))
    print(f"{label:<24} {rate:7.2f} gen/s   mean fitness {mean:6.1f}{extra}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Time the three configurations and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=None, help="default: the workload's")
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2, help="untimed generations per config")
    ap.add_argument("--address", default=None, help="existing Ray cluster (default: local)")
    args = ap.parse_args(argv)

    import ray

    from eggroll_np.distributed import RayEvaluator

    params, fitness, es, source = _workload(args.population, args.hidden)
    state = egg.init(params, **es)
    print(f"workload: {source}; {es}; {args.generations} generations")

    p, s = params, state
    for _ in range(args.warmup):
        p, s = egg.step(p, fitness, s, batched=True)
    t0 = time.perf_counter()
    for _ in range(args.generations):
        p, s = egg.step(p, fitness, s, batched=True)
    _report("single process", time.perf_counter() - t0, args.generations, s)
    reference = p

    if args.address is None:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=args.address, log_to_driver=False)
    try:
        for workers, cpus in ((1, 1), (1, 2), (2, 1)):
            with RayEvaluator(
                params, state, fitness, workers=workers, batched=True, cpus_per_worker=cpus
            ) as ev:
                ev.run(args.warmup)
                t0 = time.perf_counter()
                p, s = ev.run(args.generations)
                seconds = time.perf_counter() - t0
                timed = ev.reports[args.warmup :]
                sent = np.mean([r.bytes_sent for r in timed])
                received = np.mean([r.bytes_received for r in timed])
                same = all(
                    np.array_equal(a, b)
                    for a, b in zip(
                        egg.tree.flatten(p)[0], egg.tree.flatten(reference)[0], strict=True
                    )
                )
                _report(
                    f"{workers} actor(s) x {cpus} CPU",
                    seconds,
                    args.generations,
                    s,
                    f"   {sent:.0f} B out / {received:.0f} B back per gen; "
                    f"setup {ev.setup_bytes} B; same params as single process: {same}",
                )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
