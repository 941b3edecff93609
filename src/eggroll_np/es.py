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

from . import _checks, evaluate, gradient, optim, shaping
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
    leaves, spec, xp = check_params(params)
    config = make_config(spec, **kwargs)
    trained = {i: x for i, x in enumerate(leaves) if config.kinds[i] is not NoiseKind.FROZEN}
    bad = _first_non_finite(trained, xp)
    if bad is not None:
        raise ValueError(
            f"params leaf '{spec.path_strings[bad]}' has non-finite values (NaN or inf), which "
            "every update would spread; fix the params, or freeze the leaf (lowrank={"
            f"'{spec.path_strings[bad]}': 'frozen'}})"
        )
    return ESState(config, 0, optim.init(config.optimizer, trained), spec)


def _first_non_finite(leaves: dict[int, Any], xp: Any) -> int | None:
    """The smallest index of `leaves` holding a NaN or inf, or None (one device read on a GPU)."""
    if not leaves:
        return None
    order = sorted(leaves)
    finite = to_numpy(xp.stack([xp.isfinite(leaves[i]).all() for i in order]))
    return None if finite.all() else order[int(np.flatnonzero(~finite)[0])]


def check_state(params: Any, state: Any) -> list[Any]:
    """Validate (params, state) together (before any work); the params' leaves, canonical order.

    Every field of the state is checked, so a hand-edited or mixed-up ESState is a
    TypeError/ValueError naming the field (`generation`, `config`, `opt_state`, `spec`, `info`)
    rather than a failure deep inside `ask` or `tell`.
    """
    return _checked(params, state)[0]


def _checked(params: Any, state: Any) -> tuple[list[Any], TreeSpec]:
    """check_state's leaves and the params' own TreeSpec (its namedtuples are the params')."""
    if not isinstance(state, ESState):
        raise TypeError(
            f"state must be an ESState (from eggroll_np.init), got {type(state).__name__}"
        )
    _check_fields(state)
    leaves, spec, xp = check_params(params)
    diff = state.spec.difference(spec)
    if diff is not None:
        raise ValueError(f"params do not match the state: {diff}")
    # another shape or dtype of a leaf's optimizer state would change the leaf's dtype
    updated = [i for i, k in enumerate(state.config.kinds) if k is not NoiseKind.FROZEN]
    optim.check_state(state.opt_state, state.config.optimizer, leaves, updated, xp)
    return leaves, spec


def _check_fields(state: ESState) -> None:
    """TypeError/ValueError naming the field of `state` that init/tell would never produce."""
    generation = state.generation
    if isinstance(generation, bool) or not isinstance(generation, (int, np.integer)):
        raise TypeError(f"state.generation must be an int, got {generation!r}")
    if generation < 0:
        raise ValueError(f"state.generation must be >= 0, got {generation}")
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
    if not isinstance(state.info, dict):
        raise TypeError(f"state.info must be a dict, got {type(state.info).__name__}")
    opt = state.opt_state
    updated = {i for i, k in enumerate(config.kinds) if k is not NoiseKind.FROZEN}
    if isinstance(opt, optim.OptState) and isinstance(opt.leaves, dict):
        missing = sorted(updated - set(opt.leaves))
        if missing:
            names = [spec.path_strings[i] for i in missing]
            raise ValueError(
                f"state.opt_state lacks the optimizer state of leaves {names} (the state of "
                "another tree or another config?)"
            )


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
        # shaped fitness is already bounded (|w| <= 1 or so): only sigma can bring the bound down
        if config.shaping == "none":
            raise ValueError(
                f"fitness is too large for shaping='none' and sigma={config.sigma}: the update "
                f"could reach {bound:.3g}, beyond what the leaves' dtype can hold (use a shaping "
                "such as 'centered_rank', rescale the fitness, or a larger sigma)"
            )
        raise ValueError(
            f"sigma={config.sigma} is too small for the leaves' dtype: with "
            f"shaping={config.shaping!r} the update could reach {bound:.3g}, beyond what it can "
            f"hold (use sigma >= {config.sigma * bound / limit:.2g})"
        )


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
    leaves, spec = _checked(params, state)
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
    update_norm = _checked_update_norm(updated, norms, state, leaves)
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
    return spec.unflatten(new_leaves), new_state  # the params' own containers (namedtuples)


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
    new_leaves: dict[int, Any], norms: dict[int, Any], state: ESState, leaves: list[Any]
) -> float:
    """The update's norm; ValueError naming the first leaf whose new values or update norm are
    not finite, before anything is returned: the caller's params and state stay as they were.
    The hint names the cause: params already non-finite, else sigma and lr (and a tiny eps)."""
    paths = state.spec.path_strings
    config = state.config

    def fail(what: str) -> ValueError:
        xp = namespace_of(leaves[0])
        bad = _first_non_finite({i: leaves[i] for i in new_leaves}, xp)
        if bad is not None:
            return ValueError(
                f"generation {state.generation}: params leaf '{paths[bad]}' held non-finite "
                "values (NaN or inf) before this update, so the update is not finite either; "
                "params and state are unchanged"
            )
        causes = f"sigma={config.sigma:g} and lr={config.lr:g}"
        fixes = "use a larger sigma or a smaller lr"
        eps = getattr(config.hyperparams, "eps", None)
        tiny = max(float(np.finfo(state.spec.dtypes[i]).tiny) for i in new_leaves)
        if eps is not None and eps < tiny:  # subnormal: mu / eps overflows where nu underflows
            causes = f"sigma={config.sigma:g}, lr={config.lr:g} and eps={eps:g}"
            fixes = f"use eps >= {tiny:.3g} (default 1e-8), a larger sigma or a smaller lr"
        return ValueError(
            f"generation {state.generation}: {what}; {causes} overflow the leaves' dtype; "
            f"params and state are unchanged ({fixes})"
        )

    sq = 0.0
    for i in sorted(norms):
        v = float(norms[i])
        if not math.isfinite(v):
            raise fail(f"the update of leaf '{paths[i]}' has a non-finite norm")
        sq += v
    if not math.isfinite(sq):
        raise fail("the update norm overflows")
    bad = _first_non_finite(new_leaves, namespace_of(leaves[0]))
    if bad is not None:
        raise fail(f"the new values of leaf '{paths[bad]}' are not finite")
    return math.sqrt(sq)


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
            order. "auto" (default): as many as keep the largest layer output near
            `evaluate.CHUNK_BYTES` (8 MiB), from the size the previous generation's layers
            produced (`state.info["layer_bytes_per_member"]`; the first generation, CuPy,
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
