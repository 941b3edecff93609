"""Helpers shared by the engine's tests: the noise contract evaluated densely, a fake CuPy, an
older checkpoint format."""

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

__all__ = [
    "fit_rank",
    "unit_noise",
    "FakeGpuArray",
    "patch_fake_cupy",
    "as_format_2",
    "as_format_3",
]


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


# The state fields of each optimizer, in the order format 2 wrote them ("opt/<field>/<leaf>").
_V2_FIELDS = {"sgd": (), "momentum": ("mu",), "adam": ("mu", "nu")}


def as_format_3(src: Path, dst: Path) -> None:
    """Copy the format-4 checkpoint `src` (float leaves only) to `dst` as format 3 wrote it:
    the same arrays, a config without int_sigma_shift and int_update_fraction."""
    with np.load(src) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    assert meta["format_version"] == 4
    del meta["config"]["int_sigma_shift"], meta["config"]["int_update_fraction"]
    meta["format_version"] = 3
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(dst, **arrays)


def as_format_2(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None] = lambda m: None) -> None:
    """Copy the format-4 checkpoint `src` (float leaves only) to `dst` as format 2 wrote it
    (written out here from the old layout, independently of the library): state arrays named
    "opt/<field>/<leaf>", the schedule as config fields lr_schedule, lr_final and
    lr_decay_steps, no integer-leaf settings; then `edit(meta)`."""
    with np.load(src) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    assert meta["format_version"] == 4
    config = meta["config"]
    del config["int_sigma_shift"], config["int_update_fraction"]
    trained = [i for i, k in enumerate(config["kinds"]) if k != "frozen"]
    names = [f"opt/{f}/{i}" for i in trained for f in _V2_FIELDS[config["optimizer"]]]
    for j, name in enumerate(names):
        arrays[name] = arrays.pop(f"opt/{j}")
    schedule = config.pop("schedule")
    config.update(
        lr_schedule=schedule["kind"], lr_final=schedule["final"], lr_decay_steps=schedule["steps"]
    )
    meta["format_version"] = 2
    edit(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(dst, **arrays)
