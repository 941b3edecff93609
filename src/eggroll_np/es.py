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
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _array_cache, _checks, _update_checks, evaluate, gradient, intupdate, optim, shaping
from .backend import namespace_of
from .config import ESConfig, NoiseKind, make_config, optimized_leaves
from .noise import epoch_of
from .perturbation import GenerationNoise
from .population import Population
from .state import _MADE, ESState, _checked, _known, _made, check_state
from .tree import check_params

__all__ = ["ESConfig", "ESState", "init", "ask", "tell", "step", "make_config", "check_state"]


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
    int_sigma_shift=2 and int_update_fraction=0.2 (int8 leaves: sigma = 2^-k with k in 0..15,
    and alpha in (0, 1), the fraction of entries a pure-noise update moves, scaled by the lr
    schedule; docs/integer.md), and the chosen optimizer's own hyperparameters: momentum=0.9
    (momentum), b1=0.9, b2=0.999, eps=1e-8 (adam). A hyperparameter of another optimizer (b1
    with optimizer="sgd") is a ValueError naming it, and so is a leaf that is not frozen holding
    inf or NaN (a frozen leaf may, e.g. a mask of -inf; checkpoints accept exactly the same).

    Example:
        >>> import numpy as np, eggroll_np as egg
        >>> params = {"W": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)}
        >>> state = egg.init(params, population=8, sigma=0.1, optimizer="sgd")
        >>> state.generation
        0
    """
    leaves, spec, xp = check_params(params)
    config = make_config(spec, **kwargs)
    non_frozen = {i: x for i, x in enumerate(leaves) if config.kinds[i] is not NoiseKind.FROZEN}
    bad = _update_checks.first_non_finite(non_frozen, xp)
    if bad is not None:  # a frozen leaf may (a mask of -inf): save/load accept it there too
        path = spec.path_strings[bad]
        raise ValueError(
            f"params leaf '{path}' has non-finite values (inf or NaN), which every update would "
            f"spread; only a frozen leaf may hold them, e.g. a mask: init(..., lowrank={{'{path}': "
            "'frozen'})"
        )
    trained = {i: leaves[i] for i in optimized_leaves(config, spec)}
    return _made(ESState(config, 0, optim.init(config.optimizer, trained), spec), xp)


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
    made = _MADE.get(state) if isinstance(state, ESState) else None
    told = made and made[1]
    known = told and _known(params, state, [ref() for ref in told], state.spec, made)
    leaves = known[0] if known else check_state(params, state)
    return Population(leaves, _noise_for(leaves, state, noise), state.generation)


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
        `info` describes this generation (update_norm covers the float leaves; with int8
        leaves, int_moved counts their entries that moved one step).
    """
    asked = population if isinstance(population, Population) else None
    made = _MADE.get(state) if asked and isinstance(state, ESState) else None
    known = made and _known(params, state, asked._leaves, asked.noise.spec, made)
    leaves, spec, xp = known or _checked(params, state)
    noise = _told_noise(leaves, state, population)
    config = state.config
    f = _checks.fitness_vector(fitness, config.population)
    w = shaping.shape_fitness(f, config.shaping, config.group_size)
    if not config.maximize:
        w = -w
    _update_checks.check_range(w, config, state.spec)
    norms: dict[int, Any] = {}  # read back only after every leaf's work is queued (GPU: one wait)
    # An overflow is reported below, naming the leaf, instead of as NumPy's RuntimeWarning.
    with np.errstate(over="ignore", invalid="ignore"):
        grads = gradient.estimate(noise, w)
        updated, opt_state = optim.apply(
            grads, state.opt_state, dict(enumerate(leaves)), config, norms, noise.rows
        )
    update_norm = _update_checks.checked_norm(updated, norms, state, leaves)
    # int8 leaves: the integer rule, from the raw fitness (`intupdate.update_tree`)
    int_new, moved = intupdate.update_tree(noise, f, leaves, state.opt_state.count + 1)
    new_leaves = list(leaves)
    for i, theta in {**updated, **int_new}.items():
        new_leaves[i] = theta
    hi, lo = float(np.maximum.reduce(f)), float(np.minimum.reduce(f))  # f.max(), f.min()
    mean, std = _mean_std(f, max(hi, -lo))
    info = {
        "generation": state.generation,
        "fitness_mean": mean,
        "fitness_max": hi,
        "fitness_min": lo,
        "fitness_std": std,
        "update_norm": update_norm,
        **({} if moved is None else {"int_moved": moved}),
    }
    # the next ask on these very arrays need not flatten them again
    told = [weakref.ref(a) for a in new_leaves] if xp is np else None
    new_state = _made(ESState(config, state.generation + 1, opt_state, state.spec, info), xp, told)
    return spec.unflatten(new_leaves), new_state  # the params' own containers (namedtuples)


def _mean_std(f: np.ndarray, largest: float) -> tuple[float, float]:
    """Mean and std (ddof 0) of the (N,) finite float64 fitness whose largest |f_i| is
    `largest`, as NumPy's `mean` and `std` of f / max|f| compute them (the same sums,
    divisions and sqrt: the same bits) without their per-call machinery, scaled back: no
    overflow for fitness near the float64 limit."""
    scale = largest or 1.0
    g = f / scale
    n = g.shape[0]
    mean = float(np.add.reduce(g)) / n  # g.sum(): the same pairwise sum
    g -= mean
    g *= g
    return mean * scale, math.sqrt(float(np.add.reduce(g)) / n) * scale


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
        params: tree of float32/float64/int8 arrays.
        fitness_fn: black-box (default): member params tree -> float, called once per member,
            members built one at a time. batched=True: Population -> (N,) fitness array.
        state: from `init` or a previous step; None starts a run with `init(params)` defaults,
            and the returned state must be passed back in for the next generation.
        batched: see fitness_fn.
        chunk: batched only: how many members fitness_fn sees at a time (a `Population`
            of consecutive members, from member 0 on); the values are concatenated in member
            order. "auto" (default): as many as keep the largest layer output within the
            last-level cache, 8 MiB above 64 MiB (`evaluate.chunk_budget`), from the size the
            previous generation's layers produced (`state.info["layer_bytes_per_member"]`; the
            first generation, CuPy, and forwards that fit run whole); an int: that many; None:
            the whole population in one call. A fitness that compares members with each other
            (ranks, novelty, a population mean) or returns values for members other than its
            Population's needs chunk=None. Per-member layer inputs of the whole population are
            read at each chunk's rows. Chunks may change the last bits of BLAS's outputs, never
            the noise or the update.

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
    made = _MADE.get(state)  # tell's: only info differs
    new_state = dataclasses.replace(state, info=info)
    return params, new_state if made is None else _made(new_state, *made)
