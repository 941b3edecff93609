"""Helpers shared by the engine's tests: the noise contract evaluated densely, a fake CuPy, an
edited checkpoint."""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from eggroll_np import noise, tree
from eggroll_np.config import NoiseKind

__all__ = ["fit_rank", "unit_noise", "FakeGpuArray", "patch_fake_cupy", "rewrite_meta"]


def unit_noise(
    seed: int, leaf: int, key: int, epoch: int, shape: tuple[int, ...], kind: NoiseKind, rank: int
) -> np.ndarray:
    """eps of one (leaf, member key, epoch) per docs/noise-contract.md, as dense float64."""
    if kind is NoiseKind.LOWRANK:
        A, B = noise.factors(seed, leaf, [key], epoch, shape, rank)
        eps = A[0].astype(np.float64) @ B[0].astype(np.float64).T / math.sqrt(rank)
        return eps.reshape(shape)  # ndim >= 3: the matrix view (shape[0], prod(shape[1:]))
    if kind is NoiseKind.FULL:
        eps = noise.normals(seed, leaf, key, epoch, math.prod(shape))
        return eps.astype(np.float64).reshape(shape)
    return np.zeros(shape)


class FakeGpuArray(np.ndarray):
    """A NumPy array that `patch_fake_cupy` makes eggroll_np.tree take for a CuPy array."""


def patch_fake_cupy(monkeypatch: Any) -> None:
    """Make tree validation see FakeGpuArray leaves as CuPy arrays (mixed-backend tests)."""
    fake = types.SimpleNamespace(__name__="cupy", ndarray=FakeGpuArray)
    monkeypatch.setattr(tree, "is_cupy_array", lambda x: isinstance(x, FakeGpuArray))
    monkeypatch.setattr(tree, "namespace_of", lambda x: fake if isinstance(x, FakeGpuArray) else np)


def fit_rank(rank: int, params: Any, lowrank: dict[str, Any] | None = None) -> int:
    """`rank`, lowered to what init accepts: at most min(m, n) of the matrix view of every leaf
    that is low-rank (those `lowrank` marks "lowrank", or 2-D leaves it does not name)."""
    leaves, paths, _ = tree.flatten(params)
    lowrank = lowrank or {}
    for leaf, path in zip(leaves, paths, strict=True):
        kind = lowrank.get(tree.path_str(path))
        if kind == "lowrank" or (kind is None and leaf.ndim == 2):
            rank = min(rank, leaf.shape[0], math.prod(leaf.shape[1:]))
    return rank


def rewrite_meta(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Copy the checkpoint `src` to `dst` (a valid .npz) with its JSON meta changed in place by
    `edit(meta)`: a file as an older version wrote it, for `load` to read."""
    with np.load(src) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    edit(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(dst, **arrays)
