"""GPU figures of the CUDA issue in one command: ``python -m eggroll_np.gpu_bench [--out FILE]``.

Measures, on the current CUDA device and in one run (so ratios compare like with like):
  * noise: ``noise.normals_batch`` vs ``cupy.random.standard_normal`` (float32, 10^8 values);
  * population forward vs pure cuBLAS inference of the same rows, for ``rl-4096``
    (MLP 4096-4096-4096-16, one row per member, populations 4096 and 16384) and ``sup``
    (MLP 784-256-256-10, population 256, one shared batch of 128 rows);
  * a full generation (ask + forward + tell through the engine API) vs inference.
Medians of CUDA-event timings are printed and written as JSON. Without a usable GPU it exits
with status 2 and a message saying why. The asv suite (asv_benchmarks/bench_gpu.py) reuses the
builders here.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _cuda_ops, _ext, noise
from .backend import cupy

__all__ = [
    "WORKLOADS",
    "Workload",
    "GpuSetup",
    "build",
    "inference",
    "population_forward",
    "generation",
    "engine_available",
    "fresh_generation_states",
    "time_gpu",
    "run",
    "main",
]

NOISE_VALUES = 10**8


@dataclass(frozen=True)
class Workload:
    """An MLP benchmark: layer widths, population, rows per member, shared or per-member input."""

    name: str
    widths: tuple[int, ...]
    populations: tuple[int, ...]
    batch: int
    shared_batch: bool


WORKLOADS = {
    "rl-4096": Workload("rl-4096", (4096, 4096, 4096, 16), (4096, 16384), 1, False),
    "sup": Workload("sup", (784, 256, 256, 10), (256,), 128, True),
}


@dataclass
class GpuSetup:
    """Device inputs of one (workload, population) case; arrays are CuPy."""

    workload: Workload
    population: int
    weights: list[Any]
    x: Any  # (B, m) shared batch or (N, B, m) one batch per member
    keys: np.ndarray
    keys_d: Any
    coef: Any
    sigma: float = 0.02
    rank: int = 1
    seed: int = 0
    factors: list[tuple[Any, Any]] = field(default_factory=list)


def build(workload: Workload, population: int, rank: int = 1, seed: int = 0) -> GpuSetup:
    """Random weights and inputs on the device, and the generation's factor cache."""
    _cuda_ops.require_device()
    rng = np.random.default_rng(seed)
    widths = workload.widths
    weights = [
        cupy.asarray(rng.standard_normal((m, n), dtype=np.float32) / np.float32(math.sqrt(m)))
        for m, n in zip(widths[:-1], widths[1:], strict=True)
    ]
    x_shape = (
        (workload.batch, widths[0])
        if workload.shared_batch
        else (population, workload.batch, widths[0])
    )
    x = cupy.asarray(rng.standard_normal(x_shape, dtype=np.float32))
    keys = noise.member_keys(population)
    setup = GpuSetup(
        workload, population, weights, x, keys, cupy.asarray(keys), None, rank=rank, seed=seed
    )
    setup.coef = cupy.asarray(noise.signs(population) * np.float32(setup.sigma / math.sqrt(rank)))
    setup.factors = make_factors(setup)
    return setup


def make_factors(setup: GpuSetup) -> list[tuple[Any, Any]]:
    """This generation's (A, B) of every layer, one factor set per member key."""
    unique = np.unique(setup.keys)
    return [
        noise.factors(setup.seed, leaf, unique, 0, tuple(w.shape), setup.rank, xp="cupy")
        for leaf, w in enumerate(setup.weights)
    ]


def _rows(setup: GpuSetup) -> Any:
    """The (N * B, m) rows that pure inference pushes through the unperturbed network."""
    x = setup.x
    if setup.workload.shared_batch:
        x = cupy.broadcast_to(x, (setup.population,) + x.shape)
    return cupy.ascontiguousarray(x).reshape(-1, x.shape[-1])


def inference(setup: GpuSetup, rows: Any | None = None) -> Any:
    """Pure cuBLAS inference of all N * B rows through the unperturbed MLP."""
    h = _rows(setup) if rows is None else rows
    last = len(setup.weights) - 1
    for j, w in enumerate(setup.weights):
        h = h @ w
        if j < last:
            h = cupy.tanh(h)
    return h


def population_forward(setup: GpuSetup, regenerate: bool = True) -> Any:
    """All N perturbed MLPs: cuBLAS base GEMMs plus the fused low-rank correction per layer.

    With `regenerate`, the factors are generated first (what a generation pays once);
    otherwise the cached ones are reused. Returns (N, B, n_out) float32.
    """
    factors = make_factors(setup) if regenerate else setup.factors
    n_pop, batch = setup.population, setup.workload.batch
    h = setup.x
    last = len(setup.weights) - 1
    for j, (w, (a, b)) in enumerate(zip(setup.weights, factors, strict=True)):
        if h.ndim == 2:  # shared batch: x @ W once for every member
            out = cupy.empty((n_pop, batch, w.shape[1]), dtype=np.float32)
            _cuda_ops.lowrank_correction(h, a, b, setup.keys_d, setup.coef, out, base=h @ w)
        else:
            out = (h.reshape(-1, h.shape[-1]) @ w).reshape(n_pop, batch, w.shape[1])
            _cuda_ops.lowrank_correction(h, a, b, setup.keys_d, setup.coef, out)
        h = cupy.tanh(out) if j < last else out
    return h


def engine_available() -> bool:
    """True when the engine API (init/ask/tell and Population.matmul) is importable."""
    import eggroll_np as egg

    return all(hasattr(egg, name) for name in ("init", "ask", "tell"))


def _engine_forward(setup: GpuSetup, pop: Any) -> Any:
    h = setup.x
    last = len(setup.weights) - 1
    for j in range(len(setup.weights)):
        h = pop.matmul(h, f"{j}")
        if j < last:
            h = cupy.tanh(h)
    return h


def generation(setup: GpuSetup, state: Any) -> tuple[list[Any], Any]:
    """One generation through the engine API: ask, batched forward, fitness, tell."""
    import eggroll_np as egg

    pop = egg.ask(setup.weights, state)
    fitness = _engine_forward(setup, pop).mean(axis=(1, 2))
    return egg.tell(setup.weights, fitness, state)


def engine_state(setup: GpuSetup) -> Any:
    """An ESState for the setup's weights (a list tree: leaf paths "0", "1", ...)."""
    import eggroll_np as egg

    return egg.init(
        setup.weights,
        population=setup.population,
        sigma=setup.sigma,
        rank=setup.rank,
        seed=setup.seed,
        optimizer="sgd",
        shaping="centered_rank",
    )


def fresh_generation_states(setup: GpuSetup) -> Callable[[], Any]:
    """A callable giving, per call, the setup's run at its next generation: every timed
    generation then generates its own noise, as a real run does."""
    from .bench import fresh_states

    states = fresh_states(engine_state(setup))
    calls = itertools.count()
    return lambda: states(next(calls))


def time_gpu(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> float:
    """Median milliseconds of fn() on the current stream, measured with CUDA events."""
    for _ in range(warmup):
        fn()
    cupy.cuda.get_current_stream().synchronize()
    times = []
    for _ in range(repeat):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


def _noise_figures(repeat: int, values: int) -> dict[str, Any]:
    ours = time_gpu(lambda: noise.normals_batch(0, 0, [0], 0, values, xp="cupy"), repeat)
    ref = time_gpu(lambda: cupy.random.standard_normal(values, dtype=np.float32), repeat)
    return {
        "values": values,
        "eggroll_ms": ours,
        "cupy_standard_normal_ms": ref,
        "eggroll_gvalues_per_s": values / ours / 1e6,
        "speed_vs_cupy": ref / ours,
        "target": ">= 1",
    }


def _workload_figures(workload: Workload, population: int, repeat: int) -> dict[str, Any]:
    setup = build(workload, population)
    rows = _rows(setup)
    infer = time_gpu(lambda: inference(setup, rows), repeat)
    fwd = time_gpu(lambda: population_forward(setup, regenerate=True), repeat)
    fwd_cached = time_gpu(lambda: population_forward(setup, regenerate=False), repeat)
    fig: dict[str, Any] = {
        "population": population,
        "rows_per_member": workload.batch,
        "inference_ms": infer,
        "forward_ms": fwd,
        "forward_cached_factors_ms": fwd_cached,
        "forward_over_inference": infer / fwd,  # throughput ratio, target >= 0.95
        "forward_cached_over_inference": infer / fwd_cached,
    }
    if engine_available():
        next_state = fresh_generation_states(setup)
        gen = time_gpu(lambda: generation(setup, next_state()), repeat)
        fig["generation_ms"] = gen
        fig["generation_over_inference"] = gen / infer  # time ratio, target <= 2.2 at 16384
    else:
        fig["generation_ms"] = None
        fig["generation_note"] = "engine API (egg.init/ask/tell) not available on this branch"
    return fig


def run(repeat: int = 5, quick: bool = False) -> dict[str, Any]:
    """Measure every figure on the current device; `quick` shrinks sizes for a smoke run."""
    _cuda_ops.require_device()
    info = _ext.cuda.device_info(cupy.cuda.Device().id)
    values = 10**6 if quick else NOISE_VALUES
    result: dict[str, Any] = {
        "device": info["name"],
        "compute_capability": list(info["compute_capability"]),
        "cupy": cupy.__version__,
        "command": "python -m eggroll_np.gpu_bench" + (" --quick" if quick else ""),
        "repeat": repeat,
        "noise": _noise_figures(repeat, values),
        "workloads": {},
    }
    for name, wl in WORKLOADS.items():
        if quick:
            wl = Workload(
                wl.name, tuple(min(w, 256) for w in wl.widths), (64,), wl.batch, wl.shared_batch
            )
        figures = []
        for population in wl.populations:
            figures.append(_workload_figures(wl, population, repeat))
            cupy.get_default_memory_pool().free_all_blocks()  # the case's arrays are garbage now
        result["workloads"][name] = figures
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints the JSON and writes it to --out."""
    parser = argparse.ArgumentParser(prog="python -m eggroll_np.gpu_bench", description=__doc__)
    parser.add_argument("--out", default="gpu_bench.json", help="JSON file to write")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions per figure")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = parser.parse_args(argv)
    if not _cuda_ops.gpu_available():
        try:
            _cuda_ops.require_device()
            reason = "CuPy sees no CUDA device"
        except RuntimeError as exc:
            reason = str(exc)
        print(f"gpu_bench: nothing measured: {reason}", file=sys.stderr)
        return 2
    result = run(repeat=args.repeat, quick=args.quick)
    text = json.dumps(result, indent=2)
    print(text)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
