"""The ES engine: `init`, `ask`, `tell`, `step` and `ESState` (plain data, nothing mutable).

One generation: `ask` gives the `Population` of the current generation, the user (or `step`)
evaluates it, and `tell` shapes the fitness, estimates the gradient from the same noise
(`gradient.estimate`) and applies the optimizer (docs/noise-contract.md, "Update"). Every
argument is validated before anything is computed, and no input (params, state, fitness) is
ever modified.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _array_cache, _checks, evaluate, gradient, optim, shaping
from .backend import namespace_of, to_numpy
from .config import ESConfig, NoiseKind, make_config
from .noise import epoch_of
from .perturbation import GenerationNoise
from .population import Population
from .tree import TreeSpec, check_params

__all__ = ["ESConfig", "ESState", "init", "ask", "tell", "step", "make_config", "check_state"]


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


def init(params: Any, **kwargs: Any) -> ESState:
    """A new ES state for `params` (params are not modified or copied).

    Keyword arguments (all optional): population=256 (< 2^32, even with antithetic), sigma=0.02,
    lr=0.05, rank=1 (None: full rank; at most min(m, n) of every low-rank leaf), seed=0 (< 2^64),
    antithetic=True, noise_reuse=1, optimizer="adam" (see `optim.OPTIMIZERS`),
    shaping="centered_rank" (none, centered_rank, zscore, group_zscore), group_size=None (only
    with group_zscore, then >= 2 and dividing the population),
    weight_decay=0.0, maximize=True (False when fitness_fn returns a loss), lowrank=None (which
    leaves get rank-r noise: None means ndim == 2; or a callable path -> bool/NoiseKind, or a
    dict/tree of NoiseKind by leaf path), noise="lowrank" ("full": OpenAI-ES on every leaf),
    noise_table=None (an int T opts in to the shared noise table: every member's noise is read
    from T normals generated once from the seed, docs/noise-contract.md),
    lr_schedule="constant" ("linear" or "cosine": decay from lr to lr_final=0.0 over
    lr_decay_steps updates, then hold lr_final; see `optim.learning_rate`),
    and the chosen optimizer's own hyperparameters: momentum=0.9 (momentum), b1=0.9, b2=0.999,
    eps=1e-8 (adam). A hyperparameter of another optimizer (b1 with optimizer="sgd") is a
    ValueError naming it.

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
    # another shape or dtype of a leaf's optimizer state would change the leaf's dtype
    updated = [i for i, k in enumerate(state.config.kinds) if k is not NoiseKind.FROZEN]
    optim.check_state(state.opt_state, state.config.optimizer, leaves, updated, xp)
    return leaves


def _noise_for(leaves: list[Any], state: ESState, noise: GenerationNoise | None) -> GenerationNoise:
    """`noise` when it is this generation's (same run, epoch and backend), else a new one."""
    epoch = epoch_of(state.generation, state.config.noise_reuse)
    xp = namespace_of(leaves[0])
    if noise is not None:
        if not isinstance(noise, GenerationNoise):
            raise TypeError(
                f"noise must be a GenerationNoise (population.noise), got {type(noise).__name__}"
            )
        if noise.fits(state.spec, state.config, epoch, xp):
            return noise
    return GenerationNoise(state.spec, state.config, epoch, xp)


@_array_cache.scoped
def ask(params: Any, state: ESState, noise: GenerationNoise | None = None) -> Population:
    """The Population of generation `state.generation` around `params`.

    Args:
        params, state: the run's current parameters and state.
        noise: a previous population's `noise`. With noise_reuse > 1, consecutive generations
            of one epoch share their noise: passing the previous generation's population.noise
            reuses its arrays instead of generating them again. Noise of another epoch (or
            run, or backend) is ignored and new noise made; the bits are the same either way.
    """
    leaves = check_state(params, state)
    return Population(leaves, _noise_for(leaves, state, noise), state.generation)


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


@_array_cache.scoped
def tell(
    params: Any, fitness: Any, state: ESState, population: Population | None = None
) -> tuple[Any, ESState]:
    """Update params from the fitness of every member of generation `state.generation`.

    Args:
        params: the tree that was passed to `ask` (same structure, shapes, dtypes).
        fitness: (N,) array-like of finite floats, member i's fitness at position i.
        state: the state `ask` was called with.
        population: the Population `ask` returned: its noise is reused instead of generated
            again (a slice, or another generation's population, is an error). None regenerates
            the noise; the result is bit-identical either way.

    Returns:
        (new_params, new_state): new arrays (the inputs are untouched) and the next state, whose
        `info` describes this generation.
    """
    leaves = check_state(params, state)
    noise = _told_noise(leaves, state, population)
    config = state.config
    f = _checks.fitness_vector(fitness, config.population)
    w = shaping.shape_fitness(f, config.shaping, config.group_size)
    if not config.maximize:
        w = -w
    _check_update_range(w, config, state.spec)
    norms: dict[int, Any] = {}  # read back only after every leaf's work is queued (GPU: one wait)
    # An overflow is reported below, naming the leaf, instead of as NumPy's RuntimeWarning.
    with np.errstate(over="ignore", invalid="ignore"):
        grads = gradient.estimate(noise, w)
        updated, opt_state = optim.apply(
            grads, state.opt_state, dict(enumerate(leaves)), config, sq_norms=norms
        )
    update_norm = _checked_update_norm(updated, norms, state)
    new_leaves = list(leaves)
    for i, theta in updated.items():
        new_leaves[i] = theta
    # mean and std of f / max|f|, scaled back: no overflow for fitness near the float64 limit
    scale = float(np.abs(f).max()) or 1.0
    info = {
        "generation": state.generation,
        "fitness_mean": float((f / scale).mean()) * scale,
        "fitness_max": float(f.max()),
        "fitness_min": float(f.min()),
        "fitness_std": float((f / scale).std()) * scale,
        "update_norm": update_norm,
    }
    new_state = ESState(config, state.generation + 1, opt_state, state.spec, info)
    return state.spec.unflatten(new_leaves), new_state


def _told_noise(
    leaves: list[Any], state: ESState, population: Population | None
) -> GenerationNoise:
    if population is None:
        return _noise_for(leaves, state, None)
    if not isinstance(population, Population):
        raise TypeError(
            f"population must be the Population from ask, got {type(population).__name__}"
        )
    if population.generation != state.generation or not population.noise.is_whole:
        raise ValueError(
            f"population must be generation {state.generation}'s whole population from ask, "
            f"got {population!r}"
        )
    noise = _noise_for(leaves, state, population.noise)
    if noise is not population.noise:
        raise ValueError("population was asked for another run, params backend or epoch")
    return noise


def _checked_update_norm(
    new_leaves: dict[int, Any], norms: dict[int, Any], state: ESState
) -> float:
    """The update's norm; ValueError naming the first leaf whose new values or update norm are
    not finite (sigma too small or lr too large for the leaves' dtype), before anything is
    returned: the caller's params and state stay as they were."""
    paths = state.spec.path_strings
    config = state.config
    hint = (
        f"sigma={config.sigma:g} and lr={config.lr:g} overflow the leaves' dtype; params and "
        "state are unchanged (use a larger sigma or a smaller lr)"
    )
    sq = 0.0
    for i in sorted(norms):
        v = float(norms[i])
        if not math.isfinite(v):
            raise ValueError(
                f"generation {state.generation}: the update of leaf '{paths[i]}' has a "
                f"non-finite norm; {hint}"
            )
        sq += v
    if not math.isfinite(sq):
        raise ValueError(f"generation {state.generation}: the update norm overflows; {hint}")
    if new_leaves:
        order = sorted(new_leaves)
        xp = namespace_of(new_leaves[order[0]])
        finite = to_numpy(xp.stack([xp.isfinite(new_leaves[i]).all() for i in order]))
        if not finite.all():
            leaf = order[int(np.flatnonzero(~finite)[0])]
            raise ValueError(
                f"generation {state.generation}: the new values of leaf '{paths[leaf]}' are "
                f"not finite; {hint}"
            )
    return math.sqrt(sq)


@_array_cache.scoped
def step(
    params: Any,
    fitness_fn: Callable[[Any], Any],
    state: ESState | None = None,
    batched: bool = False,
    chunk: int | str | None = "auto",
) -> tuple[Any, ESState]:
    """One generation: ask, evaluate, tell (the noise is generated once, for both).

    Args:
        params: tree of float32/float64 arrays.
        fitness_fn: black-box (default): member params tree -> float, called once per member,
            members built one at a time. batched=True: Population -> (N,) fitness array.
        state: from `init` or a previous step; None starts a run with `init(params)` defaults,
            and the returned state must be passed back in for the next generation.
        batched: see fitness_fn.
        chunk: batched only: how many members fitness_fn sees at a time (a `Population`
            of consecutive members, from member 0 on); the values are concatenated in member
            order. "auto" (default): as many as keep the largest layer output within the
            last-level cache (`evaluate.chunk_budget`), from the size the previous generation's
            layers produced (`state.info["layer_bytes_per_member"]`; the first generation, CuPy,
            and forwards that fit run whole); an int: that many; None: the whole population
            in one call. A fitness that compares members with each other (ranks, novelty, a
            population mean) or returns values for members other than its Population's needs
            chunk=None. Per-member layer inputs of the whole population are read at each
            chunk's rows. Chunks may change the last bits of BLAS's outputs, never the noise
            or the update.

    Returns:
        (new_params, new_state).
    """
    if state is None:
        state = init(params)
    batched = _checks.boolean("batched", batched)
    _checks.callable_("fitness_fn", fitness_fn)
    chunk = evaluate.check_chunk(chunk)
    pop = ask(params, state)
    if batched:
        layer_bytes = state.info.get(evaluate.INFO_KEY, 0)
        fitness = evaluate.evaluate(pop, fitness_fn, chunk, layer_bytes)
    else:
        fitness = [
            _checks.fitness_value(f"fitness_fn's value for member {i}", fitness_fn(pop.member(i)))
            for i in range(pop.size)
        ]
    params, state = tell(params, fitness, state, population=pop)
    info = {**state.info, evaluate.INFO_KEY: pop.layer_bytes_per_member}
    return params, dataclasses.replace(state, info=info)
