"""Optimizers (sgd, momentum, adam) with decoupled weight decay, as pure init/update functions.

The ES gradient estimate g is an ASCENT direction. Every optimizer turns it into a direction d
and returns the step delta = lr * (d - weight_decay * theta) (decoupled weight decay, Loshchilov &
Hutter 2019), so theta_new = theta + delta; sgd with weight_decay=0 is DESIGN.md's theta + lr * g.
State is a flat dict of plain arrays (saved as-is by `checkpoint`): "count" (host int64 0-d) and,
per updated leaf index i, "mu/i" (momentum, adam) and "nu/i" (adam), in the leaf's dtype/backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from .backend import namespace_of

__all__ = ["OPTIMIZERS", "OptimizerConfig", "init", "update"]

OPTIMIZERS = ("sgd", "momentum", "adam")
"""Valid optimizer names."""


class OptimizerConfig(Protocol):
    """The hyperparameters `update` reads (ESConfig provides them)."""

    optimizer: str
    lr: float
    weight_decay: float
    momentum: float
    b1: float
    b2: float
    eps: float


def _check_name(name: str) -> None:
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")


def init(name: str, leaves: Mapping[int, Any]) -> dict[str, Any]:
    """Initial optimizer state.

    Args:
        name: one of OPTIMIZERS.
        leaves: leaf index -> parameter array, for the leaves the optimizer updates.

    Returns:
        dict of plain arrays (moments zero, in each leaf's dtype and backend).
    """
    _check_name(name)
    state: dict[str, Any] = {"count": np.zeros((), dtype=np.int64)}
    for i, leaf in leaves.items():
        xp = namespace_of(leaf)
        if name in ("momentum", "adam"):
            state[f"mu/{i}"] = xp.zeros_like(leaf)
        if name == "adam":
            state[f"nu/{i}"] = xp.zeros_like(leaf)
    return state


def update(
    grads: Mapping[int, Any],
    state: Mapping[str, Any],
    params: Mapping[int, Any],
    config: OptimizerConfig,
) -> tuple[dict[int, Any], dict[str, Any]]:
    """One optimizer step; pure (neither `state` nor any array is modified).

    Args:
        grads: leaf index -> ascent direction g (leaf shape and dtype).
        state: from `init` or a previous `update`.
        params: leaf index -> current parameters (for weight decay).
        config: hyperparameters (optimizer, lr, weight_decay, momentum, b1, b2, eps).

    Returns:
        (deltas, new_state): leaf index -> step to ADD to the parameters, and the new state.
    """
    _check_name(config.optimizer)
    count = int(state["count"]) + 1
    new_state: dict[str, Any] = {"count": np.asarray(count, dtype=np.int64)}
    deltas: dict[int, Any] = {}
    lr, wd = float(config.lr), float(config.weight_decay)
    for i, g in grads.items():
        xp = namespace_of(g)
        # In-place arithmetic on arrays this function allocated keeps the temporaries to one
        # leaf-sized buffer at a time; nothing passed in is written to.
        if config.optimizer == "sgd":
            d = lr * g
        elif config.optimizer == "momentum":
            mu = config.momentum * state[f"mu/{i}"]
            mu += g
            new_state[f"mu/{i}"] = xp.asarray(mu)
            d = lr * mu
        else:  # adam, with bias correction (Kingma & Ba 2015)
            b1, b2 = float(config.b1), float(config.b2)
            mu = b1 * state[f"mu/{i}"]
            mu += (1.0 - b1) * g
            nu = g * g
            nu *= 1.0 - b2
            nu += b2 * state[f"nu/{i}"]
            new_state[f"mu/{i}"], new_state[f"nu/{i}"] = xp.asarray(mu), xp.asarray(nu)
            d = nu / (1.0 - b2**count)  # nu_hat
            d = xp.sqrt(d, out=d) if d.ndim else xp.sqrt(d)
            d += float(config.eps)
            d = mu / d
            d *= lr / (1.0 - b1**count)  # lr * mu_hat / (sqrt(nu_hat) + eps)
        if wd:
            d -= (lr * wd) * params[i]
        # asarray: NumPy turns 0-d results into scalars, leaves must stay arrays
        deltas[i] = xp.asarray(d)
    return deltas, new_state
