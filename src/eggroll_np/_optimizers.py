"""The optimizers sgd, momentum and adam: hyperparameters, per-leaf state, the step's math.

Each optimizer is three plain pieces, registered in `eggroll_np.optim` (which users import):
a frozen dataclass of its hyperparameters (validated on construction), a NamedTuple of its
per-leaf arrays, and its direction function ``(hp, g, state, count, lr) -> (lr * direction,
new state)``: the array-code reference of one step (NumPy or CuPy), which works in place only on
arrays it allocated, never on g or the state's arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from . import _checks
from .backend import namespace_of

__all__ = [
    "SGD",
    "SGDState",
    "sgd",
    "Momentum",
    "MomentumState",
    "momentum",
    "Adam",
    "AdamState",
    "adam",
    "power",
]


class SGDState(NamedTuple):
    """SGD keeps no state."""


class MomentumState(NamedTuple):
    """Momentum's velocity, shaped like its leaf."""

    mu: Any


class AdamState(NamedTuple):
    """Adam's first and second moments (nu >= 0), shaped like their leaf."""

    mu: Any
    nu: Any


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


def power(b: float, n: int) -> float:
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


def sgd(hp: SGD, g: Any, state: SGDState, count: int, lr: float) -> tuple[Any, SGDState]:
    """SGD's direction times lr: lr * g."""
    return lr * g, SGDState()


def momentum(
    hp: Momentum, g: Any, state: MomentumState, count: int, lr: float
) -> tuple[Any, MomentumState]:
    """Momentum's step lr * mu with mu = momentum * mu + g, and the new velocity."""
    mu = hp.momentum * state.mu
    mu += g
    return lr * mu, MomentumState(mu)


def adam(hp: Adam, g: Any, state: AdamState, count: int, lr: float) -> tuple[Any, AdamState]:
    """Adam's step lr * mu_hat / (sqrt(nu_hat) + eps) for update `count` (>= 1), new moments."""
    xp = namespace_of(g)
    b1, b2 = hp.b1, hp.b2
    mu = b1 * state.mu
    mu += (1.0 - b1) * g
    nu = g * g
    nu *= 1.0 - b2
    nu += b2 * state.nu
    d = nu / (1.0 - power(b2, count))  # nu_hat
    d = xp.sqrt(d, out=d) if d.ndim else xp.sqrt(d)
    d += hp.eps
    d = mu / d
    d *= lr / (1.0 - power(b1, count))  # lr * mu_hat / (sqrt(nu_hat) + eps)
    return d, AdamState(mu, nu)
