"""`Population`: the N perturbed members of one generation, as a fitness function sees them.

Member i has parameters theta_i = theta + sigma * s_i * eps_k, k = member_key(i), per DESIGN.md's
noise contract. Noise is generated once per generation (per epoch with noise_reuse) for the UNIQUE
member keys only and kept in a transient `NoiseCache` that the ES state references: the forward
(`matmul`, `perturbed`, `member`) and the update (`gradient`) share it, and it is never saved and
dropped as soon as another epoch is asked for.
"""

from __future__ import annotations

import enum
import math
import operator
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import lowrank, noise
from .backend import as_array, namespace_of
from .tree import Path, TreeSpec

if TYPE_CHECKING:  # pragma: no cover - typing only (es imports population)
    from .es import ESConfig

__all__ = ["NoiseKind", "NoiseCache", "Population"]

# Full-rank noise is generated/contracted in chunks of at most this many values (per leaf), so
# the black-box path never holds all N dense perturbations of a large leaf.
_FULL_CHUNK_VALUES = 1 << 21
# Full-rank leaves whose noise for all unique keys is at most this many values are generated
# together with the low-rank factors when a batched forward starts (biases, norms).
_PREFETCH_FULL_VALUES = 1 << 22


class NoiseKind(enum.Enum):
    """How a leaf is perturbed: rank-r factors, dense Gaussian noise, or not at all."""

    LOWRANK = "lowrank"
    FULL = "full"
    FROZEN = "frozen"


class NoiseCache:
    """Noise arrays of ONE (seed, epoch, rank); asking for another one drops everything.

    Not part of any saved state: noise is a pure function of its counters, so a fresh cache gives
    the same numbers.
    """

    def __init__(self) -> None:
        self._tag: Hashable = None
        self._items: dict[Hashable, Any] = {}

    def get(self, tag: Hashable, key: Hashable, make: Callable[[], Any] | None = None) -> Any:
        """The item `key` of epoch `tag`, made by `make()` when absent (None without `make`)."""
        if tag != self._tag:
            self._items.clear()
            self._tag = tag
        item = self._items.get(key)
        if item is None and make is not None:
            item = self._items[key] = make()
        return item

    def __len__(self) -> int:
        return len(self._items)


def _check_index(name: str, value: Any, size: int, inclusive: bool = False) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    hi = size + 1 if inclusive else size
    if not 0 <= v < hi:
        raise ValueError(f"{name} must be in [0, {hi}), got {v}")
    return v


class Population:
    """All members of one generation, never materialised as N parameter trees.

    Built by `eggroll_np.ask` (and used by `step`); not meant to be constructed directly.

    Attributes:
        size: number of members N (of this slice).
        sigma: noise scale.
        generation: the generation being evaluated.
        epoch: its noise epoch, generation // noise_reuse.
        signs: (N,) float32 s_i of each member.
        member_keys: (N,) uint32 noise-stream key of each member.
        paths: leaf paths ('a/0/b') in canonical order.
    """

    def __init__(
        self,
        leaves: list[Any],
        spec: TreeSpec,
        config: ESConfig,
        generation: int,
        cache: NoiseCache,
        members: np.ndarray | None = None,
    ) -> None:
        self._leaves = leaves
        self._spec = spec
        self._config = config
        self._cache = cache
        self._xp = namespace_of(leaves[0])
        self._members = np.arange(config.population) if members is None else members
        self.generation = int(generation)
        self.epoch = noise.epoch_of(generation, config.noise_reuse)
        self.sigma = float(config.sigma)
        self.size = int(self._members.size)
        self.paths = spec.path_strings
        self.signs = noise.signs(config.population, config.antithetic)[self._members]
        self.member_keys = noise.member_keys(config.population, config.antithetic)[self._members]
        # Unique keys (sorted) and each member's position among them.
        self._ukeys, local = np.unique(self.member_keys, return_inverse=True)
        self._local = local.reshape(-1)
        self._local_xp = self._xp.asarray(self._local.astype(np.uint32))  # as kernels take it
        self._tag = (config.seed, self.epoch, config.rank)
        self._ukeys_bytes = self._ukeys.tobytes()  # once: member() would pay O(K) per call
        # Black-box full-rank noise: the last key's noise per leaf (antithetic pairs share it).
        self._last_full: dict[int, tuple[int, Any]] = {}
        self._coefs: dict[int, Any] = {}

    def __repr__(self) -> str:
        return (
            f"Population(size={self.size}, sigma={self.sigma}, generation={self.generation}, "
            f"leaves={len(self.paths)})"
        )

    # ---- noise -------------------------------------------------------------------------------

    def _key(self, leaf: int, what: str) -> tuple:
        """Cache key of one leaf's noise for this population's unique keys."""
        return (what, leaf, self._xp.__name__, self._spec.dtypes[leaf], self._ukeys_bytes)

    def _prefetch(self, full: bool) -> None:
        """Generate the noise of every low-rank leaf (and, with `full`, of every small full-rank
        leaf) that the cache lacks, in ONE call: both cores work on one large job instead of
        being woken per leaf, which matters most right after BLAS has held them."""
        c = self._config
        jobs: list[tuple[str, int, tuple]] = []
        requests: list[tuple[int, int, int]] = []
        for leaf, kind in enumerate(c.kinds):
            shape = self._spec.shapes[leaf]
            if kind is NoiseKind.LOWRANK:
                key = self._key(leaf, "factors")
                if self._cache.get(self._tag, key) is None:
                    jobs.append(("factors", leaf, key))
                    requests += noise.factor_requests(leaf, shape, c.rank)
            elif full and kind is NoiseKind.FULL:
                size = math.prod(shape)
                key = self._key(leaf, "full")
                if self._ukeys.size * size <= _PREFETCH_FULL_VALUES and (
                    self._cache.get(self._tag, key) is None
                ):
                    jobs.append(("full", leaf, key))
                    requests.append((leaf, 0, size))
        if not jobs:
            return
        outs = iter(noise.normals_many(c.seed, self.epoch, self._ukeys, requests, self._xp))
        K = self._ukeys.size
        for what, leaf, key in jobs:
            dt = self._spec.dtypes[leaf]
            shape = self._spec.shapes[leaf]
            if what == "factors":
                A, B = noise.as_factors(next(outs), next(outs), shape, c.rank)
                value: Any = (A.astype(dt, copy=False), B.astype(dt, copy=False))
            else:
                value = next(outs).astype(dt, copy=False).reshape(K, *shape)
            self._cache.get(self._tag, key, lambda v=value: v)

    def _factors(self, leaf: int) -> tuple[Any, Any]:
        """(A, B) of a low-rank leaf for the unique keys: (K, m, r), (K, n, r) in leaf dtype."""
        self._prefetch(full=False)  # the one place factors are made; a no-op once cached
        return self._cache.get(self._tag, self._key(leaf, "factors"))

    def _dense_keys(self, leaf: int, keys: np.ndarray) -> Any:
        """Full-rank unit noise of `keys` for a leaf: (len(keys), *shape) in leaf dtype."""
        shape = self._spec.shapes[leaf]
        E = noise.normals_batch(
            self._config.seed, leaf, keys, self.epoch, math.prod(shape), 0, self._xp
        )
        return E.astype(self._spec.dtypes[leaf], copy=False).reshape(len(keys), *shape)

    def _full(self, leaf: int) -> Any:
        """Full-rank unit noise of the unique keys, (K, *shape), cached for the epoch."""
        return self._cache.get(
            self._tag,
            self._key(leaf, "full"),
            lambda: self._dense_keys(leaf, self._ukeys),
        )

    def _kind(self, leaf: int) -> NoiseKind:
        return self._config.kinds[leaf]

    def _coef(self, leaf: int) -> Any:
        """(N,) sigma * s_i (/ sqrt(r) for low-rank leaves) in the leaf's dtype and backend."""
        # Kept per population: on CuPy each upload is a host-to-device copy in the forward.
        coef = self._coefs.get(leaf)
        if coef is None:
            c = self.sigma * self.signs.astype(np.float64)
            if self._kind(leaf) is NoiseKind.LOWRANK:
                c = c / math.sqrt(self._config.rank)
            coef = self._coefs[leaf] = self._xp.asarray(c.astype(self._spec.dtypes[leaf]))
        return coef

    def _member_leaf(self, i: int, leaf: int) -> Any:
        """Member i's value of one leaf (a new array)."""
        theta = self._leaves[leaf]
        kind = self._kind(leaf)
        if kind is NoiseKind.FROZEN:
            return theta.copy()
        j = int(self._local[i])
        if kind is NoiseKind.LOWRANK:
            A, B = self._factors(leaf)
            coef = self.sigma * float(self.signs[i]) / math.sqrt(self._config.rank)
            w = A[j] @ B[j].T  # the one (m, n) temporary: scaled and shifted in place
            w *= coef
            w += theta
            return w
        E = self._cache.get(self._tag, self._key(leaf, "full"))
        if E is not None:
            eps = E[j]
        else:  # black-box path: one key at a time (antithetic pairs are adjacent, reuse it)
            key = int(self._ukeys[j])
            last = self._last_full.get(leaf)
            if last is None or last[0] != key:
                last = self._last_full[leaf] = (
                    key,
                    self._dense_keys(leaf, self._ukeys[j : j + 1])[0],
                )
            eps = last[1]
        # asarray: NumPy turns 0-d results into scalars, leaves must stay arrays
        return self._xp.asarray(theta + (self.sigma * float(self.signs[i])) * eps)

    # ---- what fitness functions call -----------------------------------------------------------

    def member(self, i: int) -> Any:
        """Member i's full parameter tree (new arrays), 0 <= i < size."""
        i = _check_index("member index i", i, self.size)
        self._prefetch(full=False)  # black-box: full-rank noise stays one key at a time
        return self._spec.unflatten(
            [self._member_leaf(i, leaf) for leaf in range(len(self._leaves))]
        )

    def perturbed(self, path: Path | str) -> Any:
        """(N, *shape) stack of every member's value of one leaf.

        Meant for small full-rank leaves (biases, norms); for a low-rank matrix leaf this forms N
        dense matrices, so prefer `matmul` there.
        """
        leaf = self._spec.index(path)
        theta = self._leaves[leaf]
        kind = self._kind(leaf)
        xp = self._xp
        if kind is NoiseKind.FROZEN:
            return xp.broadcast_to(theta, (self.size, *theta.shape)).copy()
        self._prefetch(full=True)
        coef = self._coef(leaf).reshape(-1, *([1] * theta.ndim))
        if kind is NoiseKind.LOWRANK:
            A, B = self._factors(leaf)
            eps = xp.matmul(A[self._local_xp], B[self._local_xp].transpose(0, 2, 1))
        else:
            eps = self._full(leaf)[self._local_xp]
        eps *= coef
        eps += theta
        return eps

    def matmul(self, x: Any, path: Path | str, transpose: bool = False) -> Any:
        """x @ W_i for every member without forming any W_i.

        Args:
            x: shared input (B, m), or per-member inputs (N, B, m); cast to the leaf's dtype.
            path: a 2-D leaf W of shape (m, n) ('a/0/W' or a tuple path).
            transpose: compute x @ W_i.T instead (x then has n columns).

        Returns:
            (N, B, n) array ((N, B, m) with transpose). A shared x is multiplied by W once.
        """
        leaf = self._spec.index(path)
        W = self._leaves[leaf]
        name = self.paths[leaf]
        if W.ndim != 2:
            raise ValueError(f"matmul needs a 2-D leaf, '{name}' has shape {tuple(W.shape)}")
        xp = self._xp
        x = as_array(x, "x")  # a DLPack array (torch, JAX, ...) as NumPy/CuPy, no copy
        if namespace_of(x) is not xp and not isinstance(x, (list, tuple, float, int)):
            raise TypeError(
                f"x is a {namespace_of(x).__name__} array but leaf '{name}' is a "
                f"{xp.__name__} array; mixed NumPy/CuPy is not supported"
            )
        x = xp.ascontiguousarray(x, dtype=W.dtype)  # C order lets compiled kernels take it
        Wt = W.T if transpose else W
        m = Wt.shape[0]
        shared = x.ndim == 2 and x.shape[1] == m
        if not shared and not (x.ndim == 3 and x.shape[0] == self.size and x.shape[2] == m):
            raise ValueError(
                f"x must have shape (B, {m}) or ({self.size}, B, {m}) for leaf '{name}'"
                f"{' (transposed)' if transpose else ''}, got {tuple(x.shape)}"
            )
        # Noise first: generating it right after a GEMM would compete with BLAS's spinning threads.
        self._prefetch(full=True)
        base = None
        if shared:
            base = x @ Wt  # the shared GEMM, once for the whole population
            out = xp.empty((self.size, x.shape[0], Wt.shape[1]), dtype=W.dtype)
        else:
            out = (x.reshape(-1, m) @ Wt).reshape(self.size, x.shape[1], Wt.shape[1])
        kind = self._kind(leaf)
        if kind is NoiseKind.LOWRANK:  # with base: out = base + correction, in one pass on a GPU
            A, B = self._factors(leaf)
            fn = lowrank.correction_transposed if transpose else lowrank.correction
            fn(x, A, B, self._local_xp, self._coef(leaf), out, base)
            return out
        if base is not None:
            out[...] = base
        if kind is NoiseKind.FULL:
            E = self._full(leaf)
            Et = E.transpose(0, 2, 1) if transpose else E
            coef = self._coef(leaf).reshape(-1, 1, 1)
            if x.ndim == 2:
                out += coef * xp.matmul(x, Et)[self._local_xp]
            else:
                out += coef * xp.matmul(x, Et[self._local_xp])
        return out

    def slice(self, start: int, stop: int) -> Population:
        """The members [start, stop) as a Population with the same noise (for workers)."""
        start = _check_index("start", start, self.size, inclusive=True)
        stop = _check_index("stop", stop, self.size, inclusive=True)
        if stop < start:
            raise ValueError(f"stop ({stop}) must be >= start ({start})")
        return Population(
            self._leaves,
            self._spec,
            self._config,
            self.generation,
            self._cache,
            self._members[start:stop],
        )

    # ---- the update ----------------------------------------------------------------------------

    def gradient(self, weights: np.ndarray) -> dict[int, Any]:
        """The ES gradient estimate per updated leaf from per-member weights.

        g = 1/(N*sigma) * sum_i w_i * s_i * eps_(key(i)), with the weights first folded per
        unique key (w_k = sum over its members of w_i * s_i), so a low-rank leaf costs one GEMM
        of (m, K*r) by (K*r, n).

        Args:
            weights: (N,) float64 shaped fitness (sign already set for maximize/minimize).

        Returns:
            leaf index -> g (leaf shape and dtype) for every non-frozen leaf.
        """
        if self.size != self._config.population:
            raise ValueError("gradient needs the whole population, not a slice")
        xp = self._xp
        K = self._ukeys.size
        w = np.bincount(self._local, weights=weights * self.signs, minlength=K)
        scale = 1.0 / (self.size * self.sigma)
        self._prefetch(full=False)
        wk = xp.asarray(w)  # float64 (the scale folds in before the cast), one upload on a GPU
        grads: dict[int, Any] = {}
        for leaf, kind in enumerate(self._config.kinds):
            if kind is NoiseKind.LOWRANK:
                A, B = self._factors(leaf)
                grads[leaf] = lowrank.contract(A, B, wk, scale / math.sqrt(self._config.rank))
            elif kind is NoiseKind.FULL:
                grads[leaf] = self._full_gradient(leaf, w, scale)
        return grads

    def _full_gradient(self, leaf: int, w: np.ndarray, scale: float) -> Any:
        # Chunks over keys, from the cache when the forward filled it, else regenerated: the same
        # arithmetic either way, so black-box and batched steps agree bit for bit.
        xp = self._xp
        shape = self._spec.shapes[leaf]
        dt = self._spec.dtypes[leaf]
        E = self._cache.get(self._tag, self._key(leaf, "full"))
        size = max(1, math.prod(shape))
        chunk = max(1, _FULL_CHUNK_VALUES // size)
        g = xp.zeros(shape, dtype=dt)
        for c in range(0, self._ukeys.size, chunk):
            keys = self._ukeys[c : c + chunk]
            Ec = E[c : c + chunk] if E is not None else self._dense_keys(leaf, keys)
            g += lowrank.contract_full(Ec, xp.asarray(w[c : c + chunk].astype(dt)), 1.0)
            del Ec  # free this chunk before the next one is generated
        g *= scale
        return g
