"""A batched fitness over a Population in member chunks, as `step(..., batched=True, chunk=)` runs it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import _checks
from .population import Population

__all__ = ["CHUNK_BYTES", "INFO_KEY", "check_chunk", "members_per_chunk", "evaluate"]

#: Bytes of one layer's activations a chunk aims at: they stay in the caches from one layer to
#: the next (measured on the 2-core machines, 1-2 MiB of L2 per core: sup 47 -> 40 ms a
#: generation in chunks of 64 members, digits 47 -> 38 ms in chunks of 128).
CHUNK_BYTES = 8 << 20
#: The `ESState.info` entry where `step` keeps a generation's largest layer output per member.
INFO_KEY = "layer_bytes_per_member"


def check_chunk(chunk: Any) -> int | str | None:
    """`chunk` as `step` takes it: "auto", None, or an int >= 1."""
    if chunk is None or (isinstance(chunk, str) and chunk == "auto"):
        return chunk
    if isinstance(chunk, str):
        raise ValueError(f"chunk must be 'auto', None or an int >= 1, got {chunk!r}")
    return _checks.integer("chunk", chunk, 1)


def members_per_chunk(bytes_per_member: int, budget: int = CHUNK_BYTES) -> int:
    """Members whose widest layer output fits `budget` bytes together (at least 1)."""
    return max(1, budget // max(1, int(bytes_per_member)))


def _values(value: Any, members: slice) -> Any:
    """One chunk's fitness as a host (k,) array (masks kept); `tell` checks the values."""
    k = members.stop - members.start
    if not np.ma.isMaskedArray(value):
        value = _checks.as_array(value, "fitness")  # a framework's tensor (DLPack)
        if hasattr(value, "__cuda_array_interface__"):
            value = value.get()
        try:
            value = np.asarray(value)
        except (TypeError, ValueError) as exc:  # ragged nested lists
            raise TypeError(f"fitness must be a numeric array of shape ({k},): {exc}") from None
    if value.shape != (k,):
        raise ValueError(
            f"fitness_fn returned shape {value.shape} for members [{members.start}, "
            f"{members.stop}) (chunk of {k}); a batched fitness returns one value per member of "
            "the Population it is given (pass chunk=None if it needs the whole population)"
        )
    return value


def evaluate(
    pop: Population, fitness_fn: Callable[[Population], Any], chunk: Any, layer_bytes: int = 0
) -> Any:
    """fitness_fn over `pop`, whole (chunk=None or >= pop.size) or in chunks of `chunk` members
    from member 0 on, the values concatenated in member order; each member is evaluated once.

    chunk="auto" on NumPy: chunks of `members_per_chunk(layer_bytes)`, where `layer_bytes` is
    the largest layer output per member (`Population.layer_bytes_per_member`) of the previous
    generation's forward (`step` keeps it in `ESState.info`, so a resumed run chunks the same);
    0 (the first generation, or no layer ran) is the whole population. On CuPy "auto" is None:
    the GPU has the memory, and every chunk costs launches.

    Returns:
        the fitness as fitness_fn returned it (whole), or a (N,) host array (chunks).
    """
    chunk = check_chunk(chunk)
    if chunk == "auto":
        on_numpy = pop.noise.xp is np
        chunk = members_per_chunk(layer_bytes) if on_numpy and layer_bytes > 0 else None
    if chunk is None or chunk >= pop.size:
        return fitness_fn(pop)
    pop.noise.prefetch(full=True)  # once for all: every chunk reads views of it
    bounds = [(s, min(pop.size, s + chunk)) for s in range(0, pop.size, chunk)]
    parts = [_values(fitness_fn(pop.slice(a, b)), slice(a, b)) for a, b in bounds]
    if any(np.ma.isMaskedArray(p) for p in parts):
        return np.ma.concatenate(parts)
    return np.concatenate(parts)
