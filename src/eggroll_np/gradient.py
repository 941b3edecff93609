"""The ES gradient estimate of one generation from its shaped fitness and its `GenerationNoise`.

g = 1/(N*sigma) * sum_i w_i * s_i * eps_(key(i)) (docs/noise-contract.md, "Update"), with the
weights first folded per unique key (w_k = sum over its members of w_i * s_i), so a low-rank leaf
costs one GEMM of (m, K*r) by (K*r, n) and a full-rank leaf one pass over its noise in chunks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import lowrank
from .config import NoiseKind
from .perturbation import GenerationNoise

__all__ = ["estimate"]


def estimate(noise: GenerationNoise, weights: np.ndarray) -> dict[int, Any]:
    """The ES gradient estimate per updated leaf.

    Args:
        noise: the generation's noise for the WHOLE population.
        weights: (N,) float64 shaped fitness (sign already set for maximize/minimize).

    Returns:
        leaf index -> g (leaf shape and dtype, noise.xp backend) for every non-frozen float
        leaf (int8 leaves have their own rule, `intupdate`).
    """
    if not noise.is_whole:
        raise ValueError("the gradient needs the whole population's noise, not a slice's")
    config = noise.config
    K = noise.keys.size
    w = np.bincount(noise.local, weights=weights * noise.signs, minlength=K)
    scale = 1.0 / (config.population * config.sigma)
    noise.prefetch_update()
    wk = noise.xp.asarray(w)  # float64 (the scale folds in before the cast), one upload on a GPU
    grads: dict[int, Any] = {}
    full_w: dict[str, Any] = {}  # dtype -> w in it on the backend: one upload for every leaf
    for leaf, kind in enumerate(config.kinds):
        if noise.spec.dtypes[leaf] == "int8":  # the integer rule updates these (`intupdate`)
            continue
        if kind is NoiseKind.LOWRANK:
            A, B = noise.factors(leaf)
            kept = (noise.rows, ("contract", leaf))  # the run's row: same kinds of arrays
            g = lowrank.contract(A, B, wk, scale / math.sqrt(config.rank), kept)
            grads[leaf] = g.reshape(noise.spec.shapes[leaf])  # ndim >= 3: the matrix view
        elif kind is NoiseKind.FULL:
            grads[leaf] = _full(noise, leaf, w, scale, full_w)
    return grads


def _full(
    noise: GenerationNoise, leaf: int, w: np.ndarray, scale: float, full_w: dict[str, Any]
) -> Any:
    # Chunks over keys (held noise when the forward made it, else regenerated chunk by chunk).
    # The first chunk's sum is g itself: 0 + s is s bit for bit (a fixed-order sum from +0 is
    # never -0), and one chunk (every small leaf) then costs no zeros and no add: fewer calls on
    # a GPU.
    xp = noise.xp
    dt = noise.spec.dtypes[leaf]
    wd = full_w.get(dt)
    if wd is None:
        wd = full_w[dt] = xp.asarray(w.astype(dt))
    g = None
    for c, keys, E in noise.full_chunks(leaf):
        wc = wd[c : c + keys.size]
        part = lowrank.contract_full(E, wc, 1.0, (noise.rows, ("contract_full", leaf)))
        if g is None:
            g = part
        else:
            g += part
        del E, part  # free this chunk before the next one is generated
    if g is None:  # no keys
        g = xp.zeros(noise.spec.shapes[leaf], dtype=dt)
    g *= scale
    return g
