"""MLP classification by EGGROLL on in-memory arrays (the model behind `digits` and `mnist`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ... import _checks
from ...models import mlp
from ...population import Population
from .common import (
    Task,
    add_mlp_arguments,
    check_options,
    generation_rng,
    log_softmax,
    sklearn_seed,
)

__all__ = [
    "FITNESSES",
    "FITNESS_LABELS",
    "add_model_arguments",
    "make_classifier_task",
    "accuracy_task",
    "mlp_baseline",
]

FITNESSES = ("xent", "accuracy")
#: The learning curve's fitness axis for each --fitness.
FITNESS_LABELS = {
    "xent": "fitness = minus the minibatch cross-entropy (nats)",
    "accuracy": "fitness = minibatch accuracy",
}


def add_model_arguments(p: argparse.ArgumentParser, defaults: Mapping[str, Any]) -> None:
    """Options of the MLP classifier (defaults None: the workload's defaults fill them in)."""
    add_mlp_arguments(p, defaults)
    p.add_argument(
        "--fitness",
        choices=FITNESSES,
        help="fitness of a member on the generation's training minibatch: xent (negative "
        "cross-entropy) or accuracy (non-differentiable) "
        f"(default {defaults['fitness']})",
    )
    p.add_argument(
        "--batch",
        type=int,
        help=f"training minibatch rows per generation (default {defaults['batch']})",
    )
    p.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        help="also train scikit-learn's MLPClassifier with the same hidden sizes and print it "
        f"beside the result (default {'on' if defaults['baseline'] else 'off'})",
    )


def _check_config(config: Mapping[str, Any]) -> None:
    check_options(config, positive=("batch",))
    _checks.choice("--fitness", config["fitness"], FITNESSES)


def make_classifier_task(
    config: Mapping[str, Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> Task:
    """A Task training an MLP (x rows -> class logits) with batched-population fitness.

    Args:
        config: hidden (tuple of ints), activation, fitness ("xent" | "accuracy"), batch, seed,
            baseline (bool).
        x_train, x_test: (R, m) float32 features, already scaled.
        y_train, y_test: (R,) integer labels in [0, classes).

    Returns:
        Task whose fitness draws a minibatch from (seed, generation) shared by every member, and
        whose evaluate gives train_accuracy and test_accuracy of the unperturbed params.
    """
    _check_config(config)
    seed = int(config["seed"])
    classes = int(max(y_train.max(), y_test.max())) + 1
    sizes = (x_train.shape[1], *tuple(config["hidden"]), classes)
    activation = config["activation"]
    batch = min(int(config["batch"]), len(x_train))
    params = mlp.init(sizes, np.random.default_rng([seed, 1]))
    use_accuracy = config["fitness"] == "accuracy"

    chunk = mlp.members_per_chunk(batch, max(sizes[1:]))

    def fitness(pop: Population) -> np.ndarray:
        rows = generation_rng(seed, pop.generation).choice(len(x_train), batch, replace=False)
        x, y = x_train[rows], y_train[rows]
        f = np.empty(pop.size)
        for members, sub in pop.chunks(chunk):  # activations stay in cache between layers
            logits = mlp.population_forward(sub, x, activation)  # (n, B, classes)
            if use_accuracy:
                f[members] = (logits.argmax(axis=-1) == y).mean(axis=1)
            else:
                logp = log_softmax(logits)
                f[members] = np.take_along_axis(logp, y[None, :, None], axis=2)[..., 0].mean(1)
        return f

    def predict(p: Any, x: np.ndarray) -> np.ndarray:
        return mlp.forward(p, x, activation)

    def baseline() -> dict[str, float]:
        return mlp_baseline(config, x_train, y_train, x_test, y_test)

    return accuracy_task(
        params,
        fitness,
        predict,
        (x_train, y_train, x_test, y_test),
        baseline if config["baseline"] else None,
        fitness_label=FITNESS_LABELS[config["fitness"]],
    )


def accuracy_task(
    params: Any,
    fitness: Callable[[Population], np.ndarray],
    predict: Callable[[Any, np.ndarray], np.ndarray],
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    baseline: Callable[[], dict[str, float]] | None = None,
    es_options: Mapping[str, Any] | None = None,
    fitness_label: str = FITNESS_LABELS["xent"],
) -> Task:
    """The Task of a classifier: evaluate gives train_accuracy and test_accuracy of the
    unperturbed params, monitor the test accuracy each generation.

    Args:
        predict: (params, x) -> logits (R, classes).
        data: (x_train, y_train, x_test, y_test).
        fitness_label: what the fitness is (the learning curve's axis).
    """
    x_train, y_train, x_test, y_test = data

    def accuracy(p: Any, x: np.ndarray, y: np.ndarray) -> float:
        return float((predict(p, x).argmax(axis=1) == y).mean())

    def evaluate(p: Any) -> dict[str, float]:
        return {
            "train_accuracy": accuracy(p, x_train, y_train),
            "test_accuracy": accuracy(p, x_test, y_test),
        }

    def monitor(p: Any) -> dict[str, float]:
        return {"test_accuracy": accuracy(p, x_test, y_test)}

    return Task(
        params=params,
        fitness=fitness,
        batched=True,
        evaluate=evaluate,
        monitor=monitor,
        baseline=baseline,
        es_options=dict(es_options or {}),
        fitness_label=fitness_label,
        data=tuple(data),
    )


def mlp_baseline(
    config: Mapping[str, Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> dict[str, float]:
    """scikit-learn's MLPClassifier (Adam, backprop) with the same hidden sizes and activation."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    # sklearn has no GELU; relu is its closest activation.
    act = config["activation"] if config["activation"] in ("relu", "tanh") else "relu"
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(config["hidden"]),
        activation=act,
        max_iter=300,
        random_state=sklearn_seed(config["seed"]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    return {"baseline_test_accuracy": float(clf.score(x_test, y_test))}
