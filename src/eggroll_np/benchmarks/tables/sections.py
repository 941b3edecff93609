"""The five sections of `eggroll-np bench tables`: what each measures, as plain rows of numbers."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import es
from ...training.workloads import backprop, matching
from ...training.workloads.common import Task
from .measure import measure_mlp_generation, mlp_sizes, param_count, traced

__all__ = ["Settings", "FULL", "QUICK", "SECTIONS", "train_es", "available_memory_bytes"]


@dataclass(frozen=True)
class Settings:
    """Sizes and budgets of a tables run (FULL, QUICK, or either with overrides)."""

    sizes: tuple[int, ...]  # model_size: parameter counts of the MLPs
    populations: tuple[int, ...]  # population_scaling
    scaling_params: int  # population_scaling: parameters of its MLP
    ranks: tuple[int, ...]
    rank_generations: int
    matching_generations: int
    cnn_generations: int
    sgd_epochs: int  # cnn section's SGD baseline
    repeats: int  # timed generations per (model, method, population); median reported
    max_standard_s: float  # skip standard ES where one generation would take longer
    population: int = 256
    matching_threshold: float = 0.05  # converged: parameter error at most this
    memory_fraction: float = 0.5  # skip a model whose estimate exceeds this share of free RAM

    def scaled(self, budget: float) -> Settings:
        """The same run with every generation/epoch budget multiplied by `budget` (>= 1 each)."""
        keys = ("rank_generations", "matching_generations", "cnn_generations", "sgd_epochs")
        return dataclasses.replace(
            self, **{k: max(1, int(round(getattr(self, k) * budget))) for k in keys}
        )


FULL = Settings(
    sizes=(1_000_000, 10_000_000, 100_000_000),
    populations=(50, 100, 256, 512, 1024),
    scaling_params=1_000_000,
    ranks=(1, 2, 4),
    rank_generations=300,
    matching_generations=1000,
    cnn_generations=100,  # the reference pages' budget
    sgd_epochs=10,
    repeats=3,
    max_standard_s=120.0,
)
# The quick tables run the same populations and ranks as FULL on smaller sizes and budgets.
QUICK = dataclasses.replace(
    FULL,
    sizes=(50_000, 200_000, 1_000_000),
    scaling_params=50_000,
    rank_generations=40,
    matching_generations=200,
    cnn_generations=15,
    sgd_epochs=2,
    repeats=2,
    max_standard_s=60.0,
)


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (None where there is none)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# Peak bytes per parameter of one training generation, roughly (float32 params, Adam's two
# moments, the gradient, the new params, and for standard ES a member copy and its noise).
_BYTES_PER_PARAM = {"eggroll": 6 * 4, "standard_es": 8 * 4}


def _too_big(params: int, method: str, s: Settings) -> str | None:
    free = available_memory_bytes()
    need = params * _BYTES_PER_PARAM[method]
    if free is not None and need > s.memory_fraction * free:
        return (
            f"needs about {need / 2**30:.1f} GiB, over {s.memory_fraction:.0%} of the "
            f"{free / 2**30:.1f} GiB available"
        )
    return None


def _methods_rows(
    points: list[tuple[tuple[int, ...], int]], s: Settings, key: str, say: Callable[[str], None]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Both methods on each (sizes, population); standard ES skipped past its time budget."""
    rows, skipped = [], []
    last_standard: tuple[float, float] | None = None  # (work, seconds) of the last measured
    for sizes, population in points:
        params = param_count(sizes)
        row: dict[str, Any] = {key: params if key == "params" else population}
        for method in ("eggroll", "standard_es"):
            why = _too_big(params, method, s)
            work = params * population
            if why is None and method == "standard_es" and last_standard is not None:
                estimate = last_standard[1] * work / last_standard[0]
                if estimate > s.max_standard_s:
                    why = (
                        f"estimated {estimate:.0f} s per generation (scaled from the last "
                        f"measured point), over the {s.max_standard_s:.0f} s budget"
                    )
            if why is not None:
                skipped.append(f"{method} at {params:,} params, population {population}: {why}")
                row[f"{method}_s"] = row[f"{method}_mb"] = None
                continue
            say(f"{method}: {params:,} params, population {population}")
            m = measure_mlp_generation(sizes, population, method, s.repeats)
            row[f"{method}_s"], row[f"{method}_mb"] = m["seconds"], m["peak_mb"]
            if method == "standard_es":
                last_standard = (work, m["seconds"])
        rows.append(row)
    return rows, skipped


def model_size(s: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    """Seconds per generation and peak memory of both methods on MLPs of each size."""
    points = [(mlp_sizes(p), s.population) for p in s.sizes]
    rows, skipped = _methods_rows(points, s, "params", say)
    for row, (sizes, _) in zip(rows, points, strict=True):
        row["layers"] = list(sizes)
    return {"population": s.population, "rows": rows, "skipped": skipped}


def population_scaling(s: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    """Seconds per generation and peak memory of both methods at each population."""
    sizes = mlp_sizes(s.scaling_params)
    points = [(sizes, n) for n in s.populations]
    rows, skipped = _methods_rows(points, s, "population", say)
    return {"params": param_count(sizes), "layers": list(sizes), "rows": rows, "skipped": skipped}


def train_es(
    task: Task,
    generations: int,
    es_kwargs: Mapping[str, Any],
    on_generation: Callable[[int, Any], bool] | None = None,
) -> dict[str, Any]:
    """Train `task` for `generations` (or until on_generation(g, params) returns True).

    Returns:
        {"params", "generations", "seconds_per_generation" (median), "total_s", "peak_mb"
        (traced over init and the first generation)}.
    """

    def first() -> tuple[Any, es.ESState, float]:
        state = es.init(task.params, **es_kwargs, **task.es_options)
        t0 = time.perf_counter()
        params, state = es.step(task.params, task.fitness, state, batched=task.batched)
        return params, state, time.perf_counter() - t0

    (params, state, t_first), peak = traced(first)
    times = [t_first]
    done = 1
    stop = on_generation is not None and on_generation(1, params)
    while done < generations and not stop:
        t0 = time.perf_counter()
        params, state = es.step(params, task.fitness, state, batched=task.batched)
        times.append(time.perf_counter() - t0)
        done += 1
        stop = on_generation is not None and on_generation(done, params)
    return {
        "params": params,
        "generations": done,
        "seconds_per_generation": statistics.median(times),
        "total_s": sum(times),
        "peak_mb": peak / 2**20,
    }


def _es_kwargs(config: Mapping[str, Any], **over: Any) -> dict[str, Any]:
    keys = ("population", "sigma", "lr", "rank", "seed", "optimizer", "shaping")
    return {**{k: config[k] for k in keys}, **over}


def rank(s: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    """Memory, time per generation and digits test accuracy after a fixed budget, per rank."""
    from ...training.train import resolve_config
    from ...training.workloads import get

    w = get("digits")
    config = resolve_config(w, {"population": s.population, "baseline": False})
    rows = []
    for r in s.ranks:
        say(f"digits MLP, rank {r}")
        task = w.make(config)
        out = train_es(task, s.rank_generations, _es_kwargs(config, rank=r))
        rows.append(
            {
                "rank": r,
                "seconds_per_generation": out["seconds_per_generation"],
                "peak_mb": out["peak_mb"],
                "test_accuracy": task.evaluate(out["params"])["test_accuracy"],
            }
        )
    return {
        "workload": "digits",
        "hidden": list(config["hidden"]),
        "population": s.population,
        "generations": s.rank_generations,
        "rows": rows,
    }


def matching_convergence(s: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    """Generations until the parameter error is at most the threshold, and final fitness."""
    from ...training.train import resolve_config
    from ...training.workloads import get

    w = get("matching")
    config = resolve_config(w, {"population": s.population})
    target = matching.target_network(config)
    rows = []
    methods = [("EGGROLL r=1", {"rank": 1}), ("EGGROLL r=2", {"rank": 2})]
    methods.append(("standard ES (full rank)", {"noise": "full"}))
    for label, over in methods:
        say(f"matching: {label}")
        task = w.make(config)
        hit, converged = _first_hit(target, s.matching_threshold)
        out = train_es(task, s.matching_generations, _es_kwargs(config, **over), converged)
        rows.append(_matching_row(label, hit, task.evaluate(out["params"]), out["total_s"]))
    say("matching: SGD")
    seed, batch, inputs = int(config["seed"]), int(config["batch"]), int(config["inputs"])
    layer = target["layers"][0]
    batches = (
        (x, np.tanh(x @ layer["W"] + layer["b"]))
        for x in (matching.training_inputs(seed, g, batch, inputs) for g in range(10**9))
    )
    hit, sgd_converged = _first_hit(target, s.matching_threshold)

    def loss_and_grad(p: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, Any]:
        return backprop.mlp_loss_and_grad(p, x, y, "tanh", "mse", output_activation="tanh")

    result = backprop.sgd(
        matching.initial_params(config),
        loss_and_grad,
        batches,
        s.matching_generations,
        lr=0.5,
        callback=sgd_converged,
    )
    evaluated = w.make(config).evaluate(result["params"])
    rows.append(_matching_row("SGD (exact gradients)", hit, evaluated, result["train_s"]))
    return {
        "inputs": inputs,
        "outputs": int(config["outputs"]),
        "population": s.population,
        "budget": s.matching_generations,
        "threshold": s.matching_threshold,
        "rows": rows,
    }


def _first_hit(target: Any, threshold: float) -> tuple[list[int], Callable[[int, Any], bool]]:
    """([], callback): the callback records the first step whose parameter error <= threshold.

    It never stops the run: every method's final fitness is taken at the same budget.
    """
    hit: list[int] = []

    def callback(step: int, params: Any) -> bool:
        if not hit and matching.parameter_error(params, target) <= threshold:
            hit.append(step)
        return False

    return hit, callback


def _matching_row(label: str, hit: list[int], evaluated: dict[str, float], total: float) -> dict:
    return {
        "method": label,
        "generations_to_converge": hit[0] if hit else None,
        "final_fitness": -evaluated["output_mse"],
        "final_parameter_error": evaluated["parameter_error"],
        "total_s": total,
    }


def cnn(s: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    """EGGROLL, standard ES and SGD on the Simple CNN (digits): accuracy and time."""
    from ...training.train import resolve_config
    from ...training.workloads import cnn as cnn_workload
    from ...training.workloads import get

    w = get("cnn")
    config = resolve_config(w, {"population": s.population, "baseline": False})
    rows = []
    for label, over in (("EGGROLL r=1", {}), ("standard ES (full rank)", {"noise": "full"})):
        say(f"cnn: {label}")
        task = w.make(config)
        out = train_es(task, s.cnn_generations, _es_kwargs(config, **over))
        rows.append(
            {
                "method": label,
                "test_accuracy": task.evaluate(out["params"])["test_accuracy"],
                "seconds_per_generation": out["seconds_per_generation"],
                "generations": out["generations"],
                "total_s": out["total_s"],
            }
        )
    say("cnn: SGD")
    x_tr, y_tr, x_te, y_te = cnn_workload.load_images(config)
    steps_per_epoch = max(1, len(x_tr) // 64)
    t0 = time.perf_counter()
    base = cnn_workload.sgd_baseline(config, x_tr, y_tr, x_te, y_te, epochs=s.sgd_epochs)
    total = time.perf_counter() - t0
    rows.append(
        {
            "method": "SGD (exact gradients)",
            "test_accuracy": base["baseline_test_accuracy"],
            "seconds_per_generation": base["baseline_train_s"] / (s.sgd_epochs * steps_per_epoch),
            "generations": s.sgd_epochs * steps_per_epoch,
            "total_s": total,
        }
    )
    return {
        "data": "digits (8x8)",
        "channels": list(config["channels"]),
        "hidden": config["hidden"],
        "population": s.population,
        "rows": rows,
    }


SECTIONS: dict[str, Callable[[Settings, Callable[[str], None]], dict[str, Any]]] = {
    "model_size": model_size,
    "population_scaling": population_scaling,
    "rank": rank,
    "matching_convergence": matching_convergence,
    "cnn": cnn,
}
