"""Optimizers (sgd, momentum, adam) in one registry: hyperparameters, per-leaf state, one step.

The ES gradient estimate g is an ASCENT direction. Every optimizer turns it into a step
d = lr * direction, then decoupled weight decay (Loshchilov & Hutter 2019) subtracts
lr * weight_decay * theta, so theta_new = theta + d; sgd with weight_decay=0 is the contract's
theta + lr * g (docs/noise-contract.md, "Update").

State is plain data the optimizer owns (as in optax): an `OptState` holds the update count and,
per updated leaf index, the optimizer's own NamedTuple of arrays shaped like the leaf
(`SGDState()`, `MomentumState(mu)`, `AdamState(mu, nu)`). The engine and the checkpoint never
look inside: they use `init`, `apply`, `check_state`, `state_arrays` and `state_from_arrays`.

Each optimizer's step is an operation of the dispatch table (`eggroll_np.dispatch`, "<name>_step"):
`reference_step` (NumPy/CuPy array code) is every optimizer's row, and the C++ core's fused
one-pass Adam (`adam_step_core`, the same float32 operations in the same order) is Adam's float32
row. The lr of each update comes from the config's `schedule.Schedule`.

The optimizers' own pieces (hyperparameter dataclasses, state NamedTuples, direction functions)
are in `_optimizers.py`; this module registers them and is their public name (`optim.Adam`).
Adding an optimizer: a hyperparameter dataclass, a state NamedTuple and a direction function
there, one `register` call here, and its "<name>_step" rows in the dispatch table.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from . import _checks, _cuda_ops, _ext, _optimizers, dispatch
from ._optimizers import SGD, Adam, AdamState, Momentum, MomentumState, SGDState
from .backend import namespace_of
from .schedule import Schedule

__all__ = [
    "OPTIMIZERS",
    "learning_rate",
    "Optimizer",
    "OptimizerConfig",
    "OptState",
    "SGD",
    "SGDState",
    "Momentum",
    "MomentumState",
    "Adam",
    "AdamState",
    "get",
    "hyperparams",
    "init",
    "update",
    "reference_step",
    "adam_step_core",
    "apply",
    "state_arrays",
    "state_from_arrays",
    "check_state",
]

# direction(hp, g, state, count, lr) -> (lr * direction, new state); may work in place on arrays
# it allocated, never on g or the state's arrays.
Direction = Callable[[Any, Any, Any, int, float], tuple[Any, Any]]


class OptState(NamedTuple):
    """A run's optimizer state: plain data, read only by this module.

    Attributes:
        count: updates applied so far (the next update is count + 1).
        leaves: leaf index -> the optimizer's state of that leaf (for the leaves it updates).
    """

    count: int
    leaves: dict[int, Any]


@dataclass(frozen=True)
class Optimizer:
    """One registered optimizer: its hyperparameters, its per-leaf state, its step direction.

    Attributes:
        name: the name `init` takes.
        hyperparams: frozen dataclass of its hyperparameters (validated on construction).
        state: NamedTuple of its per-leaf arrays (each shaped and typed like the leaf).
        direction: the reference math of one step (see `Direction`).
        nonnegative: fields of `state` that are never negative (checked on load).
    """

    name: str
    hyperparams: type
    state: type
    direction: Direction
    nonnegative: tuple[str, ...] = ()

    @functools.cached_property
    def operation(self) -> str:
        """Its step's operation in the dispatch table (read for every leaf of every update)."""
        return f"{self.name}_step"


_REGISTRY: dict[str, Optimizer] = {}


def register(opt: Optimizer) -> Optimizer:
    """Add `opt` to the registry (the one place an optimizer is declared)."""
    _REGISTRY[opt.name] = opt
    return opt


register(Optimizer("sgd", SGD, SGDState, _optimizers.sgd))
register(Optimizer("momentum", Momentum, MomentumState, _optimizers.momentum))
register(Optimizer("adam", Adam, AdamState, _optimizers.adam, nonnegative=("nu",)))

OPTIMIZERS = tuple(sorted(_REGISTRY))
"""Valid optimizer names."""
_BY_HYPERPARAMS = {opt.hyperparams: opt for opt in _REGISTRY.values()}


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
    """What `update` and `apply` read (ESConfig provides it)."""

    optimizer: str
    lr: float
    weight_decay: float
    hyperparams: Any
    schedule: Schedule


def learning_rate(config: OptimizerConfig, count: int) -> float:
    """The learning rate of update `count` (1 for the first): `config.schedule.lr(lr, count)`."""
    return config.schedule.lr(config.lr, count)


def init(name: str, leaves: Mapping[int, Any]) -> OptState:
    """Initial optimizer state.

    Args:
        name: one of OPTIMIZERS.
        leaves: leaf index -> parameter array, for the leaves the optimizer updates.

    Returns:
        OptState with count 0 and every leaf's state zero (in the leaf's dtype and backend).
    """
    opt = get(name)
    return OptState(0, {i: _zeros(opt, leaf) for i, leaf in leaves.items()})


def _zeros(opt: Optimizer, leaf: Any) -> Any:
    return opt.state(*(namespace_of(leaf).zeros_like(leaf) for _ in opt.state._fields))


def _delta(
    opt: Optimizer, hp: Any, theta: Any, g: Any, state: Any, count: int, lr: float, wd: float
) -> tuple[Any, Any]:
    """(step to add to theta, new state) of one leaf: the reference math."""
    xp = namespace_of(g)
    d, new = opt.direction(hp, g, state, count, lr)
    if wd:
        d -= (lr * wd) * theta
    # asarray: NumPy turns 0-d results into scalars, leaves must stay arrays
    return xp.asarray(d), opt.state(*(xp.asarray(v) for v in new))


def update(
    grads: Mapping[int, Any], state: OptState, params: Mapping[int, Any], config: OptimizerConfig
) -> tuple[dict[int, Any], OptState]:
    """One optimizer step as deltas, in array code; pure (nothing is modified).

    Args:
        grads: leaf index -> ascent direction g (leaf shape and dtype).
        state: from `init` or a previous step.
        params: leaf index -> current parameters (for weight decay).
        config: optimizer name, lr and its schedule, weight_decay and the optimizer's
            hyperparams. Weight decay is scaled by the scheduled lr, as the step is.

    Returns:
        (deltas, new_state): leaf index -> step to ADD to the parameters, and the new state.
    """
    opt = get(config.optimizer)
    count = state.count + 1
    lr, wd = learning_rate(config, count), float(config.weight_decay)
    deltas, leaves = {}, dict(state.leaves)
    for i, g in grads.items():
        deltas[i], leaves[i] = _delta(
            opt, config.hyperparams, params[i], g, state.leaves[i], count, lr, wd
        )
    return deltas, OptState(count, leaves)


def reference_step(
    hp: Any, theta: Any, g: Any, state: Any, count: int, lr: float, wd: float
) -> tuple[Any, Any, Any]:
    """Every optimizer's "<name>_step" row: theta + `update`'s delta, the new state, and the
    squared norm of the step as applied (after rounding), squared in float64 and summed
    pairwise by the array library (no BLAS, so no thread-dependent order)."""
    d, new_state = _delta(_BY_HYPERPARAMS[type(hp)], hp, theta, g, state, count, lr, wd)
    xp = namespace_of(d)
    new_theta = xp.asarray(theta + d)
    step = xp.subtract(new_theta, theta, dtype=xp.float64).ravel()
    return new_theta, new_state, xp.square(step, out=step).sum()


def adam_step_core(
    hp: Adam, theta: Any, g: Any, state: AdamState, count: int, lr: float, wd: float
) -> tuple[Any, AdamState, float]:
    """Adam's float32 row: the C++ core's fused one-pass step (`reference_step`'s bits). The
    binding takes float32 arrays of any layout or byte order (converted to C-order native
    copies where they are not already), 0-d included."""
    theta, mu, nu, sq = _ext.core.adam_step(
        theta, g, state.mu, state.nu, lr, hp.b1, hp.b2, hp.eps, wd, count
    )
    return theta, AdamState(mu, nu), sq


def adam_step_cuda(
    hp: Adam, theta: Any, g: Any, state: AdamState, count: int, lr: float, wd: float
) -> tuple[Any, AdamState, Any]:
    """Adam's float32 CuPy row: one kernel (`_cuda_ops.adam`), the C++ core's bits; the norm is
    a 0-d device array (read with the generation's other info)."""
    theta, mu, nu, sq = _cuda_ops.adam(
        theta, g, state.mu, state.nu, lr, hp.b1, hp.b2, hp.eps, wd, count
    )
    return theta, AdamState(mu, nu), sq


def apply(
    grads: Mapping[int, Any],
    state: OptState,
    params: Mapping[int, Any],
    config: OptimizerConfig,
    sq_norms: dict[int, Any] | None = None,
    rows: dict | None = None,
) -> tuple[dict[int, Any], OptState]:
    """One optimizer step: the new parameters of each leaf in `grads`; pure.

    Same arguments as `update`. Each leaf's step is the dispatch table's row of
    "<optimizer>_step" for its arrays (float32 NumPy leaves under Adam: the fused C++ step, the
    same bits). If `sq_norms` is a dict, it receives leaf index -> squared norm of the step as
    applied, the float64 sum of (new - old)^2 over the leaf (a float, or a 0-d device array on
    CuPy; non-finite whenever a new value is), computed without another pass over the leaf
    where possible. `rows`: a run's `dispatch.select_kept` memo (GenerationNoise.rows: a
    leaf's arrays have the same backend and dtype every generation).

    Returns:
        (new_params, new_state): leaf index -> new parameter array, and the new state.
    """
    opt = get(config.optimizer)
    count = state.count + 1
    lr, wd = learning_rate(config, count), float(config.weight_decay)
    new_params, leaves = {}, dict(state.leaves)
    for i in sorted(grads):
        leaf = state.leaves[i]
        arrays = [params[i], grads[i], *leaf]
        step = dispatch.select_kept(rows, (opt.operation, i), opt.operation, arrays)
        new_params[i], leaves[i], sq = step(
            config.hyperparams, params[i], grads[i], leaf, count, lr, wd
        )
        if sq_norms is not None:
            sq_norms[i] = sq
    return new_params, OptState(count, leaves)


def state_arrays(state: OptState) -> list[Any]:
    """Every array of the state in a fixed order (leaf index, then the state's fields): what a
    checkpoint stores and a checksum reads; `state_from_arrays` inverts it."""
    return [a for i in sorted(state.leaves) for a in state.leaves[i]]


def state_from_arrays(template: OptState, count: int, arrays: Sequence[Any]) -> OptState:
    """The OptState with `template`'s layout (from `init`), the given count and these arrays
    in `state_arrays`' order (their number must match)."""
    it = iter(arrays)
    leaves = {i: type(s)(*(next(it) for _ in s)) for i, s in sorted(template.leaves.items())}
    if next(it, None) is not None:
        raise ValueError("more optimizer arrays than the state has")
    return OptState(int(count), leaves)


def check_state(
    state: Any, name: str, leaves: Sequence[Any], updated: Sequence[int], xp: Any
) -> None:
    """ValueError/TypeError unless `state` is optimizer `name`'s state for these params' leaves:
    one state per updated leaf index, its arrays on backend xp with their leaf's shape and
    dtype, nonnegative where the optimizer says so, and a count >= 0."""
    opt = get(name)
    if not isinstance(state, OptState):
        raise TypeError(f"opt_state must be an optim.OptState, got {type(state).__name__}")
    count = state.count
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"opt_state count must be an integer >= 0, got {count!r}")
    if not isinstance(state.leaves, Mapping) or sorted(state.leaves) != sorted(updated):
        raise ValueError(
            f"opt_state must hold a state for exactly the leaves {sorted(updated)} that the "
            "optimizer updates"
        )
    for i, s in state.leaves.items():
        if not isinstance(s, opt.state):
            raise ValueError(f"opt_state of leaf {i} is not a {name} state ({opt.state.__name__})")
        for field, arr in zip(s._fields, s, strict=True):
            what = f"opt_state {field} of leaf {i}"
            if not isinstance(arr, xp.ndarray):
                raise TypeError(
                    f"{what} is not a {xp.__name__} array like params; move the state to "
                    "the params' backend"
                )
            leaf = leaves[i]
            if arr.shape != leaf.shape or arr.dtype != leaf.dtype:
                raise ValueError(
                    f"{what} is {arr.dtype} {tuple(arr.shape)} but its leaf is {leaf.dtype} "
                    f"{tuple(leaf.shape)}"
                )
            if field in opt.nonnegative and bool((arr < 0).any()):
                raise ValueError(f"{what} must be >= 0")
