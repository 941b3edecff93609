"""`Population`: the N perturbed members of one generation, as a fitness function sees them.

Member i has parameters theta_i = theta + sigma * s_i * eps_k, k = member_key(i), per the noise
contract (docs/noise-contract.md). A Population is a forward view over the params and one
`GenerationNoise` (its `noise` attribute): the layers (`linear`, of which `matmul` is the case
without bias and activation, `conv2d`, `embed`), `perturbed` and `member` read the noise that the
update (`eggroll_np.tell(..., population=pop)`) then reuses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np

from . import _array_cache, _checks, conv, epilogue, fused_linear, intlayers, layers
from .config import NoiseKind
from .perturbation import GenerationNoise
from .tree import Path

__all__ = ["Population"]


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
        noise: the GenerationNoise this view reads (pass it to the next generation's `ask` to
            reuse it within an epoch when noise_reuse > 1).
    """

    def __init__(self, leaves: list[Any], noise: GenerationNoise, generation: int) -> None:
        self._leaves = leaves
        self.noise = noise
        self._spec = noise.spec
        self._config = noise.config
        self._xp = noise.xp
        self.generation = int(generation)
        self.epoch = noise.epoch
        self.sigma = float(noise.config.sigma)
        self.size = int(noise.members.size)
        self.paths = noise.spec.path_strings
        self.signs = noise.signs
        self.member_keys = noise.member_keys
        self._local = noise.local
        self._streams: fused_linear.Streams | None = None  # the keys on the device, lazily
        self._coefs: dict[tuple[bool, str], Any] = {}
        self._leaf_noises: dict[tuple[int, bool], epilogue.LeafNoise] = {}
        self._plans: dict[tuple[Any, ...], layers.LinearPlan] = {}  # (w, b, act, transpose)
        # [bytes]: the largest layer output per member seen by this population or a slice of it
        # (a one-item list, shared with the slices; `step`'s chunk="auto" reads it)
        self._layer_bytes = [0]
        # (start, size of the population this is a slice of): per-member layer inputs sized
        # for that whole population are taken at this slice's rows (chunked evaluation)
        self._within = (0, self.size)

    def __repr__(self) -> str:
        g, n = self.generation, len(self.paths)
        return f"Population(size={self.size}, sigma={self.sigma}, generation={g}, leaves={n})"

    @property
    def layer_bytes_per_member(self) -> int:
        """Bytes per member of the largest output that `linear`, `matmul`, `conv2d` or `embed`
        returned so far, on this population or any slice of it (0 before any)."""
        return self._layer_bytes[0]

    def _noted(self, out: Any) -> Any:
        if out.ndim and out.shape[0]:
            self._layer_bytes[0] = max(self._layer_bytes[0], out.nbytes // out.shape[0])
        return out

    def _own_rows(self, x: Any, per_member_ndim: int) -> Any:
        """x's rows of this slice's members when x is a per-member input (ndim
        `per_member_ndim`) of the whole population it was sliced from; else x."""
        start, whole = self._within
        if whole != self.size and getattr(x, "ndim", None) == per_member_ndim:
            return x[start : start + self.size] if x.shape[0] == whole else x
        return x

    @property
    def _local_xp(self) -> Any:  # (N,) uint32 each member's index into the unique keys
        return self._device_streams().local

    def _device_streams(self) -> fused_linear.Streams:
        """The member keys on the backend, uploaded once, at their first use (on the GPU: after
        the first layer's GEMM is queued)."""
        if self._streams is None:
            self._streams = fused_linear.upload_streams(
                self.member_keys, self.noise.keys, self._local, self._xp
            )
        return self._streams

    def _fused_linear(self, x: Any, w: Any, b: Any, code: int, transpose: Any) -> Any:
        """`linear` through `fused_linear` (a low-rank float32 CuPy W: the GEMM first, the noise
        made inside the kernels), or None where that path does not take the layer."""
        idx = [self._spec.index(p) for p in (w, b) if p is not None]
        leaves = [(j, self.paths[j], self._leaves[j], self._config.kinds[j]) for j in idx]
        if not fused_linear.fusable(leaves, self._config.rank):
            return None
        x = self._own_rows(x, 3)
        return fused_linear.linear(
            x, leaves, code, transpose, self.noise, self.size, self._device_streams, self._coef
        )

    def _kind(self, leaf: int) -> NoiseKind:
        return self._config.kinds[leaf]

    def _is_int(self, leaf: int) -> bool:
        return self._spec.dtypes[leaf] == "int8"

    def _coef(self, leaf: int) -> Any:
        """(N,) sigma * s_i (/ sqrt(r) for low-rank leaves) in the leaf's dtype and backend; for
        an int8 leaf the signs s_i as int8 (its sigma is the shift int_sigma_shift)."""
        # One array per (kind, dtype) per population (sigma and the rank are the population's):
        # on CuPy each upload is a host-to-device copy in the forward.
        key = (self._kind(leaf) is NoiseKind.LOWRANK, self._spec.dtypes[leaf])
        coef = self._coefs.get(key)
        if coef is None:
            root = math.sqrt(self._config.rank) if key[0] else 1.0  # x / 1.0 is x
            c = self.signs if key[1] == "int8" else self.sigma * self.signs.astype(float) / root
            coef = self._coefs[key] = self._xp.asarray(c.astype(key[1]))
        return coef

    def _member_leaf(self, i: int, leaf: int) -> Any:
        """Member i's value of one leaf (a new array)."""
        theta = self._leaves[leaf]
        kind = self._kind(leaf)
        if kind is NoiseKind.FROZEN:
            return theta.copy()
        j = int(self._local[i])
        if self._is_int(leaf):
            A = B = E = None
            if kind is NoiseKind.LOWRANK:
                A, B = (f[j] for f in self.noise.factors(leaf))
            else:
                E = self.noise.full_of_member(leaf, j)
            k = self._config.int_sigma_shift
            return intlayers.member_leaf(theta, kind.value, A, B, E, int(self.signs[i]), k)
        if kind is NoiseKind.LOWRANK:
            A, B = self.noise.factors(leaf)
            coef = self.sigma * float(self.signs[i]) / math.sqrt(self._config.rank)
            # the one temporary, (m, n) or the matrix view of an ndim >= 3 leaf: scaled and
            # shifted in place
            w = (A[j] @ B[j].T).reshape(theta.shape)
            w *= coef
            w += theta
            return w
        eps = self.noise.full_of_member(leaf, j)
        # asarray: NumPy turns 0-d results into scalars, leaves must stay arrays
        return self._xp.asarray(theta + (self.sigma * float(self.signs[i])) * eps)

    # ---- what fitness functions call -----------------------------------------------------------

    @_array_cache.scoped
    def member(self, i: int) -> Any:
        """Member i's full parameter tree (new arrays), 0 <= i < size."""
        i = _checks.index("member index i", i, self.size)
        self.noise.prefetch(full=False)  # black-box: full-rank noise stays one key at a time
        return self._spec.unflatten(
            [self._member_leaf(i, leaf) for leaf in range(len(self._leaves))]
        )

    @_array_cache.scoped
    def perturbed(self, path: Path | str) -> Any:
        """`(N, *shape)` stack of every member's value of one leaf.

        Meant for small full-rank leaves (biases, norms); for a low-rank matrix leaf this forms N
        dense matrices, so prefer `matmul` there.
        """
        leaf = self._spec.index(path)
        theta = self._leaves[leaf]
        kind = self._kind(leaf)
        xp = self._xp
        if kind is NoiseKind.FROZEN:
            return xp.broadcast_to(theta, (self.size, *theta.shape)).copy()
        self.noise.prefetch(full=True)
        if self._is_int(leaf):
            return intlayers.perturbed(self._noise_of(leaf), self._config.int_sigma_shift)
        coef = self._coef(leaf).reshape(-1, *([1] * theta.ndim))
        if kind is NoiseKind.LOWRANK:
            A, B = self.noise.factors(leaf)
            eps = xp.matmul(A[self._local_xp], B[self._local_xp].transpose(0, 2, 1))
            eps = eps.reshape(self.size, *theta.shape)  # ndim >= 3: from the matrix view
        else:
            eps = self.noise.full(leaf)[self._local_xp]
        eps *= coef
        eps += theta
        return eps

    def matmul(self, x: Any, path: Path | str, transpose: bool = False) -> Any:
        """x @ W_i for every member without forming any W_i: `linear` without bias/activation.
        x: shared (B, m) or per-member (N, B, m), cast to the dtype of `path`'s 2-D leaf W
        (m, n); transpose: x @ W_i.T (x then has n columns). Returns (N, B, n) ((N, B, m)
        with transpose); a shared x is multiplied by W once."""
        return self.linear(x, path, transpose=transpose)

    def _full_chunks(self, leaf: int) -> Iterator[tuple[Any, Any, Any]]:
        """A full-rank leaf's noise key chunk by key chunk (`GenerationNoise.full_chunks`), as
        (members, their rows in the chunk, chunk) for `LeafNoise.chunks`."""
        xp = self._xp
        for c, keys, E in self.noise.full_chunks(leaf):
            if keys.size == self.noise.keys.size:  # one chunk holds every key
                yield slice(None), self._local_xp, E
                continue
            rows = np.flatnonzero((self._local >= c) & (self._local < c + keys.size))
            if rows.size:  # a slice's members need only some keys
                yield xp.asarray(rows), xp.asarray(self._local[rows] - c), E

    def _noise_of(self, leaf: int, chunked: bool = False) -> epilogue.LeafNoise:
        """Leaf `leaf` and its members' noise as the layers take it, kept per population (a tiny
        layer call must not rebuild it). `chunked`: unheld full-rank noise in key chunks."""
        if (got := self._leaf_noises.get((leaf, chunked))) is not None:
            return got
        kind = self._kind(leaf)
        A = B = E = chunks = None
        if kind is NoiseKind.LOWRANK:
            A, B = self.noise.factors(leaf)
        elif kind is NoiseKind.FULL:
            held = chunked and not self._is_int(leaf)  # int8 full-rank leaves: whole (small)
            E = self.noise.held_full(leaf) if held else self.noise.full(leaf)
            if E is None:
                chunks = partial(self._full_chunks, leaf)
        coef = self._coef(leaf) if kind is not NoiseKind.FROZEN else None
        got = epilogue.LeafNoise(
            self.paths[leaf], self._leaves[leaf], kind.value, self._local_xp, coef, A, B, E, chunks
        )
        if chunks is None:  # chunked noise is not kept: a later `perturbed` may hold it whole
            self._leaf_noises[(leaf, chunked)] = got
        return got

    @_array_cache.scoped
    def linear(
        self,
        x: Any,
        w: Path | str,
        b: Path | str | None = None,
        activation: str | None = None,
        transpose: bool = False,
    ) -> Any:
        """activation(x @ W_i + b_i) for every member: the base GEMM, then ONE fused pass
        (low-rank correction, bias, activation) over the output (`layers.linear`).

        Args:
            x: shared (B, m) or per-member (N, B, m) input, cast to W's dtype. In a slice
                (`slice`, `chunks`, `step`'s chunks) a per-member input of the whole
                population it came from is read at the slice's rows.
            w: path of a 2-D leaf W (m, n): low-rank, full-rank (its noise in key chunks
                unless held: never all N dense perturbations of a large leaf) or frozen.
            b: None or path of a 1-D leaf (n,) (full-rank, the default for 1-D leaves, or
                frozen; a 1-D leaf cannot be low-rank).
            activation: None, "relu", "tanh", "sigmoid" or "gelu" (tanh approximation).
            transpose: x @ W_i.T instead (x has n columns; b then has m entries).

        Returns:
            (N, B, n) array ((N, B, m) with transpose), W's dtype and backend.

        An int8 leaf W takes int8 x and an int8 (or no) bias, activation None or "relu", and
        gives int8 (N, B, n) by the integer rule (`intlayers.linear`, docs/integer.md).
        """
        key = (w, b, activation, transpose) if type(transpose) is bool else None
        try:
            plan = self._plans.get(key)
        except TypeError:  # an unhashable path (a list): nothing kept
            plan = key = None
        if plan is not None:  # this layer's leaves were checked at its first call
            return self._noted(layers.run_linear(self._own_rows(x, 3), plan))
        wi = self._spec.index(w)
        if self._spec.dtypes[wi] == "int8":
            self.noise.prefetch(full=True)
            bn = None if b is None else self._noise_of(self._spec.index(b))
            k = self._config.int_sigma_shift
            x = self._own_rows(x, 3)
            out = intlayers.linear(x, self._noise_of(wi), bn, activation, k, transpose)
            return self._noted(out)
        code = epilogue.activation_code(activation)  # before any noise is made
        out = None if self._xp is np else self._fused_linear(x, w, b, code, transpose)  # CuPy
        if out is not None:
            return self._noted(out)
        self.noise.prefetch(full=True)  # noise first: after a GEMM it would compete with BLAS
        bn = None if b is None else self._noise_of(self._spec.index(b))
        if bn is not None and bn.theta.dtype == np.int8:
            raise TypeError(
                f"b: leaf '{bn.name}' is int8 but w '{self.paths[wi]}' is a "
                "float leaf; a layer's leaves share one dtype"
            )
        plan = layers.LinearPlan(self._noise_of(wi, chunked=True), bn, activation, transpose)
        if key is not None and self._xp is np and plan.w.chunks is None:
            self._plans[key] = plan  # NumPy: the next call of this layer starts from here
        return self._noted(layers.run_linear(self._own_rows(x, 3), plan))

    @_array_cache.scoped
    def conv2d(
        self,
        x: Any,
        w: Path | str,
        b: Path | str | None = None,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        activation: str | None = None,
    ) -> Any:
        """Every member's conv2d (torch.nn.functional.conv2d semantics: NCHW cross-correlation,
        zero padding), then an optional activation, without forming N dense kernels.

        Args:
            x: shared (B, C, H, W) or per-member (N, B, C, H, W) input (in a slice, as in
                `linear`).
            w: path of a 4-D leaf (O, C, kh, kw); make it low-rank with init's `lowrank=`
                (matrix view (O, C*kh*kw)), else it is full-rank.
            b: None or path of a 1-D leaf (O,).
            stride, padding: an int or a pair.
            activation: as in `linear`.

        Returns:
            (N, B, O, H', W') array, H' = (H + 2 pad - kh) // stride + 1 (likewise W').
        """
        leaf = self._spec.index(w)
        if self._is_int(leaf) or (b is not None and self._is_int(self._spec.index(b))):
            raise TypeError(
                f"conv2d does not take int8 leaves ('{self.paths[leaf]}'); use linear on "
                "im2col patches, or a float kernel"
            )
        epilogue.activation_code(activation)
        self.noise.prefetch(full=True)
        bn = None if b is None else self._noise_of(self._spec.index(b))
        x = self._own_rows(x, 5)
        return self._noted(conv.conv2d(x, self._noise_of(leaf), bn, stride, padding, activation))

    @_array_cache.scoped
    def embed(self, ids: Any, w: Path | str, per_member: bool = False) -> Any:
        """Rows of every member's table W_i (V, d) at integer ids, without forming any W_i.

        Args:
            ids: integers in [0, V) of any shape S (shared by all members), or `(N, *S)` with
                per_member=True (each member's own ids, e.g. its sampled tokens; in a slice,
                as in `linear`).
            w: path of a 2-D leaf (V, d).

        Returns:
            `(N, *S, d)` array: theta's rows plus the rows of A_k at the ids times B_k.T
            (an int8 table: int8 rows by the integer rule, `intlayers.embed`).
        """
        self.noise.prefetch(full=True)
        if per_member:
            ids = self._own_rows(ids, getattr(ids, "ndim", None))
        if self._is_int(leaf := self._spec.index(w)):
            k = self._config.int_sigma_shift
            return self._noted(intlayers.embed(ids, self._noise_of(leaf), per_member, k))
        return self._noted(layers.embed(ids, self._noise_of(leaf), per_member))

    def slice(self, start: int, stop: int) -> Population:
        """The members [start, stop) as a Population (for workers; noise of its keys only).

        Its layers take per-member inputs either for its own members or for the whole
        population it is a slice of (then at rows [start, stop))."""
        start = _checks.index("start", start, self.size, inclusive=True)
        stop = _checks.index("stop", stop, self.size, inclusive=True)
        if stop < start:
            raise ValueError(f"stop ({stop}) must be >= start ({start})")
        sub = Population(self._leaves, self.noise.subset(start, stop), self.generation)
        sub._layer_bytes = self._layer_bytes
        sub._within = (self._within[0] + start, self._within[1])
        return sub

    def chunks(self, size: int) -> list[tuple[slice, Population]]:
        """(members, sub-population) for consecutive runs of at most `size` members.

        A batched fitness that runs its forward chunk by chunk keeps each chunk's activations in
        cache and holds only one chunk's at a time (a population's activations are N times a
        model's). The noise is made once, here, for the whole population, and every chunk reads
        views of it; `tell` then reuses it too. For example::

            f = np.empty(pop.size)
            for members, sub in pop.chunks(32):
                f[members] = my_forward_fitness(sub)

        Args:
            size: members per chunk, >= 1 (the last chunk may be smaller).

        Returns:
            [(slice(start, stop), the Population of members [start, stop)), ...] in order.
        """
        size = _checks.integer("size", size, 1)
        self.noise.prefetch(full=True)
        return [
            (slice(s, min(self.size, s + size)), self.slice(s, min(self.size, s + size)))
            for s in range(0, self.size, size)
        ]
