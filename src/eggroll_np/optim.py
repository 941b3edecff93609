"""Optimizers (sgd, momentum, adam) in one registry: each is its hyperparameters, slots and update.

The ES gradient estimate g is an ASCENT direction. Every optimizer turns it into a step
d = lr * direction, then decoupled weight decay (Loshchilov & Hutter 2019) subtracts
lr * weight_decay * theta, so theta_new = theta + d; sgd with weight_decay=0 is the contract's
theta + lr * g (docs/noise-contract.md, "Update"). `update` is the NumPy/CuPy reference; `apply`
returns the new parameters and hands float32 NumPy Adam leaves to the C++ core's fused one-pass
step (tested against `update`). State is a flat dict of plain arrays (saved as-is by
`checkpoint`): "count" (host int64 0-d) and, per updated leaf index i and slot s of the
optimizer, "s/i" ("mu/i" for momentum and adam, "nu/i" for adam) in the leaf's dtype/backend.

Adding an optimizer: one hyperparameter dataclass, one direction function, one `register` call.

Learning-rate schedules (`SCHEDULES`): the lr of step `count` (1, 2, ...) is a pure function of
the config and the count (`learning_rate`), in the spirit of optax's schedules, so a run resumed
from a checkpoint (which stores the count) takes exactly the steps an uninterrupted one takes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from . import _checks, _ext
from .backend import namespace_of

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "learning_rate",
    "Optimizer",
    "OptimizerConfig",
    "SGD",
    "Momentum",
    "Adam",
    "get",
    "hyperparams",
    "init",
    "update",
    "apply",
]

# direction(hp, g, slots, count, lr) -> (lr * direction, new slots); may work in place on arrays
# it allocated, never on g or slots.
Direction = Callable[[Any, Any, Mapping[str, Any], int, float], tuple[Any, dict[str, Any]]]


@dataclass(frozen=True)
class Optimizer:
    """One registered optimizer: its hyperparameter class, its per-leaf state slots, its step."""

    name: str
    hyperparams: type
    slots: tuple[str, ...]
    direction: Direction


_REGISTRY: dict[str, Optimizer] = {}


def register(opt: Optimizer) -> Optimizer:
    """Add `opt` to the registry (the one place an optimizer is declared)."""
    _REGISTRY[opt.name] = opt
    return opt


def _unit_interval(name: str, value: Any) -> float:
    return _checks.real(name, value, 0.0, False, 1.0)


@dataclass(frozen=True)
class SGD:
    """Plain ascent: direction = g."""


@dataclass(frozen=True)
class Momentum:
    """Heavy ball: mu = momentum * mu + g, direction = mu (0 <= momentum < 1)."""

    momentum: float = 0.9

    def __post_init__(self) -> None:
        object.__setattr__(self, "momentum", _unit_interval("momentum", self.momentum))


@dataclass(frozen=True)
class Adam:
    """Adam with bias correction (Kingma & Ba 2015): 0 <= b1, b2 < 1, eps > 0."""

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        object.__setattr__(self, "b1", _unit_interval("b1", self.b1))
        object.__setattr__(self, "b2", _unit_interval("b2", self.b2))
        object.__setattr__(self, "eps", _checks.real("eps", self.eps, 0.0, True))


def _power(b: float, n: int) -> float:
    """b**n by binary exponentiation in IEEE double (the C++ core's `power`, step for step).

    Not `b**n`: that is libm's pow, which may round differently on another machine.
    """
    result = 1.0
    while n > 0:
        if n & 1:
            result *= b
        n >>= 1
        if n > 0:
            b *= b
    return result


def _sgd(hp: SGD, g: Any, slots: Mapping[str, Any], count: int, lr: float) -> tuple[Any, dict]:
    return lr * g, {}


def _momentum(hp: Momentum, g: Any, slots: Mapping[str, Any], count: int, lr: float):
    mu = hp.momentum * slots["mu"]
    mu += g
    return lr * mu, {"mu": mu}


def _adam(hp: Adam, g: Any, slots: Mapping[str, Any], count: int, lr: float):
    xp = namespace_of(g)
    b1, b2 = hp.b1, hp.b2
    mu = b1 * slots["mu"]
    mu += (1.0 - b1) * g
    nu = g * g
    nu *= 1.0 - b2
    nu += b2 * slots["nu"]
    d = nu / (1.0 - _power(b2, count))  # nu_hat
    d = xp.sqrt(d, out=d) if d.ndim else xp.sqrt(d)
    d += hp.eps
    d = mu / d
    d *= lr / (1.0 - _power(b1, count))  # lr * mu_hat / (sqrt(nu_hat) + eps)
    return d, {"mu": mu, "nu": nu}


register(Optimizer("sgd", SGD, (), _sgd))
register(Optimizer("momentum", Momentum, ("mu",), _momentum))
register(Optimizer("adam", Adam, ("mu", "nu"), _adam))

OPTIMIZERS = tuple(sorted(_REGISTRY))
"""Valid optimizer names."""


def get(name: Any) -> Optimizer:
    """The registered optimizer `name` (ValueError listing the valid names otherwise)."""
    return _REGISTRY[_checks.choice("optimizer", name, _REGISTRY)]


def hyperparams(name: str, **given: Any) -> Any:
    """The validated hyperparameters of optimizer `name` (defaults for those not given).

    A hyperparameter of another optimizer (b1 with optimizer="sgd") is a ValueError naming it:
    silently ignoring it would hide a mistake in the run's configuration. A name that is no
    optimizer's hyperparameter is a TypeError (an unknown keyword argument).
    """
    opt = get(name)
    fields = _fields(opt)
    for key in given:
        if key not in fields:
            owners = [o.name for o in _REGISTRY.values() if key in _fields(o)]
            if not owners:
                raise TypeError(f"unexpected keyword argument {key!r}")
            raise ValueError(
                f"{key} is a hyperparameter of {' and '.join(owners)}, not of "
                f"optimizer={name!r} (its hyperparameters: {sorted(fields) or 'none'})"
            )
    return opt.hyperparams(**given)


def _fields(opt: Optimizer) -> set[str]:
    return {f.name for f in dataclasses.fields(opt.hyperparams)}


class OptimizerConfig(Protocol):
    """What `update` reads (ESConfig provides it); also, when present, lr_schedule, lr_final and
    lr_decay_steps (`learning_rate`)."""

    optimizer: str
    lr: float
    weight_decay: float
    hyperparams: Any


SCHEDULES = ("constant", "linear", "cosine")
"""Valid lr_schedule names. "constant" keeps lr; "linear" and "cosine" (half a period) decay
from lr to lr_final over lr_decay_steps steps, then stay at lr_final."""


def learning_rate(config: OptimizerConfig, count: int) -> float:
    """The learning rate of step `count` (1 for the first update) under `config.lr_schedule`.

    With t = min(count - 1, lr_decay_steps) / lr_decay_steps: "linear" gives
    lr + (lr_final - lr) * t, "cosine" lr_final + (lr - lr_final) * (1 + cos(pi t)) / 2; both
    start at lr and hold lr_final from step lr_decay_steps + 1 on. A pure function of the count.
    A config without `lr_schedule` (a minimal OptimizerConfig) has a constant lr.
    """
    lr = float(config.lr)
    schedule = getattr(config, "lr_schedule", "constant")
    if schedule == "constant":
        return lr
    steps = int(config.lr_decay_steps)
    t = min(max(int(count) - 1, 0), steps) / steps
    final = float(config.lr_final)
    if schedule == "linear":
        return lr + (final - lr) * t
    return final + (lr - final) * 0.5 * (1.0 + math.cos(math.pi * t))


def init(name: str, leaves: Mapping[int, Any]) -> dict[str, Any]:
    """Initial optimizer state.

    Args:
        name: one of OPTIMIZERS.
        leaves: leaf index -> parameter array, for the leaves the optimizer updates.

    Returns:
        dict of plain arrays (slots zero, in each leaf's dtype and backend).
    """
    opt = get(name)
    state: dict[str, Any] = {"count": np.zeros((), dtype=np.int64)}
    for i, leaf in leaves.items():
        for slot in opt.slots:
            state[f"{slot}/{i}"] = namespace_of(leaf).zeros_like(leaf)
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
        config: optimizer name, lr (and its schedule), weight_decay and the optimizer's
            hyperparams. Weight decay is scaled by the scheduled lr, as the step is.

    Returns:
        (deltas, new_state): leaf index -> step to ADD to the parameters, and the new state.
    """
    opt = get(config.optimizer)
    count = int(state["count"]) + 1
    new_state: dict[str, Any] = {"count": np.asarray(count, dtype=np.int64)}
    deltas: dict[int, Any] = {}
    lr, wd = learning_rate(config, count), float(config.weight_decay)
    for i, g in grads.items():
        xp = namespace_of(g)
        slots = {s: state[f"{s}/{i}"] for s in opt.slots}
        d, new_slots = opt.direction(config.hyperparams, g, slots, count, lr)
        for s, v in new_slots.items():
            new_state[f"{s}/{i}"] = xp.asarray(v)
        if wd:
            d -= (lr * wd) * params[i]
        # asarray: NumPy turns 0-d results into scalars, leaves must stay arrays
        deltas[i] = xp.asarray(d)
    return deltas, new_state


def _fused_adam(config: OptimizerConfig, *arrays: Any) -> bool:
    # One pass over memory instead of ~10 NumPy passes (measured ~20x on a 1M-value leaf). Any
    # float32 layout or byte order: the fused step and `update` give the same bits, and one
    # path for every layout keeps the reported norm the same too.
    return (
        config.optimizer == "adam"
        and _ext.core is not None
        and all(isinstance(a, np.ndarray) and a.dtype.type is np.float32 for a in arrays)
    )


def _c32(a: np.ndarray) -> np.ndarray:
    """a as a C-contiguous native float32 array (no copy when it already is one)."""
    return np.asarray(a, dtype=np.float32, order="C")  # not ascontiguousarray: keeps 0-d


def apply(
    grads: Mapping[int, Any],
    state: Mapping[str, Any],
    params: Mapping[int, Any],
    config: OptimizerConfig,
    sq_norms: dict[int, Any] | None = None,
) -> tuple[dict[int, Any], dict[str, Any]]:
    """`update`, then theta + delta: the new parameters of each leaf in `grads`.

    Same arguments as `update`; pure. Float32 NumPy leaves under Adam take the fused C++ step
    (the same float32 operations in the same order: the same bits); everything else is `update`.
    If `sq_norms` is a dict, it receives leaf index -> squared norm of the step (a float, or a
    0-d device array on CuPy), computed without another pass over the leaf where possible.

    Returns:
        (new_params, new_state): leaf index -> new parameter array, and the new state.
    """
    fused = {
        i
        for i, g in grads.items()
        if _fused_adam(config, params[i], g, state.get(f"mu/{i}"), state.get(f"nu/{i}"))
    }
    rest = {i: g for i, g in grads.items() if i not in fused}
    deltas, new_state = update(rest, state, params, config)
    new_params = {i: namespace_of(d).asarray(params[i] + d) for i, d in deltas.items()}
    if sq_norms is not None:
        for i in deltas:
            # The step as applied (after rounding), squared in float64 and summed pairwise by
            # the array library: no BLAS, so no thread-dependent order.
            xp = namespace_of(new_params[i])
            step = xp.subtract(new_params[i], params[i], dtype=xp.float64).ravel()
            sq_norms[i] = xp.square(step, out=step).sum()
    count = int(new_state["count"])
    hp = config.hyperparams
    for i in sorted(fused):
        theta, mu, nu, sq = _ext.core.adam_step(
            _c32(params[i]), _c32(grads[i]), _c32(state[f"mu/{i}"]), _c32(state[f"nu/{i}"]),
            learning_rate(config, count), hp.b1, hp.b2, hp.eps, float(config.weight_decay), count,
        )  # fmt: skip
        new_params[i], new_state[f"mu/{i}"], new_state[f"nu/{i}"] = theta, mu, nu
        if sq_norms is not None:
            sq_norms[i] = sq
    return new_params, new_state
