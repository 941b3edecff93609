"""The integer update of int8 leaves: pair signs, the threshold tau, one step per entry.

Per antithetic pair j (members 2j, 2j+1, noise key j) c_j = sign(f_2j - f_2j+1) (negated when
minimising); Z = sum_j c_j E_j exactly (E_j = e_j, or a_j @ b_j.T as ONE integer contraction for a
low-rank leaf); with P pairs of c_j != 0 and v the standard deviation of one entry of E_j (16, or
256 sqrt(r)), tau = ceil(Phi^-1(1 - alpha/2) v sqrt(P)) and
q_new = clip(q + sign(Z) [abs(Z) >= tau]). Under pure noise about a fraction alpha of the entries
moves. The int64 reference of each piece is in `intmath`; docs/noise-contract.md ("Integer
leaves") states the rule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import intmath, intops
from .backend import namespace_of
from .config import ESConfig, NoiseKind, integer_leaves
from .perturbation import GenerationNoise

__all__ = ["pair_signs", "update_fraction", "entry_std", "step_leaf", "update", "update_tree"]


def pair_signs(noise: GenerationNoise, fitness: np.ndarray, maximize: bool = True) -> np.ndarray:
    """c_k of every unique noise key: sign(f(plus) - f(minus)) of its antithetic pair, int8 (K,).

    Args:
        noise: the generation's noise for the whole population (antithetic).
        fitness: (N,) float64 raw fitness (not shaped: only the order within a pair counts).
        maximize: False negates the signs (fitness is a loss).
    """
    d = np.bincount(noise.local, weights=noise.signs * fitness, minlength=noise.keys.size)
    c = np.sign(d).astype(np.int8)
    return c if maximize else -c


def update_fraction(config: ESConfig, count: int) -> float:
    """alpha of update `count` (1 for the first): int_update_fraction scaled by the lr
    schedule's factor schedule.lr(lr, count) / lr (1 when lr is 0), clipped to [0, 1]."""
    alpha = config.int_update_fraction
    if config.lr > 0:
        alpha *= config.schedule.lr(config.lr, count) / config.lr
    return min(max(alpha, 0.0), 1.0)


def entry_std(kind: NoiseKind, rank: int | None) -> float:
    """v: the standard deviation of one entry of E_j (16 full-rank, 256 sqrt(r) low-rank)."""
    return 256.0 * math.sqrt(int(rank or 1)) if kind is NoiseKind.LOWRANK else 16.0


def _tau(alpha: float, v: float, P: int) -> int:
    return 0 if alpha >= 1.0 else intmath.tau(alpha, v, P)


def step_leaf(q: Any, Z: Any, tau: int) -> Any:
    """clip(q + sign(Z) [abs(Z) >= tau], -127, 127) as int8 of q's shape (Z any integer dtype,
    q's backend): `intmath.threshold` on NumPy or CuPy arrays."""
    xp = namespace_of(q)
    Z = Z.reshape(q.shape)
    step = xp.sign(Z).astype(np.int16) * (xp.abs(Z) >= tau)
    return xp.clip(q.astype(np.int16) + step, -127, 127).astype(np.int8)


def _full_sum(noise: GenerationNoise, leaf: int, c: np.ndarray) -> Any:
    """Z = sum_k c_k e_k of a full-rank int8 leaf, chunk by chunk of keys, int64."""
    xp = noise.xp
    Z = xp.zeros(noise.spec.shapes[leaf], dtype=np.int64)
    for start, keys, E in noise.full_chunks(leaf):
        ck = xp.asarray(c[start : start + keys.size].astype(np.int64))
        Z += xp.tensordot(ck, E.astype(np.int64), axes=1)
    return Z


def update(
    noise: GenerationNoise, fitness: np.ndarray, leaves: dict[int, Any], count: int
) -> tuple[dict[int, Any], int]:
    """New values of the int8 leaves after one generation.

    Args:
        noise: the generation's noise for the whole population.
        fitness: (N,) float64 raw fitness.
        leaves: leaf index -> current int8 array (the non-frozen int8 leaves).
        count: the update's number (1 for the first), for the schedule of alpha.

    Returns:
        (leaf index -> new int8 array, number of entries that moved).
    """
    config = noise.config
    c = pair_signs(noise, fitness, config.maximize)
    P = int(np.count_nonzero(c))
    alpha = update_fraction(config, count)
    new: dict[int, Any] = {}
    moved = 0
    for i, q in leaves.items():
        kind = config.kinds[i]
        if P == 0 or alpha <= 0.0:
            new[i] = q.copy()
            continue
        tau = _tau(alpha, entry_std(kind, config.rank), P)
        if kind is NoiseKind.LOWRANK:
            a, b = noise.factors(i)
            Z = intops.contract(a, b, noise.xp.asarray(c))
        else:
            Z = _full_sum(noise, i, c)
        new[i] = step_leaf(q, Z, tau)
        moved += int((new[i] != q).sum())
    return new, moved


def update_tree(
    noise: GenerationNoise, fitness: np.ndarray, leaves: list[Any], count: int
) -> tuple[dict[int, Any], int | None]:
    """`update` of every non-frozen int8 leaf of a tree (`leaves` in canonical order):
    (leaf index -> new int8 array, entries moved), or ({}, None) when the tree has none."""
    if "int8" not in noise.spec.dtypes:  # a float tree (the usual one): no pass over its kinds
        return {}, None
    ids = integer_leaves(noise.config, noise.spec)
    if not ids:
        return {}, None
    return update(noise, fitness, {i: leaves[i] for i in ids}, count)
