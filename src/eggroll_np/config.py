"""Run configuration: `NoiseKind`, `ESConfig`, `make_config` and per-leaf noise-kind resolution."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks, optim
from .noise import check_seed, matrix_shape
from .noise_table import MAX_TABLE
from .schedule import Schedule
from .shaping import SHAPINGS
from .tree import TreeSpec, path_str

__all__ = [
    "NoiseKind",
    "ESConfig",
    "make_config",
    "resolve_kinds",
    "noise_extents",
    "NOISE_MODES",
    "LowrankSpec",
    "optimized_leaves",
    "integer_leaves",
]

#: Values of `init`'s `noise`: low-rank EGGROLL perturbations or classic full-rank ES.
NOISE_MODES = ("lowrank", "full")


class NoiseKind(enum.Enum):
    """How a leaf is perturbed: rank-r factors, dense Gaussian noise, or not at all."""

    LOWRANK = "lowrank"
    FULL = "full"
    FROZEN = "frozen"


#: What `init`'s `lowrank` takes: None (2-D leaves are low-rank), a callable path -> bool /
#: NoiseKind / name, or a tree or dict of NoiseKind values (or names) by leaf path.
LowrankSpec = Callable[[str], "bool | NoiseKind | str"] | Mapping[Any, Any] | None


@dataclass(frozen=True)
class ESConfig:
    """Hyperparameters of a run (validated by `make_config`; use `eggroll_np.init` to build one).

    `kinds` holds the resolved NoiseKind of each leaf in canonical order; `hyperparams` the
    chosen optimizer's own hyperparameters (an `optim.SGD`, `optim.Momentum` or `optim.Adam`);
    `schedule` the lr schedule (`init`'s lr_schedule, lr_final and lr_decay_steps as one
    value; it also scales `int_update_fraction`); the other fields are the arguments of `init`.
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
    hyperparams: Any
    kinds: tuple[NoiseKind, ...]
    schedule: Schedule = Schedule()
    noise_table: int | None = None  # None: the default contract (checkpoints before it: None)
    int_sigma_shift: int = 2  # integer leaves' sigma is 2^-k (checkpoints before it: 2)
    int_update_fraction: float = 0.2  # integer leaves' alpha (checkpoints before it: 0.2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (kinds as their string values, hyperparams and schedule as dicts)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["hyperparams"] = dataclasses.asdict(self.hyperparams)
        d["schedule"] = self.schedule.to_dict()
        d["kinds"] = [k.value for k in self.kinds]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ESConfig:
        """Inverse of `to_dict`."""
        d = dict(d)
        d["schedule"] = Schedule(**d["schedule"])
        d["kinds"] = tuple(NoiseKind(k) for k in d["kinds"])
        d["hyperparams"] = optim.hyperparams(d["optimizer"], **d["hyperparams"])
        return cls(**d)


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


def resolve_kinds(spec: TreeSpec, lowrank: LowrankSpec, full: bool) -> tuple[NoiseKind, ...]:
    """The NoiseKind of every leaf from `lowrank` (None, callable or tree/dict by path).

    None gives LOWRANK to 2-D leaves and FULL to the others; a leaf with ndim >= 3 may be made
    LOWRANK explicitly (its matrix view (shape[0], prod(shape[1:])) is perturbed); `full`
    (noise="full" or rank=None) turns every LOWRANK into FULL (classic OpenAI-ES), keeping FROZEN
    leaves frozen.
    """
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
            k = NoiseKind.FULL
        if k is NoiseKind.LOWRANK and len(shape) < 2:
            raise ValueError(
                f"lowrank: leaf '{p}' has shape {shape}; only leaves with ndim >= 2 can be "
                "low-rank (ndim >= 3 uses the matrix view (shape[0], prod(shape[1:])))"
            )
        kinds.append(k)
    return tuple(kinds)


def noise_extents(
    shapes: Sequence[tuple[int, ...]], kinds: Sequence[NoiseKind], rank: int | None
) -> list[int]:
    """Values each leaf reads per member key: (m + n) * r for a low-rank leaf (its factors A
    then B, (m, n) its matrix view), size for a full-rank leaf, 0 for a frozen one."""
    out = []
    for shape, kind in zip(shapes, kinds, strict=True):
        if kind is NoiseKind.LOWRANK:
            m, n = matrix_shape(shape)
            out.append((m + n) * int(rank or 1))
        elif kind is NoiseKind.FULL:
            out.append(math.prod(shape))
        else:
            out.append(0)
    return out


def _check_noise_table(value: Any, spec: TreeSpec, kinds: Sequence[NoiseKind], rank: Any) -> Any:
    """None, or an int T with (largest per-key read) <= T <= MAX_TABLE."""
    if value is None:
        return None
    need = max([1, *noise_extents(spec.shapes, kinds, rank)])
    if need > MAX_TABLE:
        raise ValueError(
            f"noise_table cannot serve this tree: a leaf reads {need} values per member, more "
            f"than the largest table (2^{MAX_TABLE.bit_length() - 1} values)"
        )
    value = _checks.integer("noise_table", value, 1)
    if not need <= value <= MAX_TABLE:
        raise ValueError(
            f"noise_table must be in [{need}, 2^{MAX_TABLE.bit_length() - 1}] (at least the "
            f"largest leaf's {need} values per member; at most 4 GiB of float32), got {value}"
        )
    return value


def optimized_leaves(config: ESConfig, spec: TreeSpec) -> list[int]:
    """Indices of the leaves the optimizer updates: the non-frozen float leaves."""
    return [
        i
        for i, (k, d) in enumerate(zip(config.kinds, spec.dtypes, strict=True))
        if k is not NoiseKind.FROZEN and d != "int8"
    ]


def integer_leaves(config: ESConfig, spec: TreeSpec) -> list[int]:
    """Indices of the non-frozen int8 leaves (updated by the integer rule, `intupdate`)."""
    return [
        i
        for i, (k, d) in enumerate(zip(config.kinds, spec.dtypes, strict=True))
        if k is not NoiseKind.FROZEN and d == "int8"
    ]


def _check_integer_leaves(
    spec: TreeSpec, kinds: tuple[NoiseKind, ...], rank: int | None, antithetic: bool
) -> None:
    """Integer leaves need antithetic pairs (the update compares pair members) and, when
    low-rank, a rank that is a power of 4 (the shift h = log4(r) replaces / sqrt(r))."""
    for p, d, kind in zip(spec.path_strings, spec.dtypes, kinds, strict=True):
        if d != "int8" or kind is NoiseKind.FROZEN:
            continue
        if not antithetic:
            raise ValueError(
                f"int8 leaf '{p}' needs antithetic=True: the integer update compares the two "
                "members of each antithetic pair"
            )
        r = int(rank or 1)
        if kind is NoiseKind.LOWRANK and (r & (r - 1) or (r.bit_length() - 1) % 2):
            raise ValueError(
                f"rank must be a power of 4 (1, 4, 16, ...) with low-rank int8 leaf '{p}', "
                f"got {r}"
            )


def _check_rank(rank: int, spec: TreeSpec, kinds: tuple[NoiseKind, ...]) -> None:
    """rank <= min(m, n) of every low-rank leaf's matrix view: more only adds redundant noise
    (and factors bigger than the matrix)."""
    for p, shape, kind in zip(spec.path_strings, spec.shapes, kinds, strict=True):
        if kind is NoiseKind.LOWRANK:
            m, n = shape[0], math.prod(shape[1:])
            if rank > min(m, n):
                raise ValueError(
                    f"rank ({rank}) must be <= min(m, n) = {min(m, n)} of low-rank leaf '{p}' "
                    f"(matrix view {m}x{n})"
                )


def _check_eps(hyperparams: Any, spec: TreeSpec, kinds: tuple[NoiseKind, ...]) -> None:
    """Adam's eps must not round to 0 in a trained leaf's dtype: sqrt(nu) + eps would be 0 where
    a gradient entry is 0, and the update 0 / 0."""
    eps = getattr(hyperparams, "eps", None)
    if eps is None:
        return
    for p, dt, kind in zip(spec.path_strings, spec.dtypes, kinds, strict=True):
        dtype = np.dtype(dt)
        if kind is not NoiseKind.FROZEN and dtype.kind == "f" and dtype.type(eps) == 0:
            raise ValueError(
                f"eps={eps:g} is 0 in {dt} (leaf '{p}'): Adam would divide 0 by 0 where a "
                f"gradient entry is 0; use eps >= {float(np.finfo(dt).tiny):.3g} (default 1e-8)"
            )


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
    lr_schedule: str = "constant",
    lr_final: float | None = None,
    lr_decay_steps: int | None = None,
    noise_table: int | None = None,
    int_sigma_shift: int = 2,
    int_update_fraction: float = 0.2,
    **hyperparams: Any,
) -> ESConfig:
    """Validate every hyperparameter (the one place that does) and resolve per-leaf noise kinds.

    `hyperparams` are the chosen optimizer's own (momentum for "momentum"; b1, b2, eps for
    "adam"); one that belongs to another optimizer, or to none, is an error naming it.

    Raises:
        TypeError, ValueError: an invalid argument (the message names it).
    """
    # member keys are the 32-bit counter word of the noise contract
    population = _checks.integer("population", population, 1, 2**32)
    antithetic = _checks.boolean("antithetic", antithetic)
    if antithetic and population % 2:
        raise ValueError(f"population must be even with antithetic=True, got {population}")
    noise = _checks.choice("noise", noise, NOISE_MODES)
    if rank is not None:
        rank = _checks.integer("rank", rank, 1)
    shaping = _checks.choice("shaping", shaping, SHAPINGS)
    if group_size is not None:
        group_size = _checks.integer("group_size", group_size, 1)
        if shaping != "group_zscore":
            raise ValueError(
                f"group_size is only used by shaping='group_zscore', got shaping={shaping!r}"
            )
        if group_size < 2:
            raise ValueError(
                "group_size must be >= 2 with shaping='group_zscore' (a group of one has a "
                "z-score of 0: a zero update)"
            )
        if population % group_size:
            raise ValueError(f"group_size ({group_size}) must divide the population ({population})")
    elif shaping == "group_zscore":
        raise ValueError("shaping='group_zscore' needs group_size")
    schedule = Schedule(lr_schedule, lr_final, lr_decay_steps)
    full = noise == "full" or rank is None
    kinds = resolve_kinds(spec, lowrank, full)
    if rank is not None:
        _check_rank(rank, spec, kinds)
    int_sigma_shift = _checks.integer("int_sigma_shift", int_sigma_shift, 0, 16)
    alpha = _checks.real("int_update_fraction", int_update_fraction, 0.0, True, 1.0)
    _check_integer_leaves(spec, kinds, rank, antithetic)
    hyperparams = optim.hyperparams(optimizer, **hyperparams)
    _check_eps(hyperparams, spec, kinds)
    return ESConfig(
        population=population,
        sigma=_checks.real("sigma", sigma, 0.0, True),
        lr=_checks.real("lr", lr, 0.0),
        rank=rank,
        seed=check_seed(seed),
        antithetic=antithetic,
        noise_reuse=_checks.integer("noise_reuse", noise_reuse, 1),
        optimizer=optim.get(optimizer).name,
        shaping=shaping,
        group_size=group_size,
        weight_decay=_checks.real("weight_decay", weight_decay, 0.0),
        maximize=_checks.boolean("maximize", maximize),
        noise=noise,
        hyperparams=hyperparams,
        kinds=kinds,
        schedule=schedule,
        noise_table=_check_noise_table(noise_table, spec, kinds, rank),
        int_sigma_shift=int_sigma_shift,
        int_update_fraction=alpha,
    )
