"""`hyperparams`: black-box ES over log C and log gamma of an SVC, fitness = CV accuracy."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ... import _checks
from .common import Task, Workload, check_options, sklearn_seed

__all__ = ["WORKLOAD", "DEFAULTS", "make"]

DEFAULTS: dict[str, Any] = {
    "population": 8,
    "sigma": 0.5,
    "lr": 0.3,
    "rank": 1,
    "generations": 25,
    "optimizer": "adam",
    "shaping": "centered_rank",
    "samples": 600,
    "folds": 3,
    "log_c": -1.0,
    "log_gamma": -4.5,
}


_LOG_LIMIT = 20.0  # |log C|, |log gamma| the search covers


def _svc_scores(params: Any, x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.svm import SVC

    # exp of the search variables: ES moves them additively, the SVC needs them positive.
    c = float(np.exp(np.clip(params["log_C"][0], -_LOG_LIMIT, _LOG_LIMIT)))
    gamma = float(np.exp(np.clip(params["log_gamma"][0], -_LOG_LIMIT, _LOG_LIMIT)))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=sklearn_seed(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cross_val_score(SVC(C=c, gamma=gamma), x, y, cv=cv)


def make(config: Mapping[str, Any]) -> Task:
    """The hyperparams Task: params {"log_C": (1,), "log_gamma": (1,)} float64, black-box fitness.

    Data: the first `samples` rows of scikit-learn's digits for the cross-validated fitness; the
    rest are held out for the final test accuracy of an SVC fitted with the found values.
    """
    from sklearn.datasets import load_digits

    check_options(config, positive=("samples", "folds"))
    if config["folds"] < 2:
        raise ValueError(f"--folds must be >= 2, got {config['folds']}")
    data = load_digits()
    x, y = (data.data / 16.0), data.target
    rng = np.random.default_rng([int(config["seed"]), 5])
    order = rng.permutation(len(x))
    n = int(config["samples"])
    if not 10 * int(config["folds"]) <= n < len(x):
        raise ValueError(f"--samples must be in [{10 * int(config['folds'])}, {len(x)}), got {n}")
    x_cv, y_cv = x[order[:n]], y[order[:n]]
    x_te, y_te = x[order[n:]], y[order[n:]]
    folds, seed = int(config["folds"]), int(config["seed"])
    # The fitness clips both to [-20, 20] (`_svc_scores`): a start outside is a flat landscape,
    # NaN is no start at all, and 1e308 only overflows exp().
    params = {
        "log_C": np.array([_checks.real("--log-c", config["log_c"], -_LOG_LIMIT, hi=_LOG_LIMIT)]),
        "log_gamma": np.array(
            [_checks.real("--log-gamma", config["log_gamma"], -_LOG_LIMIT, hi=_LOG_LIMIT)]
        ),
    }

    def fitness(member: Any) -> float:
        return float(_svc_scores(member, x_cv, y_cv, folds, seed).mean())

    def evaluate(p: Any) -> dict[str, float]:
        from sklearn.svm import SVC

        svc = SVC(C=float(np.exp(p["log_C"][0])), gamma=float(np.exp(p["log_gamma"][0])))
        svc.fit(x_cv, y_cv)
        return {
            "cv_accuracy": fitness(p),
            "test_accuracy": float(svc.score(x_te, y_te)),
            "log_C": float(p["log_C"][0]),
            "log_gamma": float(p["log_gamma"][0]),
        }

    def monitor(p: Any) -> dict[str, float]:
        return {"log_C": float(p["log_C"][0]), "log_gamma": float(p["log_gamma"][0])}

    return Task(
        params=params,
        fitness=fitness,
        batched=False,
        evaluate=evaluate,
        monitor=monitor,
        data=(x_cv, y_cv, x_te, y_te),
    )


def _add_arguments(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    p.add_argument("--samples", type=int, help=f"digits rows used for CV (default {d['samples']})")
    p.add_argument("--folds", type=int, help=f"cross-validation folds (default {d['folds']})")
    p.add_argument("--log-c", type=float, help=f"starting log C (default {d['log_c']})")
    p.add_argument("--log-gamma", type=float, help=f"starting log gamma (default {d['log_gamma']})")


WORKLOAD = Workload(
    name="hyperparams",
    help="black-box ES over an SVC's log C and log gamma on digits, fitness = CV accuracy",
    metric="cv_accuracy",
    defaults=DEFAULTS,
    add_arguments=_add_arguments,
    make=make,
)
