"""`digits`: scikit-learn's bundled 8x8 handwritten digits (no download), MLP trained by EGGROLL."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import numpy as np

from .classification import add_model_arguments, make_classifier_task
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
    """The digits Task (see `classification.make_classifier_task`)."""
    return make_classifier_task(config, *load(config["seed"], config["test_fraction"]))


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, DEFAULTS)
    p.add_argument(
        "--test-fraction",
        type=float,
        help=f"held-out fraction for the test accuracy (default {DEFAULTS['test_fraction']})",
    )


WORKLOAD = Workload(
    name="digits",
    help="MLP on scikit-learn's bundled handwritten digits (no download); "
    "MLPClassifier baseline beside it",
    metric="test_accuracy",
    defaults=DEFAULTS,
    add_arguments=_add_arguments,
    make=make,
    evaluation_options=("baseline",),
)
