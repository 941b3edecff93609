"""Checks of a generation's update: its range before it is made, finiteness after, and hints.

Each failure is a ValueError raised before `tell` returns anything, so the caller's params and
state stay as they were; the hint names the cause (non-finite params, sigma and lr, a tiny eps).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .backend import namespace_of, to_numpy
from .config import ESConfig, NoiseKind
from .tree import TreeSpec

__all__ = ["check_range", "checked_norm", "first_non_finite"]

# |z| <= sqrt(-2 ln 2^-24) ~ 5.77 for the contract's normals (u >= 2^-24), so a unit low-rank
# entry is at most 5.77^2 * r / sqrt(r) and a full-rank one at most 5.77.
_MAX_NORMAL = math.sqrt(-2.0 * math.log(2.0**-24))


def first_non_finite(leaves: dict[int, Any], xp: Any) -> int | None:
    """The smallest index of `leaves` holding a NaN or inf, or None (one device read on a GPU)."""
    if not leaves:
        return None
    order = sorted(leaves)
    if xp is np:  # on the host each answer is at hand: no stack of them to build first
        return next((i for i in order if not np.isfinite(leaves[i]).all()), None)
    finite = to_numpy(xp.stack([xp.isfinite(leaves[i]).all() for i in order]))
    return None if finite.all() else order[int(np.flatnonzero(~finite)[0])]


@functools.lru_cache(maxsize=64)
def _limits(kinds: tuple[NoiseKind, ...], dtypes: tuple[str, ...], rank: int | None) -> Any:
    """(largest |entry| of a unit perturbation, sqrt of the smallest dtype maximum) over the
    float leaves that move, or None without any: per tree and config, not per generation."""
    moving = [
        (k, d)
        for k, d in zip(kinds, dtypes, strict=True)
        if k is not NoiseKind.FROZEN and d != "int8"  # int8 leaves move by one step at most
    ]
    if not moving:
        return None
    eps_max = _MAX_NORMAL
    if any(k is NoiseKind.LOWRANK for k, _ in moving):
        eps_max = _MAX_NORMAL**2 * math.sqrt(rank)
    # sqrt(max): the optimizer squares g (adam), which must not overflow either.
    return eps_max, min(math.sqrt(float(np.finfo(d).max)) for _, d in moving)


def check_range(w: np.ndarray, config: ESConfig, spec: TreeSpec) -> None:
    """ValueError if the shaped fitness could overflow the update (only possible unshaped)."""
    limits = _limits(config.kinds, spec.dtypes, config.rank)
    if limits is None:
        return
    eps_max, limit = limits
    n = config.population
    # centered_rank's |w_i| <= 0.5 sum to at most n / 2 (rounding is monotone): a run whose
    # bound for n / 2 fits never fails below, whatever the fitness (the same operations)
    if config.shaping == "centered_rank" and n / 2 / (n * config.sigma) * eps_max <= limit:
        return
    bound = float(np.add.reduce(np.abs(w))) / (n * config.sigma) * eps_max
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


def checked_norm(
    new_leaves: dict[int, Any], norms: dict[int, Any], state: Any, leaves: list[Any]
) -> float:
    """The update's norm; ValueError naming the first leaf whose new values or update norm are
    not finite, before anything is returned: the caller's params and state stay as they were.
    The hint names the cause: params already non-finite, else sigma and lr (and a tiny eps)."""
    paths = state.spec.path_strings
    config = state.config

    def fail(what: str) -> ValueError:
        xp = namespace_of(leaves[0])
        bad = first_non_finite({i: leaves[i] for i in new_leaves}, xp)
        if bad is not None:
            return ValueError(
                f"generation {state.generation}: params leaf '{paths[bad]}' held non-finite "
                "values (NaN or inf) before this update, so the update is not finite either; "
                "params and state are unchanged"
            )
        causes = f"sigma={config.sigma:g} and lr={config.lr:g}"
        fixes = "use a larger sigma or a smaller lr"
        eps = getattr(config.hyperparams, "eps", None)
        floats = [d for d in (np.dtype(state.spec.dtypes[i]) for i in new_leaves) if d.kind == "f"]
        tiny = max((float(np.finfo(d).tiny) for d in floats), default=0.0)
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
    # A finite squared norm of new - theta (float64) means every new value is finite: inf and
    # NaN reach the norm. Only leaves whose step reported no norm need a pass of their own.
    unmeasured = {i: x for i, x in new_leaves.items() if i not in norms}
    bad = first_non_finite(unmeasured, namespace_of(leaves[0]))
    if bad is not None:
        raise fail(f"the new values of leaf '{paths[bad]}' are not finite")
    return math.sqrt(sq)
