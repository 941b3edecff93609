"""One replica of a distributed run (params, state, fitness) as a Ray actor holds it; checksums.

Used by `eggroll_np.distributed.RayEvaluator`: every replica evaluates slices of the population
and applies the same `tell`; `checksum` tells whether two replicas are bit-identical.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _checks, optim, tree
from ..backend import to_numpy

__all__ = ["checksum", "split_members"]


def checksum(params: Any, state: Any) -> int:
    """CRC-32 (an int) of the generation and the exact bytes, dtype and shape of every params
    leaf and optimizer-state array: replicas agree only when bit-identical. Runs at several GB/s;
    CuPy leaves are copied to the host first."""
    leaves, paths, _ = tree.flatten(params)
    named = [("params/" + tree.path_str(p), x) for p, x in zip(paths, leaves, strict=True)]
    opt = optim.state_arrays(state.opt_state)
    named += [(f"opt_state/{j}", x) for j, x in enumerate(opt)]
    crc = zlib.crc32(f"{int(state.generation)}:{int(state.opt_state.count)}".encode())
    for path, leaf in named:
        arr = np.ascontiguousarray(to_numpy(leaf))
        crc = zlib.crc32(f"{path}:{arr.dtype.str}:{arr.shape}".encode(), crc)
        crc = zlib.crc32(memoryview(arr).cast("B") if arr.size else b"", crc)
    return crc


def split_members(population: int, parts: int, multiple: int = 1) -> list[tuple[int, int]]:
    """Split member indices [0, population) into at most `parts` contiguous, balanced ranges.

    Boundaries fall on multiples of `multiple` (2 keeps antithetic pairs together); empty
    ranges are dropped, so fewer than `parts` ranges come back when there are few members.

    Returns:
        A list of (start, stop) pairs covering [0, population) in order.
    """
    if population < 0 or parts < 1 or multiple < 1:
        raise ValueError(
            f"need population >= 0, parts >= 1, multiple >= 1; got {population}, {parts}, "
            f"{multiple}"
        )
    units = -(-population // multiple)
    base, extra = divmod(units, parts)
    ranges, start = [], 0
    for p in range(parts):
        stop = min(population, start + (base + (p < extra)) * multiple)
        if stop > start:
            ranges.append((start, stop))
        start = stop
    return ranges


def _engine() -> Any:
    # Imported lazily: the engine imports nothing from here, and actors import it on arrival.
    from .. import es

    return es


def _build() -> tuple[str, bool, str]:
    """(version, C++ core loaded, package directory) of the eggroll_np this process runs."""
    from .. import __version__, _ext

    # This file is eggroll_np/distributed/replica.py: the package is two directories up.
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return __version__, _ext.core is not None, package_dir


def _describe(build: tuple[str, bool, str]) -> str:
    return f"{build[0]} from {build[2]} ({'with' if build[1] else 'WITHOUT'} its C++ core)"


def _check_build(slot: int, worker: tuple[str, bool, str]) -> None:
    # A worker that could not load the driver's copy (see _worker_class) may run other code.
    driver = _build()
    if worker[:2] != driver[:2]:
        raise RuntimeError(
            f"worker {slot} runs eggroll_np {_describe(worker)}, the driver {_describe(driver)}. "
            "Ray puts the driver's working directory first on the workers' sys.path: start the "
            "driver outside the source tree, or install it with `pip install -e .`"
        )


def _copy_if_numpy(x: Any) -> Any:
    return x.copy() if isinstance(x, np.ndarray) else x


class _Replica:
    """A Ray actor's body: one replica of (params, state) and the fitness function."""

    def __init__(self, fitness: Callable[..., Any], factory: bool, batched: bool, threads: int):
        if threads > 0:
            from ..tuning import threads as set_threads

            with warnings.catch_warnings():
                # Without threadpoolctl threads() warns that BLAS keeps its count: here Ray's
                # OMP_NUM_THREADS already gave BLAS this actor's CPUs, the same number.
                warnings.simplefilter("ignore", RuntimeWarning)
                set_threads(threads)
        self._fitness = fitness() if factory else fitness
        self._batched = batched
        self._params: Any = None
        self._state: Any = None
        self._pop: Any = None

    def load(self, snapshot: tuple[Any, Any]) -> tuple[int, int, tuple[str, bool, str]]:
        """Replace the replica by a broadcast (params, state).

        Returns:
            (generation, checksum, build) with build = (version, C++ core loaded, package dir).
        """
        params, state = snapshot
        # Arrays read from Ray's object store are read-only views of shared memory.
        self._params = tree.map_leaves(_copy_if_numpy, params)
        opt = state.opt_state
        arrays = [_copy_if_numpy(x) for x in optim.state_arrays(opt)]
        opt_state = optim.state_from_arrays(opt, opt.count, arrays)
        self._state = dataclasses.replace(state, opt_state=opt_state)
        self._pop = None
        return int(state.generation), checksum(self._params, self._state), _build()

    def _check_generation(self, generation: int) -> None:
        if self._state is None or int(self._state.generation) != generation:
            have = None if self._state is None else int(self._state.generation)
            raise RuntimeError(f"replica is at generation {have}, driver asked for {generation}")

    def evaluate(self, generation: int, start: int, stop: int) -> tuple[int, int, np.ndarray]:
        """Fitness of members [start, stop) of `generation`, float64 of shape (stop - start,)."""
        self._check_generation(generation)
        if self._pop is None:  # one `ask` per generation, reused by every slice given to us
            self._pop = _engine().ask(self._params, self._state)
            if self._batched:
                # The whole generation's noise, once: `tell` needs all of it anyway, and every
                # slice evaluated here reads views of it (`Population.slice`).
                self._pop.noise.prefetch(full=True)
        if self._batched:
            raw = self._fitness(self._pop.slice(start, stop))
            try:  # the validator of one process's `tell`: no strings, no (n, 1) shapes
                values = _checks.fitness_vector(raw, stop - start)
            except (TypeError, ValueError) as exc:
                raise type(exc)(
                    f"batched fitness of the slice of members [{start}, {stop}): {exc}"
                ) from None
        else:
            values = np.array(
                [
                    _checks.fitness_value(
                        f"fitness_fn's value for member {i}", self._fitness(self._pop.member(i))
                    )
                    for i in range(start, stop)
                ],
                dtype=np.float64,
            )
        return start, stop, values

    def tell(self, generation: int, fitness: np.ndarray) -> tuple[int, int]:
        """Apply the gathered (N,) fitness; returns (new generation, checksum)."""
        self._check_generation(generation)
        # The population this replica evaluated (if any) already holds the generation's noise.
        self._params, self._state = _engine().tell(
            self._params, fitness, self._state, population=self._pop
        )
        self._pop = None
        return int(self._state.generation), checksum(self._params, self._state)


def _worker_class() -> type:
    """The Ray actor class: a shell around a `_Replica`, shipped by value (defined in here).

    Ray puts the driver's working directory first on a worker's sys.path: in a source checkout
    a worker would import the uncompiled sources, not the driver's installed package. The shell
    imports no eggroll_np until __init__ has loaded the driver's copy (when that path exists on
    the worker's machine); the fitness comes as a nested reference for the same reason.
    """

    class Worker:
        def __init__(self, package_dir: str, fitness_refs: list, *args: Any) -> None:
            import importlib.util
            import os
            import sys

            import ray

            init = os.path.join(package_dir, "__init__.py")
            if "eggroll_np" not in sys.modules and os.path.isfile(init):
                spec = importlib.util.spec_from_file_location(
                    "eggroll_np", init, submodule_search_locations=[package_dir]
                )
                module = importlib.util.module_from_spec(spec)
                sys.modules["eggroll_np"] = module
                spec.loader.exec_module(module)
            from eggroll_np.distributed.replica import _Replica

            self._replica = _Replica(ray.get(fitness_refs[0]), *args)

        def load(self, snapshot: Any) -> Any:
            return self._replica.load(snapshot)

        def evaluate(self, generation: int, start: int, stop: int) -> Any:
            return self._replica.evaluate(generation, start, stop)

        def tell(self, generation: int, fitness: Any) -> Any:
            return self._replica.tell(generation, fitness)

    return Worker
