"""`digits`: scikit-learn's bundled 8x8 handwritten digits (no download), MLP trained by EGGROLL."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import int_mlp
from .classification import add_model_arguments, make_classifier_task, mlp_baseline
from .common import Task, Workload, sklearn_seed

__all__ = ["WORKLOAD", "DEFAULTS", "load", "make"]

DEFAULTS: dict[str, Any] = {
    "population": 512,
    "sigma": 0.05,
    "lr": 0.01,
    "rank": 1,
    "generations": 800,
    "optimizer": "adam",
    "shaping": "centered_rank",
    "hidden": (64,),
    "activation": "gelu",
    "fitness": "xent",
    "batch": 256,
    "test_fraction": 0.2,
    "baseline": True,
    **int_mlp.INT8_DEFAULTS,
}


def load(seed: int, test_fraction: float) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test): features scaled to [0, 1] float32, stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=float(test_fraction), random_state=sklearn_seed(seed), stratify=y
    )
    return x_tr, y_tr, x_te, y_te


def make(config: Mapping[str, Any]) -> Task:
    """The digits Task (see `classification.make_classifier_task`; with --int8
    `int_mlp.make_int_classifier_task`, the float run's test accuracy beside it)."""
    data = load(config["seed"], config["test_fraction"])
    if not config["int8"]:
        return make_classifier_task(config, *data)

    def beside() -> dict[str, float]:
        seed, fraction = config["seed"], config["test_fraction"]
        out = int_mlp.float_run("digits", seed, "test_accuracy", test_fraction=fraction)
        return {**out, **mlp_baseline({**config, "activation": "relu"}, *data)}

    return int_mlp.make_int_classifier_task(config, data, beside if config["baseline"] else None)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, DEFAULTS)
    p.add_argument(
        "--test-fraction",
        type=float,
        help=f"held-out fraction for the test accuracy (default {DEFAULTS['test_fraction']})",
    )
    int_mlp.add_int8_arguments(p, int_mlp.INT8_RECIPE)


WORKLOAD = Workload(
    name="digits",
    help="MLP on scikit-learn's bundled handwritten digits (no download); "
    "MLPClassifier baseline beside it",
    metric="test_accuracy",
    defaults=DEFAULTS,
    add_arguments=_add_arguments,
    make=make,
    recipes={"int8": int_mlp.INT8_RECIPE},
    evaluation_options=("baseline",),
)
