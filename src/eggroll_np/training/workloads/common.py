"""Helpers shared by the workloads: the Task contract, CLI options, RNGs (the MLP: models.mlp)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ... import _checks

__all__ = [
    "Task",
    "Workload",
    "ACTIVATIONS",
    "generation_rng",
    "log_softmax",
    "parse_sizes",
    "add_mlp_arguments",
    "check_options",
    "sklearn_seed",
]


@dataclass
class Task:
    """One configured run of a workload, as `eggroll_np.training.train` drives it.

    Attributes:
        params: initial parameter tree (float32 arrays).
        fitness: batched: Population -> (N,) float array; black-box: member tree -> float.
            Any minibatch or episode randomness is derived from (seed, pop.generation), so a
            resumed run evaluates exactly what an uninterrupted one would.
        batched: which of the two fitness forms `fitness` is.
        evaluate: params -> {name: value} for the final summary (the workload's `metric` in it).
        monitor: optional params -> {name: value} logged every generation (cheap).
        baseline: optional () -> {name: value} printed beside the result (e.g. scikit-learn's).
        es_options: extra keyword arguments of `eggroll_np.init` (e.g. `lowrank=` marking conv
            kernels low-rank); part of the model, so a resumed run gets them from its checkpoint.
        sample: optional params -> text shown after the summary (e.g. generated text).
        fitness_label: what the fitness is, for the learning curve's axis (e.g. "fitness =
            minus the minibatch cross-entropy (nats)").
        data: the arrays the run learns from and is evaluated on (read from files or a bundled
            data set); their fingerprint is saved with every checkpoint, so that a resume on
            other data is refused. Empty when the options alone make the data (simulations).
    """

    params: Any
    fitness: Callable[[Any], Any]
    batched: bool
    evaluate: Callable[[Any], dict[str, float]]
    monitor: Callable[[Any], dict[str, float]] | None = None
    baseline: Callable[[], dict[str, float]] | None = None
    es_options: Mapping[str, Any] = field(default_factory=dict)
    sample: Callable[[Any], str] | None = None
    fitness_label: str = "fitness"
    data: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class Workload:
    """A named workload: its defaults, its own CLI options and `make(config) -> Task`.

    Attributes:
        name: the `eggroll-np train NAME` name.
        help: one line for `--help`.
        metric: the key of `Task.evaluate`'s result that the final summary reports.
        defaults: every option's default, ES hyperparameters (population, sigma, lr, rank,
            generations, optimizer, shaping, ...) and the workload's own ones.
        add_arguments: adds the workload's own options to an argparse parser (defaults None).
        make: config (a mapping with every key of `defaults`, plus seed) -> Task.
        recipes: named sets of option values (`--recipe NAME`) that replace the defaults; options
            given explicitly still win.
        evaluation_options: options that only change the final evaluation or baseline, never
            what is trained, so a resumed run may change them (any other differing option is
            refused on resume).
    """

    name: str
    help: str
    metric: str
    defaults: Mapping[str, Any]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    make: Callable[[Mapping[str, Any]], Task]
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    evaluation_options: tuple[str, ...] = ()


#: Hidden-layer activations of the workloads' MLPs (the population layers' own, so the batched
#: forward fuses them into `pop.linear`'s one pass; `epilogue.apply_activation` is the reference).
ACTIVATIONS: tuple[str, ...] = ("gelu", "relu", "tanh")


def parse_sizes(text: str) -> tuple[int, ...]:
    """'64' or '64,32' -> (64,) / (64, 32); argparse type for --hidden."""
    try:
        sizes = tuple(int(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        )
    return sizes


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def generation_rng(seed: int, generation: int, stream: int = 0) -> np.random.Generator:
    """The RNG of one generation's data (minibatch, episode starts): a pure function of its inputs.

    Resuming at generation g therefore draws exactly what an uninterrupted run drew.
    """
    return np.random.default_rng([int(seed), int(generation), int(stream), 0x6567])


def sklearn_seed(seed: int) -> int:
    """A run's 64-bit seed as scikit-learn's 32-bit random_state (equal below 2**32)."""
    return int(seed) % 2**32


def add_mlp_arguments(p: argparse.ArgumentParser, defaults: Mapping[str, Any]) -> None:
    """--hidden and --activation (defaults None: the workload's defaults fill them in)."""
    hidden = ",".join(str(s) for s in defaults["hidden"])
    p.add_argument(
        "--hidden",
        type=parse_sizes,
        help=f"hidden layer sizes, comma-separated (default {hidden})",
    )
    p.add_argument(
        "--activation",
        choices=sorted(ACTIVATIONS),
        help=f"hidden activation (default {defaults['activation']})",
    )


def check_options(config: Mapping[str, Any], positive: Sequence[str] = ()) -> None:
    """TypeError/ValueError naming the option: each of `positive` must be an integer >= 1;
    activation must exist."""
    for key in positive:
        _checks.integer(f"--{key.replace('_', '-')}", config[key], 1)
    if "activation" in config:
        _checks.choice("--activation", config["activation"], ACTIVATIONS)
