"""Seconds and peak memory of one ES generation, EGGROLL or standard full-rank ES, on an MLP.

Standard ES is the library's own `noise="full"` path evaluated member by member (black-box, as
OpenAI-ES workers do): each member's dense perturbation is regenerated from its counters and
dropped after use, so its memory stays a few copies of the params at any population. EGGROLL
runs the whole population as one batched forward (`pop.matmul`) with rank-r noise.
"""

from __future__ import annotations

import math
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from ... import es
from ...models import mlp
from ..bench import fresh_states

__all__ = [
    "METHODS",
    "mlp_sizes",
    "param_count",
    "traced",
    "median_generation_s",
    "setup_generation",
    "measure_mlp_generation",
]

METHODS = ("eggroll", "standard_es")
_OUTPUTS = 16  # width of the MLP's output layer
_ROWS = 16  # rows of the shared input batch every member sees


def mlp_sizes(params: int) -> tuple[int, ...]:
    """Sizes (h, h, h, 16) of a 3-layer MLP of about `params` parameters (h a multiple of 16)."""
    # 2 h^2 + h (1 + 16 + 2) + 16 = params
    h = (-19 + math.sqrt(19 * 19 + 8 * max(params - 16, 1))) / 4
    h = max(16, int(round(h / 16)) * 16)
    return (h, h, h, _OUTPUTS)


def param_count(sizes: tuple[int, ...]) -> int:
    """Weights and biases of an MLP with these layer sizes."""
    return sum(m * n + n for m, n in zip(sizes[:-1], sizes[1:], strict=True))


def traced(fn: Callable[[], Any]) -> tuple[Any, int]:
    """(fn(), peak bytes of NumPy arrays allocated while it ran); tracemalloc sees NumPy's data."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, max(0, peak - base)


def median_generation_s(
    params: Any,
    fitness: Callable[[Any], Any],
    state: es.ESState,
    batched: bool,
    repeats: int,
    budget_s: float = 30.0,
) -> float:
    """Median seconds of up to `repeats` generations, each on a fresh generation's noise.

    Stops early (after at least one) once the timed generations have taken `budget_s`.
    """
    states = fresh_states(state)
    times: list[float] = []
    for k in range(1, repeats + 1):
        s = states(k)
        t0 = time.perf_counter()
        es.step(params, fitness, s, batched=batched)
        times.append(time.perf_counter() - t0)
        if sum(times) >= budget_s:
            break
    return statistics.median(times)


def _problem(sizes: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 11])
    x = rng.standard_normal((_ROWS, sizes[0]), dtype=np.float32)
    y = rng.standard_normal((_ROWS, sizes[-1]), dtype=np.float32)
    return x, y


def _fitness(method: str, x: np.ndarray, y: np.ndarray) -> tuple[Callable[[Any], Any], bool]:
    """Minus the MSE to fixed random targets: batched for EGGROLL, per member for standard ES."""
    if method == "eggroll":

        def batched(pop: Any) -> np.ndarray:
            out = mlp.population_forward(pop, x, "relu")
            return -np.mean((out - y) ** 2, axis=(1, 2), dtype=np.float64)

        return batched, True

    def member(p: Any) -> float:
        return -float(np.mean((mlp.forward(p, x, "relu") - y) ** 2, dtype=np.float64))

    return member, False


def setup_generation(
    sizes: tuple[int, ...], population: int, method: str, seed: int = 0
) -> tuple[Any, Callable[[Any], Any], es.ESState, bool]:
    """(params, fitness, state, batched) of one method on the MLP `sizes`: what is timed.

    The fitness is minus the MSE to fixed random targets on 16 shared input rows.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x, y = _problem(sizes, seed)
    fitness, batched = _fitness(method, x, y)
    params = mlp.init(sizes, np.random.default_rng([seed, 12]))
    state = es.init(
        params,
        population=population,
        sigma=0.01,
        lr=0.001,
        rank=1,
        seed=seed,
        noise="lowrank" if method == "eggroll" else "full",
    )
    return params, fitness, state, batched


def measure_mlp_generation(
    sizes: tuple[int, ...], population: int, method: str, repeats: int, seed: int = 0
) -> dict[str, Any]:
    """Time and memory of one generation of `method` on the MLP `sizes`.

    Peak memory is traced from before the params exist through init and one generation: params,
    optimizer state (Adam) and the generation's temporaries, as a training process holds them.
    The timed generations come after, untraced, each on fresh noise.

    Returns:
        {"params", "population", "seconds", "peak_mb"}.
    """

    def setup_and_step() -> tuple[Any, Callable[[Any], Any], es.ESState, bool]:
        params, fitness, state, batched = setup_generation(sizes, population, method, seed)
        es.step(params, fitness, state, batched=batched)  # also the warm-up of the timing
        return params, fitness, state, batched

    (params, fitness, state, batched), peak = traced(setup_and_step)
    seconds = median_generation_s(params, fitness, state, batched, repeats)
    return {
        "params": param_count(sizes),
        "population": population,
        "seconds": seconds,
        "peak_mb": peak / 2**20,
    }
