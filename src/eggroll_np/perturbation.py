"""`GenerationNoise`: the noise of one (seed, epoch, rank) for a set of members, as a value.

Member i's perturbation is `s_i * eps_(key(i))` (docs/noise-contract.md). A GenerationNoise holds,
for the UNIQUE member keys of its members only, the low-rank factors (K, m, r), (K, n, r) of every
low-rank leaf and, once asked for, the dense full-rank noise `(K, *shape)` of full-rank leaves. Both
the forward (`Population`) and the update (`gradient.estimate`) read the same arrays, so one
generation's noise is generated once. It is never saved: noise is a pure function of its
counters, so a new GenerationNoise gives the same bits. Reusing one across the generations of an
epoch (noise_reuse > 1) is explicit: pass it to `eggroll_np.ask(..., noise=...)`. Its NumPy
arrays are read-only: the forward and the update must read the same values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from . import intmath as _intmath
from . import noise as _noise
from . import noise_table as _table
from .config import ESConfig, NoiseKind, noise_extents
from .tree import TreeSpec

__all__ = ["GenerationNoise", "FULL_CHUNK_VALUES", "PREFETCH_FULL_VALUES"]

#: Full-rank noise is generated/contracted in chunks of at most this many values (per leaf), so
#: the black-box path never holds all N dense perturbations of a large leaf.
FULL_CHUNK_VALUES = 1 << 21
#: Full-rank leaves whose noise for all unique keys is at most this many values are generated
#: together with the low-rank factors when a batched forward starts (biases, norms).
PREFETCH_FULL_VALUES = 1 << 22


_F32 = np.dtype(np.float32)


def _as_leaf_dtype(z: Any, dtype: str) -> Any:
    """float32 normals in a leaf's dtype: cast for float leaves, `intmath.quantize`d (16 z
    rounded to even, clipped to [-127, 127]) for int8 leaves."""
    if dtype == "int8":
        return z if z.dtype == np.int8 else _intmath.quantize(z)
    if dtype == "float32" and z.dtype == _F32:  # the normals' own dtype: nothing to cast
        return z
    return z.astype(dtype, copy=False)


def _read_only(value: Any) -> Any:
    """`value` (an array or a tuple of arrays) with NumPy arrays made read-only: the forward and
    the update read the same held noise, so a write through `pop.noise` would change `tell`'s
    result. (CuPy arrays have no such flag.)"""
    for a in value if isinstance(value, tuple) else (value,):
        if isinstance(a, np.ndarray):
            a.setflags(write=False)
    return value


class _Run:
    """What the GenerationNoise of every generation of one run (one spec and config object,
    one backend) shares: `_make`'s plans with their checked reads, and the dispatch rows of
    the run's operations (`dispatch.select_kept`: its arrays have the same types, dtypes and
    layouts every generation)."""

    __slots__ = ("spec", "config", "xp", "plans", "rows")

    def __init__(self, spec: TreeSpec, config: ESConfig, xp: ModuleType) -> None:
        self.spec, self.config, self.xp = spec, config, xp  # held: their ids are not reused
        self.plans: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.rows: dict[Any, Any] = {}


_RUNS: dict[tuple[int, int, int], _Run] = {}


def _run_of(spec: TreeSpec, config: ESConfig, xp: ModuleType) -> _Run:
    key = (id(spec), id(config), id(xp))
    run = _RUNS.get(key)
    if run is None:
        if len(_RUNS) >= 64:
            _RUNS.clear()
        run = _RUNS[key] = _Run(spec, config, xp)
    return run


@functools.lru_cache(maxsize=16)
def _whole(population: int, antithetic: bool) -> tuple[np.ndarray, ...]:
    """(members, signs, member keys, sorted unique keys, each member's position in them) of a
    whole population: read-only, so every generation of a run shares one set (np.unique each
    generation is most of a tiny generation's noise set-up)."""
    members = np.arange(population)
    signs = _noise.signs(population, antithetic)
    member_keys = _noise.member_keys(population, antithetic)
    keys, local = np.unique(member_keys, return_inverse=True)
    return _read_only((members, signs, member_keys, keys, local.reshape(-1)))


class GenerationNoise:
    """The noise of epoch `epoch` of a run for members `members` (all of them by default).

    Attributes:
        spec, config: the run's tree spec and ESConfig.
        epoch: noise epoch (generation // noise_reuse).
        xp: numpy or cupy, the backend of every array held.
        members: (n,) int member indices covered.
        signs: (n,) float32 s_i of each covered member.
        member_keys: (n,) uint32 noise-stream key of each covered member.
        keys: (K,) sorted unique keys; local: (n,) each member's position in `keys`.
    """

    def __init__(
        self,
        spec: TreeSpec,
        config: ESConfig,
        epoch: int,
        xp: ModuleType,
        members: np.ndarray | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        self.epoch = int(epoch)
        self.xp = xp
        whole = _whole(config.population, config.antithetic)
        if members is None:
            self.members, self.signs, self.member_keys, self.keys, self.local = whole
        else:
            self.members = members
            self.signs, self.member_keys = whole[1][members], whole[2][members]
            self.keys, local = np.unique(self.member_keys, return_inverse=True)
            self.local = local.reshape(-1)
            _read_only((self.members, self.signs, self.member_keys, self.keys, self.local))
        self._items: dict[tuple[str, int], Any] = {}
        self._run = _run_of(spec, config, xp)
        self.rows = self._run.rows  # the run's dispatch rows (gradient, optim: select_kept)
        # prefetch(full) done (items are only ever added, so it stays done): every pop.matmul /
        # perturbed calls prefetch, which must then cost O(1), not a scan of every leaf.
        self._prefetched = {False: False, True: False}
        # Black-box full-rank noise: the last key's noise per leaf (antithetic pairs share it).
        self._last_full: dict[int, tuple[int, Any]] = {}
        # With the shared noise table: the values each leaf reads per key (its slice's length).
        self._extents = (
            None
            if config.noise_table is None
            else noise_extents(spec.shapes, config.kinds, config.rank)
        )

    def _reads(self, keys: np.ndarray, requests: list[tuple[int, int, int]]) -> list[Any]:
        """The (leaf, offset, count) reads of `keys`' streams (`noise.normals_many`, with the
        run's kept rows; `_make` passes them checked, as `noise.Requests`), or of their slices
        of the shared noise table when the run has one (noise_table.read_many)."""
        c = self.config
        if self._extents is not None:
            return _table.read_many(
                c.seed, c.noise_table, self.epoch, keys, requests, self._extents, self.xp
            )
        # int8 leaves read quantized normals (`noise.normals_many(dtype=np.int8)`): one pass
        # that never holds their float32 values
        if "int8" not in self.spec.dtypes:  # float leaves only (the usual tree): one read
            return _noise.normals_many(c.seed, self.epoch, keys, requests, self.xp, rows=self.rows)
        is_int = [self.spec.dtypes[leaf] == "int8" for leaf, _, _ in requests]
        parts = {}
        for flag, dt in ((False, np.float32), (True, np.int8)):
            picked = [r for r, f in zip(requests, is_int, strict=True) if f is flag]
            if picked:
                got = _noise.normals_many(c.seed, self.epoch, keys, picked, self.xp, dtype=dt)
                parts[flag] = iter(got)
        return [next(parts[f]) for f in is_int]

    def __repr__(self) -> str:
        return (
            f"GenerationNoise(epoch={self.epoch}, members={self.members.size}, "
            f"keys={self.keys.size}, arrays={len(self._items)})"
        )

    @property
    def is_whole(self) -> bool:
        """True when it covers the whole population (as `tell` needs)."""
        return self.members.size == self.config.population

    def fits(self, spec: TreeSpec, config: ESConfig, epoch: int, xp: ModuleType) -> bool:
        """True when this noise is that of (spec, config, epoch, xp) for the whole population."""
        return (
            self.is_whole
            and self.epoch == epoch
            and self.xp is xp
            and (self.config is config or self.config == config)
            and (self.spec is spec or self.spec.difference(spec) is None)
        )

    def subset(self, start: int, stop: int) -> GenerationNoise:
        """The noise of members[start:stop], for that slice's keys only.

        Arrays this noise already holds are shared as views (a contiguous member range has a
        contiguous range of sorted keys); anything else the slice generates itself. Either way
        the values are the same: noise is a pure function of its counters.
        """
        sub = GenerationNoise(self.spec, self.config, self.epoch, self.xp, self.members[start:stop])
        if not self._items or sub.keys.size == 0:
            return sub
        lo = int(np.searchsorted(self.keys, sub.keys[0]))
        hi = lo + sub.keys.size
        if not np.array_equal(self.keys[lo:hi], sub.keys):  # not a contiguous key range
            return sub
        for item, value in self._items.items():
            sub._items[item] = (
                tuple(a[lo:hi] for a in value) if item[0] == "factors" else value[lo:hi]
            )
        sub._prefetched = dict(self._prefetched)
        return sub

    def prefetch(self, full: bool) -> None:
        """Generate the factors of every low-rank leaf (and, with `full`, the noise of every
        small full-rank leaf) not yet held, in ONE call: both cores work on one large job
        instead of being woken per leaf, which matters most right after BLAS has held them."""
        if self._prefetched[full] or self._prefetched[True]:
            return
        self._make(PREFETCH_FULL_VALUES if full else -1, math.inf)
        self._prefetched[full] = True

    def prefetch_update(self) -> None:
        """What the update reads, before it reads it. When nothing was made yet (`tell` right
        after `ask`, or without the population) the factors and, while they fit ONE update
        chunk together (FULL_CHUNK_VALUES values), the full-rank leaves' noise come from one
        call, as a forward's `prefetch` makes them: one wake of the cores, not one per leaf.
        After black-box members (`prefetch(full=False)`) the full-rank noise stays chunked."""
        if self._prefetched[False] or self._prefetched[True]:
            return
        self._make(FULL_CHUNK_VALUES, FULL_CHUNK_VALUES)
        self._prefetched[False] = True

    def _make(self, per_leaf: float, total: float) -> None:
        """Make in ONE call (`_generate`) the factors of every low-rank leaf not held yet, and
        the noise of every full-rank leaf not held whose values for all keys number at most
        `per_leaf`, while those values sum to at most `total`. With nothing held yet, the
        jobs and their checked reads are the same every generation of a run: kept (`_Run`)."""
        key = (self.keys.size, per_leaf, total)
        kept = None if self._items else self._run.plans.get(key)
        if kept is not None:
            self._generate(*kept)
            return
        c = self.config
        jobs: list[tuple[str, int]] = []
        requests: list[tuple[int, int, int]] = []
        for leaf, kind in enumerate(c.kinds):
            shape = self.spec.shapes[leaf]
            if kind is NoiseKind.LOWRANK and ("factors", leaf) not in self._items:
                jobs.append(("factors", leaf))
                requests += _noise.factor_requests(leaf, shape, c.rank)
            elif kind is NoiseKind.FULL and ("full", leaf) not in self._items:
                size = math.prod(shape)
                values = self.keys.size * size
                if values <= per_leaf and values <= total:
                    total -= values
                    jobs.append(("full", leaf))
                    requests.append((leaf, 0, size))
        # float leaves' own streams (no table, no int8 split): the reads checked once per run
        if self._extents is None and "int8" not in self.spec.dtypes:
            requests = _noise.check_requests(requests)
        if not self._items:
            self._run.plans[key] = (jobs, requests)
        self._generate(jobs, requests)

    def _generate(self, jobs: list[tuple[str, int]], requests: list[tuple[int, int, int]]) -> None:
        """Make the arrays of `jobs` (from `prefetch`) from ONE call (`_reads`)."""
        if not jobs:
            return
        c = self.config
        outs = iter(self._reads(self.keys, requests))
        for what, leaf in jobs:
            dt = self.spec.dtypes[leaf]
            shape = self.spec.shapes[leaf]
            if what == "factors":
                A, B = _noise.as_factors(next(outs), next(outs), shape, c.rank)
                value: Any = (_as_leaf_dtype(A, dt), _as_leaf_dtype(B, dt))
            else:
                value = _as_leaf_dtype(next(outs), dt).reshape(self.keys.size, *shape)
            self._items[(what, leaf)] = _read_only(value)

    def factors(self, leaf: int) -> tuple[Any, Any]:
        """(A, B) of a low-rank leaf for the unique keys: (K, m, r), (K, n, r) in leaf dtype
        (an int8 leaf's are the quantized factors a, b)."""
        self.prefetch(full=False)  # the one place factors are made; a no-op once held
        return self._items[("factors", leaf)]

    def holds_factors(self, leaf: int) -> bool:
        """True when the factors of a low-rank leaf are held (made, not only makeable)."""
        return ("factors", leaf) in self._items

    def dense(self, leaf: int, keys: np.ndarray) -> Any:
        """Full-rank unit noise of `keys` for a leaf: `(len(keys), *shape)` in leaf dtype."""
        shape = self.spec.shapes[leaf]
        size = math.prod(shape)
        if self._extents is None and self.spec.dtypes[leaf] != "int8":
            E = _noise.normals_batch(self.config.seed, leaf, keys, self.epoch, size, 0, self.xp)
        else:  # the noise table's slice, or int8 leaves' quantized normals
            (E,) = self._reads(np.asarray(keys), [(leaf, 0, size)])
        return _as_leaf_dtype(E, self.spec.dtypes[leaf]).reshape(len(keys), *shape)

    def full(self, leaf: int) -> Any:
        """Full-rank unit noise of all unique keys, `(K, *shape)`, held from now on."""
        E = self._items.get(("full", leaf))
        if E is None:
            E = self._items[("full", leaf)] = _read_only(self.dense(leaf, self.keys))
        return E

    def full_chunks(self, leaf: int) -> Iterator[tuple[int, np.ndarray, Any]]:
        """(start, keys, unit noise `(len(keys), *shape)`) over the unique keys of a full-rank leaf,
        at most FULL_CHUNK_VALUES values a chunk: from the held array when the forward's prefetch
        made it (small leaves), else generated chunk by chunk and never held. The same
        arithmetic either way, so black-box and batched steps agree bit for bit."""
        E = self.held_full(leaf)
        chunk = max(1, FULL_CHUNK_VALUES // max(1, math.prod(self.spec.shapes[leaf])))
        for c in range(0, self.keys.size, chunk):
            keys = self.keys[c : c + chunk]
            yield c, keys, (E[c : c + chunk] if E is not None else self.dense(leaf, keys))

    def held_full(self, leaf: int) -> Any:
        """The `(K, *shape)` full-rank noise of a leaf if it is held, else None."""
        return self._items.get(("full", leaf))

    def full_of_member(self, leaf: int, j: int) -> Any:
        """Full-rank unit noise of unique key j, `(*shape,)`: from the held array, else generated
        for that key alone (the black-box path never holds K dense copies of a leaf)."""
        E = self.held_full(leaf)
        if E is not None:
            return E[j]
        key = int(self.keys[j])
        last = self._last_full.get(leaf)
        if last is None or last[0] != key:  # antithetic pairs are adjacent: reuse it
            last = (key, _read_only(self.dense(leaf, self.keys[j : j + 1])[0]))
            self._last_full[leaf] = last
        return last[1]

    def __len__(self) -> int:
        """Number of noise arrays (factor pairs, dense stacks) held."""
        return len(self._items)
