"""`ESState`, a run's plain-data state, and its checks; the states the engine made are trusted.

A state that `init`, `tell` or `step` made passed every check when it was made and is frozen, so
`check_state` checks only the params against it; any other state is checked field by field.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from . import optim
from .config import ESConfig, NoiseKind, optimized_leaves
from .tree import TreeSpec, check_params, holds

__all__ = ["ESState", "check_state"]


@dataclass(frozen=True, eq=False)
class ESState:
    """Immutable state of a run: everything `tell` needs besides the params.

    Compared by identity (its arrays have no single truth value); compare fields instead.

    Attributes:
        config: the run's ESConfig.
        generation: the next generation to evaluate (0 after `init`).
        opt_state: optimizer state, an `optim.OptState` (plain data the optimizer owns).
        spec: TreeSpec of the params at init (tell/ask reject any other tree).
        info: statistics of the last generation told (empty before the first `tell`):
            generation, fitness_mean, fitness_max, fitness_min, fitness_std, update_norm;
            after `step` also layer_bytes_per_member (`Population.layer_bytes_per_member`,
            which sets the next step's chunk="auto").
    """

    config: ESConfig
    generation: int
    opt_state: optim.OptState
    spec: TreeSpec
    info: dict[str, Any] = field(default_factory=dict)


# The states init, tell and step made, each with the backend of its optimizer arrays. Such a
# state is frozen and passes `_check_fields` and `optim.check_state` by construction, so for
# params of its spec on that backend those checks would repeat what is known (a state built
# any other way, `dataclasses.replace` included, is not here: see `_BY_OPT_STATE`). Weak:
# a state leaves when the run drops it; not pickled: a copy sent elsewhere is checked again.
# With tell's states also the leaves of the params it returned, as weak references (a state
# never keeps params alive): `ask` on those very arrays need not flatten them again.
_MADE: weakref.WeakKeyDictionary[ESState, tuple[ModuleType, Any]] = weakref.WeakKeyDictionary()
# The same states by id of their opt_state (an OptState is a tuple: no weak reference to it):
# a state that `dataclasses.replace` gave another generation or info, holding that very
# opt_state, config and spec, needs only those two fields checked (`_twin_made_on`).
_BY_OPT_STATE: weakref.WeakValueDictionary[int, ESState] = weakref.WeakValueDictionary()


def _made(state: ESState, xp: ModuleType, told: list[Any] | None = None) -> ESState:
    """`state`, noted as made by the engine for params on backend xp (see `_MADE`)."""
    _MADE[state] = (xp, told)
    _BY_OPT_STATE[id(state.opt_state)] = state
    return state


def _twin_made_on(state: ESState) -> ModuleType | None:
    """The backend of the made state whose opt_state, config and spec `state` holds (the very
    objects), after checking the fields it may have changed (generation, info); else None.
    The made state holds its opt_state alive, so its id names no other object meanwhile."""
    twin = _BY_OPT_STATE.get(id(state.opt_state))
    if (
        twin is None
        or twin.opt_state is not state.opt_state
        or twin.config is not state.config
        or twin.spec is not state.spec
    ):
        return None
    _check_generation_info(state)
    return _MADE[twin][0]


def check_state(params: Any, state: Any) -> list[Any]:
    """Validate (params, state) together (before any work); the params' leaves, canonical order.

    Every field of the state is checked, so a hand-edited or mixed-up ESState is a
    TypeError/ValueError naming the field (`generation`, `config`, `opt_state`, `spec`, `info`)
    rather than a failure deep inside `ask` or `tell`. A state that init, tell or step made
    passed those checks when it was made (it is frozen), so only the params are checked
    against it; one that `dataclasses.replace` gave another generation or info, keeping the
    made state's very opt_state, config and spec, has only those two fields checked.
    """
    return _checked(params, state)[0]


def _checked(params: Any, state: Any) -> tuple[list[Any], TreeSpec, ModuleType]:
    """check_state's leaves, the params' own TreeSpec (its namedtuples are the params') and
    their backend."""
    if not isinstance(state, ESState):
        raise TypeError(
            f"state must be an ESState (from eggroll_np.init), got {type(state).__name__}"
        )
    made_on = _MADE.get(state, (None,))[0]
    if made_on is None:
        made_on = _twin_made_on(state)
    if made_on is None:
        _check_fields(state)
    leaves, spec, xp = check_params(params)
    diff = state.spec.difference(spec)
    if diff is not None:
        raise ValueError(f"params do not match the state: {diff}")
    if made_on is not xp:
        # another shape or dtype of a leaf's optimizer state would change the leaf's dtype
        updated = optimized_leaves(state.config, state.spec)
        optim.check_state(state.opt_state, state.config.optimizer, leaves, updated, xp)
    return leaves, spec, xp


def _known(params: Any, state: Any, leaves: list[Any], spec: TreeSpec, made: Any) -> Any:
    """`_checked`'s answer without flattening params again, where `leaves` are the very NumPy
    arrays the engine checked or made for params of `spec` (a population's, or the params
    tell returned with the state), params hold them in spec's containers, and the state is
    one the engine made with that spec for NumPy params (`made`: its `_MADE` entry); else
    None. Float trees only: an int8 leaf is read again for -128."""
    if (
        made is not None
        and made[0] is np
        and spec is state.spec
        and "int8" not in spec.dtypes
        and holds(params, spec, leaves)
    ):
        return leaves, spec, np
    return None


def _check_generation_info(state: ESState) -> None:
    """TypeError/ValueError unless state.generation is an int >= 0 and state.info a dict."""
    generation = state.generation
    if isinstance(generation, bool) or not isinstance(generation, (int, np.integer)):
        raise TypeError(f"state.generation must be an int, got {generation!r}")
    if generation < 0:
        raise ValueError(f"state.generation must be >= 0, got {generation}")
    if not isinstance(state.info, dict):
        raise TypeError(f"state.info must be a dict, got {type(state.info).__name__}")


def _check_fields(state: ESState) -> None:
    """TypeError/ValueError naming the field of `state` that init/tell would never produce."""
    _check_generation_info(state)
    if not isinstance(state.spec, TreeSpec):
        raise TypeError(f"state.spec must be a TreeSpec, got {type(state.spec).__name__}")
    config = state.config
    if not isinstance(config, ESConfig):
        raise TypeError(f"state.config must be an ESConfig, got {type(config).__name__}")
    spec = state.spec
    if len(config.kinds) != spec.num_leaves:
        raise ValueError(
            f"state.config was made for a tree of {len(config.kinds)} leaves, but state.spec "
            f"has {spec.num_leaves}: config and spec come from different trees"
        )
    for path, shape, kind in zip(spec.path_strings, spec.shapes, config.kinds, strict=True):
        if kind is NoiseKind.LOWRANK and (
            len(shape) < 2 or (config.rank or 1) > min(shape[0], math.prod(shape[1:]))
        ):
            raise ValueError(
                f"state.config makes leaf '{path}' of shape {shape} low-rank with rank "
                f"{config.rank}, which init never does: config and spec come from different trees"
            )
    opt = state.opt_state
    updated = set(optimized_leaves(config, spec))
    if isinstance(opt, optim.OptState) and isinstance(opt.leaves, dict):
        missing = sorted(updated - set(opt.leaves))
        if missing:
            names = [spec.path_strings[i] for i in missing]
            raise ValueError(
                f"state.opt_state lacks the optimizer state of leaves {names} (the state of "
                "another tree or another config?)"
            )
