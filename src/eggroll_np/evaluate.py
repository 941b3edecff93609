"""A batched fitness over a Population in member chunks, as `step(..., batched=True, chunk=)` runs it."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _checks
from .population import Population

__all__ = [
    "CHUNK_BYTES", "LARGEST_PRIVATE_LLC", "INFO_KEY", "chunk_budget", "check_chunk",
    "members_per_chunk", "evaluate",
]  # fmt: skip

#: Bytes of one chunk's widest layer output where the processor's last-level cache is unknown
#: (the 2-core Intel machines' measured optimum: sup 47 -> 40 ms a generation in chunks of 64).
CHUNK_BYTES = 8 << 20
#: A last-level cache larger than this is a server socket's mesh cache (hundreds of MiB shared by
#: every tenant, slower per core than a chiplet's L3): the budget is then CHUNK_BYTES. Measured
#: on a 2-core Intel Xeon VM reporting a 480 MiB L3 (2 threads, 5 alternating rounds): sup at
#: population 256 (32 MiB a layer) 43.7 ms a generation whole, 40.5 in chunks of 128 (16 MiB),
#: 36.9 in chunks of 64 (8 MiB); a 32 MiB AMD chiplet L3 held the whole 32 MiB faster.
LARGEST_PRIVATE_LLC = 64 << 20
_CACHES = "/sys/devices/system/cpu/cpu0/cache"
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}

#: The `ESState.info` entry where `step` keeps a generation's largest layer output per member.
INFO_KEY = "layer_bytes_per_member"


def check_chunk(chunk: Any) -> int | str | None:
    """`chunk` as `step` takes it: "auto", None, or an int >= 1."""
    if chunk is None or (isinstance(chunk, str) and chunk == "auto"):
        return chunk
    if isinstance(chunk, str):
        raise ValueError(f"chunk must be 'auto', None or an int >= 1, got {chunk!r}")
    return _checks.integer("chunk", chunk, 1)


@functools.lru_cache(maxsize=1)
def chunk_budget() -> int:
    """Bytes of one chunk's widest layer output under chunk="auto": the processor's last-level
    cache (Linux sysfs) up to LARGEST_PRIVATE_LLC, else CHUNK_BYTES.

    A population's layer output that fits the last-level cache stays there for the next layer;
    one that does not goes to memory and back. Measured on a 2-core AMD EPYC (32 MiB L3, one
    thread, medians of alternating runs): sup at population 256 (32 MiB a layer) 392 ms whole
    against 449 ms in chunks of 64 (8 MiB); at population 1024 (128 MiB) chunks of 256 (32 MiB)
    took 0.71 of the whole forward's time and chunks of 64 0.80 (docs/benchmarks.md).
    """
    best = (0, 0)
    try:
        with os.scandir(_CACHES) as entries:
            names = sorted(e.path for e in entries if e.name.startswith("index"))
        for path in names:
            with open(os.path.join(path, "type")) as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(os.path.join(path, "level")) as f:
                level = int(f.read())
            with open(os.path.join(path, "size")) as f:
                text = f.read().strip()
            size = int(text[:-1]) * _UNITS[text[-1]] if text[-1:] in _UNITS else int(text)
            best = max(best, (level, size))
    except (OSError, ValueError):
        return CHUNK_BYTES
    if best[1] > LARGEST_PRIVATE_LLC:  # a socket-wide mesh cache: CHUNK_BYTES measured faster
        return CHUNK_BYTES
    return best[1] if best[1] >= CHUNK_BYTES else CHUNK_BYTES


def members_per_chunk(bytes_per_member: int, budget: int | None = None) -> int:
    """Members whose widest layer output fits `budget` bytes together (at least 1); budget
    None: `chunk_budget()`."""
    budget = chunk_budget() if budget is None else budget
    return max(1, budget // max(1, int(bytes_per_member)))


def _values(value: Any, members: slice) -> Any:
    """One chunk's fitness as a host (k,) array (masks kept); `tell` checks the values."""
    k = members.stop - members.start
    if not np.ma.isMaskedArray(value):
        value = _checks.host_fitness(value, k)
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

    chunk="auto" on NumPy: chunks of `members_per_chunk(layer_bytes)` (within `chunk_budget()`,
    the last-level cache), where `layer_bytes` is
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
