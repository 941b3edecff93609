"""Fitness shaping: pure functions from raw fitness (N,) float64 to weights (N,) float64.

Shaping makes the update invariant to the scale (zscore) or to any monotone transform
(centered_rank; Salimans et al. 2017, "Evolution Strategies as a Scalable Alternative to RL") of
the fitness. `SHAPINGS` is the registry that `ESConfig` validates against and tests loop over.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import _checks

__all__ = ["none", "centered_rank", "zscore", "group_zscore", "SHAPINGS", "shape_fitness"]


def none(f: np.ndarray) -> np.ndarray:
    """Identity: the raw fitness as float64 (a copy)."""
    return np.array(f, dtype=np.float64)


def centered_rank(f: np.ndarray) -> np.ndarray:
    """Ranks scaled to [-0.5, 0.5]: the worst member gets -0.5, the best +0.5.

    Tied values get the average of their ranks, so the weights sum to zero and the result is
    exactly antisymmetric under f -> -f. A population of one gets 0.
    """
    f = np.asarray(f, dtype=np.float64)
    n = f.shape[0]
    if n < 2:
        return np.zeros(n)
    s = np.array(f)  # a copy, sorted in place: np.sort's own copy without its wrappers
    s.sort()
    # A member's tie group spans ranks first..last-1 of the sorted values; its mean rank
    # (first + last - 1) / 2 is a half-integer, exact in float64, so the weights have the same
    # bits as from np.unique's groups (which costs several times more on small populations).
    # NaN sorts last in both and -0.0 ties with 0.0 in both.
    first = s.searchsorted(f, side="left")
    first += s.searchsorted(f, side="right")
    first -= 1
    # (a / 2) / (n - 1) is a / (2 (n - 1)) rounded once either way: a / 2 and 2 (n - 1) are exact
    ranks = first / (2.0 * (n - 1))
    ranks -= 0.5
    return ranks


def zscore(f: np.ndarray) -> np.ndarray:
    """(f - mean) / std over the population (ddof 0); all zeros when the std is 0."""
    f = np.asarray(f, dtype=np.float64)
    return group_zscore(f, f.shape[0]) if f.size else f.copy()


# A spread below this fraction of max|f| is rounding noise (e.g. the mean of three 0.1s is not
# exactly 0.1), so such a group counts as constant and gets zeros, not amplified noise.
_FLAT = 64 * np.finfo(np.float64).eps


def group_zscore(f: np.ndarray, group_size: int) -> np.ndarray:
    """zscore within consecutive groups of `group_size` members (a constant group gets zeros).

    Args:
        f: (N,) fitness, N a multiple of group_size.
        group_size: members per group.
    """
    f = np.asarray(f, dtype=np.float64)
    if group_size < 1 or f.shape[0] % group_size:
        raise ValueError(
            f"group_size must be >= 1 and divide the population ({f.shape[0]}), got {group_size}"
        )
    g = f.reshape(-1, group_size)
    # zscore is scale invariant: dividing by max|f| first keeps squares of huge fitness finite.
    scale = np.abs(g).max(axis=1, keepdims=True)
    g = g / np.where(scale == 0.0, 1.0, scale)
    std = g.std(axis=1, keepdims=True)
    flat = std <= _FLAT
    z = (g - g.mean(axis=1, keepdims=True)) / np.where(flat, 1.0, std)
    return np.where(flat, 0.0, z).reshape(-1)


SHAPINGS: dict[str, Callable[..., np.ndarray]] = {
    "none": none,
    "centered_rank": centered_rank,
    "zscore": zscore,
    "group_zscore": group_zscore,
}
"""Shaping name -> function; group_zscore also takes group_size."""


def shape_fitness(f: np.ndarray, name: str, group_size: int | None = None) -> np.ndarray:
    """Apply the shaping called `name` (validated by ESConfig) to fitness f (N,) -> (N,) float64."""
    _checks.choice("shaping", name, SHAPINGS)
    if name == "group_zscore":
        if group_size is None:
            raise ValueError("shaping='group_zscore' needs group_size")
        return group_zscore(f, group_size)
    return SHAPINGS[name](f)
