"""The ES engine: `init`, `ask`, `tell`, `step`; `ESConfig` (validated) and `ESState` (plain data).

One generation: `ask` gives the `Population` of the current generation, the user (or `step`)
evaluates it, and `tell` shapes the fitness, estimates the gradient from the same noise and
applies the optimizer (DESIGN.md, "Update"). Every argument is validated before anything is
computed, and no input (params, state, fitness) is ever modified.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import optim, shaping
from .backend import as_array, to_numpy
from .noise import check_seed, epoch_of
from .population import NoiseCache, NoiseKind, Population
from .tree import TreeSpec, check_params, path_str

__all__ = ["ESConfig", "ESState", "init", "ask", "tell", "step", "make_config", "check_state"]

NOISE_MODES = ("lowrank", "full")

LowrankSpec = Callable[[str], "bool | NoiseKind | str"] | Mapping[Any, Any] | None


@dataclass(frozen=True)
class ESConfig:
    """Hyperparameters of a run (validated by `make_config`; use `init` to build one).

    `kinds` holds the resolved NoiseKind of each leaf in canonical order; the other fields are
    the arguments of `init`.
    """

    population: int
    sigma: float
    lr: float
    rank: int | None
    seed: int
    antithetic: bool
    noise_reuse: int
    optimizer: str
    shaping: str
    group_size: int | None
    weight_decay: float
    maximize: bool
    noise: str
    momentum: float
    b1: float
    b2: float
    eps: float
    kinds: tuple[NoiseKind, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (kinds as their string values)."""
        d = dataclasses.asdict(self)
        d["kinds"] = [k.value for k in self.kinds]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ESConfig:
        """Inverse of `to_dict`."""
        d = dict(d)
        d["kinds"] = tuple(NoiseKind(k) for k in d["kinds"])
        return cls(**d)


@dataclass(frozen=True, eq=False)
class ESState:
    """Immutable state of a run: everything `tell` needs besides the params.

    Compared by identity (its arrays have no single truth value); compare fields instead.

    Attributes:
        config: the run's ESConfig.
        generation: the next generation to evaluate (0 after `init`).
        opt_state: optimizer state, a flat dict of plain arrays (see `eggroll_np.optim`).
        spec: TreeSpec of the params at init (tell/ask reject any other tree).
        info: statistics of the last generation told (empty before the first `tell`):
            generation, fitness_mean, fitness_max, fitness_min, fitness_std, update_norm.
    """

    config: ESConfig
    generation: int
    opt_state: dict[str, Any]
    spec: TreeSpec
    info: dict[str, Any] = field(default_factory=dict)
    # Transient noise of the current epoch, shared along a run; never saved or compared.
    cache: NoiseCache = field(default_factory=NoiseCache, repr=False, compare=False)


def _int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return v


def _float(name: str, value: Any, lo: float, lo_open: bool, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    bad_lo = v <= lo if lo_open else v < lo
    if not math.isfinite(v) or bad_lo or v >= hi:
        lo_s = f"> {lo}" if lo_open else f">= {lo}"
        hi_s = f" and < {hi}" if hi != math.inf else ""
        raise ValueError(f"{name} must be finite, {lo_s}{hi_s}, got {value!r}")
    return v


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _choice(name: str, value: Any, valid: Any) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name} must be one of {sorted(valid)}, got {value!r}")
    return value


def _as_kind(path: str, value: Any) -> NoiseKind:
    if isinstance(value, NoiseKind):
        return value
    if isinstance(value, (bool, np.bool_)):
        return NoiseKind.LOWRANK if value else NoiseKind.FULL
    if isinstance(value, str) and value in {k.value for k in NoiseKind}:
        return NoiseKind(value)
    raise TypeError(
        f"lowrank: the choice for leaf '{path}' must be a NoiseKind, "
        f"one of {[k.value for k in NoiseKind]} or a bool, got {value!r}"
    )


def _choices_by_path(node: Any, prefix: str) -> list[tuple[str, Any]]:
    """(path, choice) pairs of a nested dict/list/tuple whose keys may be whole paths."""
    if isinstance(node, Mapping):
        items = [(path_str(k) if isinstance(k, tuple) else str(k), v) for k, v in node.items()]
    elif isinstance(node, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(node)]
    else:
        return [(prefix, node)]
    out = []
    for key, v in items:
        out += _choices_by_path(v, f"{prefix}/{key}" if prefix else key)
    return out


def _resolve_kinds(spec: TreeSpec, lowrank: LowrankSpec, full: bool) -> tuple[NoiseKind, ...]:
    """The NoiseKind of every leaf from `lowrank` (None, callable or tree/dict by path)."""
    paths = spec.path_strings
    default = NoiseKind.FULL if full else None
    if lowrank is None:
        chosen: dict[str, NoiseKind] = {}
    elif callable(lowrank):
        chosen = {p: _as_kind(p, lowrank(p)) for p in paths}
    elif isinstance(lowrank, Mapping):
        chosen = {}
        for p, v in _choices_by_path(lowrank, ""):
            if p not in paths:
                raise ValueError(f"lowrank names '{p}', which is not a leaf of params")
            chosen[p] = _as_kind(p, v)
    else:
        raise TypeError(
            "lowrank must be None, a callable path -> NoiseKind/bool, or a dict/tree of NoiseKind "
            f"by leaf path, got {type(lowrank).__name__}"
        )
    kinds = []
    for p, shape in zip(paths, spec.shapes, strict=True):
        k = chosen.get(p)
        if k is None:
            k = default or (NoiseKind.LOWRANK if len(shape) == 2 else NoiseKind.FULL)
        if full and k is NoiseKind.LOWRANK:
            k = NoiseKind.FULL  # noise="full" / rank=None: classic OpenAI-ES everywhere
        if k is NoiseKind.LOWRANK and len(shape) != 2:
            raise ValueError(
                f"lowrank: leaf '{p}' has shape {shape}; only 2-D leaves can be low-rank"
            )
        kinds.append(k)
    return tuple(kinds)


def make_config(
    spec: TreeSpec,
    *,
    population: int = 256,
    sigma: float = 0.02,
    lr: float = 0.05,
    rank: int | None = 1,
    seed: int = 0,
    antithetic: bool = True,
    noise_reuse: int = 1,
    optimizer: str = "adam",
    shaping: str = "centered_rank",
    group_size: int | None = None,
    weight_decay: float = 0.0,
    maximize: bool = True,
    lowrank: LowrankSpec = None,
    noise: str = "lowrank",
    momentum: float = 0.9,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> ESConfig:
    """Validate every hyperparameter (the one place that does) and resolve per-leaf noise kinds.

    Raises:
        TypeError / ValueError naming the offending argument.
    """
    population = _int("population", population, 1)
    antithetic = _bool("antithetic", antithetic)
    if antithetic and population % 2:
        raise ValueError(f"population must be even with antithetic=True, got {population}")
    noise = _choice("noise", noise, NOISE_MODES)
    if rank is not None:
        rank = _int("rank", rank, 1)
    shaping = _choice("shaping", shaping, shaping_names())
    if group_size is not None:
        group_size = _int("group_size", group_size, 1)
        if population % group_size:
            raise ValueError(f"group_size ({group_size}) must divide the population ({population})")
    elif shaping == "group_zscore":
        raise ValueError("shaping='group_zscore' needs group_size")
    full = noise == "full" or rank is None
    return ESConfig(
        population=population,
        sigma=_float("sigma", sigma, 0.0, True),
        lr=_float("lr", lr, 0.0, False),
        rank=rank,
        seed=check_seed(seed),
        antithetic=antithetic,
        noise_reuse=_int("noise_reuse", noise_reuse, 1),
        optimizer=_choice("optimizer", optimizer, optim.OPTIMIZERS),
        shaping=shaping,
        group_size=group_size,
        weight_decay=_float("weight_decay", weight_decay, 0.0, False),
        maximize=_bool("maximize", maximize),
        noise=noise,
        momentum=_float("momentum", momentum, 0.0, False, 1.0),
        b1=_float("b1", b1, 0.0, False, 1.0),
        b2=_float("b2", b2, 0.0, False, 1.0),
        eps=_float("eps", eps, 0.0, True),
        kinds=_resolve_kinds(spec, lowrank, full),
    )


def shaping_names() -> list[str]:
    """Valid shaping names."""
    return list(shaping.SHAPINGS)


def init(params: Any, **kwargs: Any) -> ESState:
    """A new ES state for `params` (params are not modified or copied).

    Keyword arguments (all optional): population=256, sigma=0.02, lr=0.05, rank=1 (None: full
    rank), seed=0, antithetic=True, noise_reuse=1, optimizer="adam" (sgd, momentum, adam),
    shaping="centered_rank" (none, centered_rank, zscore, group_zscore), group_size=None,
    weight_decay=0.0, maximize=True (False when fitness_fn returns a loss), lowrank=None (which
    leaves get rank-r noise: None means ndim == 2; or a callable path -> bool/NoiseKind, or a
    dict/tree of NoiseKind by leaf path), noise="lowrank" ("full": OpenAI-ES on every leaf),
    momentum=0.9, b1=0.9, b2=0.999, eps=1e-8.

    Example:
        >>> import numpy as np, eggroll_np as egg
        >>> params = {"W": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)}
        >>> state = egg.init(params, population=8, sigma=0.1, optimizer="sgd")
        >>> state.generation
        0
    """
    leaves, spec, _ = check_params(params)
    config = make_config(spec, **kwargs)
    trained = {i: x for i, x in enumerate(leaves) if config.kinds[i] is not NoiseKind.FROZEN}
    return ESState(config, 0, optim.init(config.optimizer, trained), spec)


def check_state(params: Any, state: Any) -> list[Any]:
    """Validate (params, state) together (before any work); the params' leaves, canonical order."""
    if not isinstance(state, ESState):
        raise TypeError(
            f"state must be an ESState (from eggroll_np.init), got {type(state).__name__}"
        )
    leaves, spec, xp = check_params(params)
    diff = state.spec.difference(spec)
    if diff is not None:
        raise ValueError(f"params do not match the state: {diff}")
    for key, arr in state.opt_state.items():
        if key != "count" and not isinstance(arr, xp.ndarray):
            raise TypeError(
                f"state.opt_state['{key}'] is not a {xp.__name__} array like params; "
                "move the state to the params' backend"
            )
    return leaves


def ask(params: Any, state: ESState) -> Population:
    """The Population of generation `state.generation` around `params`."""
    leaves = check_state(params, state)
    return Population(leaves, state.spec, state.config, state.generation, state.cache)


def _fitness_array(fitness: Any, n: int) -> np.ndarray:
    try:
        f = np.array(to_numpy(fitness), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"fitness must be a numeric array of shape ({n},): {exc}") from None
    if f.shape != (n,):
        raise ValueError(f"fitness must have shape ({n},) (one value per member), got {f.shape}")
    bad = np.flatnonzero(~np.isfinite(f))
    if bad.size:
        raise ValueError(
            f"fitness must be finite; member {int(bad[0])} has {f[bad[0]]} "
            f"({bad.size} non-finite value(s))"
        )
    return f


# |z| <= sqrt(-2 ln 2^-24) ~ 5.77 for the contract's normals (u >= 2^-24), so a unit low-rank
# entry is at most 5.77^2 * r / sqrt(r) and a full-rank one at most 5.77.
_MAX_NORMAL = math.sqrt(-2.0 * math.log(2.0**-24))


def _check_update_range(w: np.ndarray, config: ESConfig, spec: TreeSpec) -> None:
    """ValueError if the shaped fitness could overflow the update (only possible unshaped)."""
    kinds = [
        (k, d) for k, d in zip(config.kinds, spec.dtypes, strict=True) if k is not NoiseKind.FROZEN
    ]
    if not kinds:
        return
    eps_max = _MAX_NORMAL
    if any(k is NoiseKind.LOWRANK for k, _ in kinds):
        eps_max = _MAX_NORMAL**2 * math.sqrt(config.rank)
    bound = float(np.abs(w).sum()) / (config.population * config.sigma) * eps_max
    # sqrt(max): the optimizer squares g (adam), which must not overflow either.
    limit = min(math.sqrt(float(np.finfo(d).max)) for _, d in kinds)
    if not bound <= limit:
        raise ValueError(
            f"fitness is too large for shaping={config.shaping!r} and sigma={config.sigma}: the "
            f"update could reach {bound:.3g}, beyond what the leaves' dtype can hold "
            "(use a shaping such as 'centered_rank', or rescale the fitness)"
        )


def tell(params: Any, fitness: Any, state: ESState) -> tuple[Any, ESState]:
    """Update params from the fitness of every member of generation `state.generation`.

    Args:
        params: the tree that was passed to `ask` (same structure, shapes, dtypes).
        fitness: (N,) array-like of finite floats, member i's fitness at position i.
        state: the state `ask` was called with.

    Returns:
        (new_params, new_state): new arrays (the inputs are untouched) and the next state, whose
        `info` describes this generation.
    """
    leaves = check_state(params, state)
    config = state.config
    f = _fitness_array(fitness, config.population)
    w = shaping.shape_fitness(f, config.shaping, config.group_size)
    if not config.maximize:
        w = -w
    _check_update_range(w, config, state.spec)
    pop = Population(leaves, state.spec, config, state.generation, state.cache)
    grads = pop.gradient(w)
    norms: dict[int, Any] = {}  # read back only after every leaf's work is queued (GPU: one wait)
    updated, opt_state = optim.apply(
        grads, state.opt_state, dict(enumerate(leaves)), config, sq_norms=norms
    )
    new_leaves = list(leaves)
    for i, theta in updated.items():
        new_leaves[i] = theta
    sq = sum(float(norms[i]) for i in sorted(norms))
    # mean and std of f / max|f|, scaled back: no overflow for fitness near the float64 limit
    scale = float(np.abs(f).max()) or 1.0
    info = {
        "generation": state.generation,
        "fitness_mean": float((f / scale).mean()) * scale,
        "fitness_max": float(f.max()),
        "fitness_min": float(f.min()),
        "fitness_std": float((f / scale).std()) * scale,
        "update_norm": math.sqrt(sq),
    }
    # The noise stays cached only while the next generation is in the same epoch (noise_reuse).
    same_epoch = epoch_of(state.generation + 1, config.noise_reuse) == pop.epoch
    cache = state.cache if same_epoch else NoiseCache()
    new_state = ESState(config, state.generation + 1, opt_state, state.spec, info, cache)
    return state.spec.unflatten(new_leaves), new_state


def _member_fitness(value: Any, i: int) -> float:
    value = as_array(value, f"fitness of member {i}")  # a framework's 0-d tensor (DLPack)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"fitness_fn must return a real number; for member {i} it returned "
            f"{type(value).__name__}"
        ) from None


def step(
    params: Any,
    fitness_fn: Callable[[Any], Any],
    state: ESState | None = None,
    batched: bool = False,
) -> tuple[Any, ESState]:
    """One generation: ask, evaluate, tell.

    Args:
        params: tree of float32/float64 arrays.
        fitness_fn: black-box (default): member params tree -> float, called once per member,
            members built one at a time. batched=True: Population -> (N,) fitness array.
        state: from `init` or a previous step; None starts a run with `init(params)` defaults,
            and the returned state must be passed back in for the next generation.
        batched: see fitness_fn.

    Returns:
        (new_params, new_state).
    """
    if state is None:
        state = init(params)
    batched = _bool("batched", batched)
    if not callable(fitness_fn):
        raise TypeError(f"fitness_fn must be callable, got {type(fitness_fn).__name__}")
    pop = ask(params, state)
    if batched:
        fitness = fitness_fn(pop)
    else:
        fitness = [_member_fitness(fitness_fn(pop.member(i)), i) for i in range(pop.size)]
    return tell(params, fitness, state)
