"""`matching`: recover a random target network's parameters from its outputs alone."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...models import mlp
from ...population import Population
from .common import Task, Workload, check_options, generation_rng

__all__ = [
    "WORKLOAD",
    "DEFAULTS",
    "make",
    "parameter_error",
    "target_network",
    "initial_params",
    "training_inputs",
]

DEFAULTS: dict[str, Any] = {
    "population": 128,
    "sigma": 0.005,
    "lr": 0.005,
    "rank": 1,
    "generations": 1000,
    "optimizer": "adam",
    "shaping": "centered_rank",
    "inputs": 16,
    "outputs": 8,
    "batch": 128,
}


def parameter_error(params: Any, target: Any) -> float:
    """Relative parameter error ||theta - theta*|| / ||theta*|| over every leaf."""
    num = den = 0.0
    for got, want in zip(params["layers"], target["layers"], strict=True):
        for key in ("W", "b"):
            num += float(np.sum((np.asarray(got[key], np.float64) - want[key]) ** 2))
            den += float(np.sum(np.asarray(want[key], np.float64) ** 2))
    return float(np.sqrt(num / den))


def target_network(config: Mapping[str, Any]) -> dict[str, Any]:
    """The network to recover: one layer {"layers": [{"W": (inputs, outputs), "b"}]}."""
    seed = int(config["seed"])
    sizes = (int(config["inputs"]), int(config["outputs"]))
    target = mlp.init(sizes, np.random.default_rng([seed, 2]), gain=1.5)
    target["layers"][0]["b"] = (
        np.random.default_rng([seed, 3]).standard_normal(sizes[1]).astype(np.float32) * 0.5
    )
    return target


def initial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """Where training starts: the same layer shapes, small random weights."""
    sizes = (int(config["inputs"]), int(config["outputs"]))
    return mlp.init(sizes, np.random.default_rng([int(config["seed"]), 1]), gain=0.5)


def training_inputs(seed: int, generation: int, batch: int, inputs: int) -> np.ndarray:
    """The random inputs (batch, inputs) float32 of one generation (or one SGD step)."""
    x = generation_rng(seed, generation).standard_normal((batch, inputs))
    return x.astype(np.float32)


def make(config: Mapping[str, Any]) -> Task:
    """The matching Task: fitness = -MSE to the target's outputs on fresh random inputs.

    The network is one tanh layer y = tanh(x @ W + b): unlike a hidden-layer MLP (whose hidden
    units can be permuted) its parameters are identifiable from its outputs, so the parameter
    error is a meaningful measure of recovery and must go to zero.
    """
    check_options(config, positive=("inputs", "outputs", "batch"))
    seed = int(config["seed"])
    sizes = (int(config["inputs"]), int(config["outputs"]))
    batch = int(config["batch"])
    target = target_network(config)
    params = initial_params(config)

    def forward_target(x: np.ndarray) -> np.ndarray:
        return np.tanh(mlp.forward(target, x, "tanh"))

    def fitness(pop: Population) -> np.ndarray:
        x = training_inputs(seed, pop.generation, batch, sizes[0])
        out = np.tanh(mlp.population_forward(pop, x, "tanh"))  # (N, B, outputs)
        return -np.mean((out - forward_target(x)) ** 2, axis=(1, 2))

    x_eval = np.random.default_rng([seed, 4]).standard_normal((1024, sizes[0])).astype(np.float32)

    def evaluate(p: Any) -> dict[str, float]:
        mse = np.mean((np.tanh(mlp.forward(p, x_eval, "tanh")) - forward_target(x_eval)) ** 2)
        return {"parameter_error": parameter_error(p, target), "output_mse": float(mse)}

    def monitor(p: Any) -> dict[str, float]:
        return {"parameter_error": parameter_error(p, target)}

    return Task(params=params, fitness=fitness, batched=True, evaluate=evaluate, monitor=monitor)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    p.add_argument("--inputs", type=int, help=f"input width (default {d['inputs']})")
    p.add_argument("--outputs", type=int, help=f"output width (default {d['outputs']})")
    p.add_argument("--batch", type=int, help=f"random inputs per generation (default {d['batch']})")


WORKLOAD = Workload(
    name="matching",
    help="recover a random target network's parameters from its outputs (parameter error logged)",
    metric="parameter_error",
    defaults=DEFAULTS,
    add_arguments=_add_arguments,
    make=make,
)
