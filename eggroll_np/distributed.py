"""Distributed populations on Ray: replicas of params/state on every worker, only fitness travels.

EGGROLL noise is a pure function of (seed, leaf, member, epoch), so a worker holding the params
and the ES state regenerates any member's perturbation itself. `RayEvaluator` broadcasts
(params, state) to K Ray actors once; then, per generation, each actor evaluates a contiguous
slice of members (`ask`, then `pop.slice` or `pop.member(i)`), the driver gathers the (N,)
fitness, puts it in the object store once, and every actor and the driver apply the same `tell`
and compare checksums. Only O(N) scalars cross process boundaries, whatever the parameter count.
A dead actor is replaced (the new one gets the driver's replica by broadcast) and its members
are re-evaluated on the others, so a run ends with the same params as a single process.

Needs the `ray` extra: ``pip install 'eggroll_np[ray]'``.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import tree
from .backend import to_numpy

__all__ = [
    "RayEvaluator",
    "GenerationReport",
    "ReplicaMismatchError",
    "checksum",
    "split_members",
    "payload_nbytes",
]


class ReplicaMismatchError(RuntimeError):
    """A worker's params/state checksum differs from the driver's after `tell`."""


@dataclass(frozen=True)
class GenerationReport:
    """What one distributed generation cost and survived.

    Attributes:
        generation: the generation that was evaluated and told.
        seconds: wall time of the whole generation on the driver.
        bytes_sent: driver -> workers: the fitness vector as stored in Ray's object store, plus
            the task arguments (pickle protocol-5 sizes; an object reference counts as its id).
        bytes_received: workers -> driver: fitness slices and checksums (pickled sizes).
        broadcast_bytes: (params, state) snapshots delivered because of restarts or resyncs,
            object-store size times the actors that loaded it (0 in a healthy generation;
            included in neither of the two fields above).
        reassigned: members whose evaluation was lost with a dead actor and redone elsewhere.
        restarts: actors replaced during this generation.
        resyncs: replicas overwritten from the driver after a checksum mismatch.
    """

    generation: int
    seconds: float
    bytes_sent: int
    bytes_received: int
    broadcast_bytes: int = 0
    reassigned: int = 0
    restarts: int = 0
    resyncs: int = 0


def payload_nbytes(obj: Any) -> int:
    """Serialized size of a Python object as pickle protocol 5 writes it (arrays in-band)."""
    return len(pickle.dumps(obj, protocol=5))


def _stored_nbytes(ray: Any, ref: Any, obj: Any) -> int:
    """Size of a `ray.put` object as Ray's object store holds it (pickled size if unknown)."""
    try:
        size = ray.experimental.get_object_locations([ref])[ref]["object_size"]
    except Exception:  # noqa: BLE001 - a best-effort lookup; the pickled size is close
        size = None
    return int(size) if size else payload_nbytes(obj)


def _ref_nbytes(ref: Any) -> int:
    # What travels for an ObjectRef passed as a task argument is its id (28 bytes in Ray 2.x).
    return len(ref.binary())


def _state_arrays(params: Any, state: Any) -> Iterator[tuple[str, Any]]:
    leaves, paths, _ = tree.flatten(params)
    for path, leaf in zip(paths, leaves, strict=True):
        yield "params/" + tree.path_str(path), leaf
    for key in sorted(state.opt_state):  # a flat dict of plain arrays (eggroll_np.optim)
        yield "opt_state/" + key, state.opt_state[key]


def checksum(params: Any, state: Any) -> int:
    """CRC-32 of the generation, every params leaf and every optimizer-state array.

    Hashes the exact bytes (with path, dtype and shape), so two replicas agree only when they
    are bit-identical; CRC-32 runs at several GB/s, a small cost next to a generation. CuPy
    leaves are copied to the host first.

    Args:
        params: parameter tree (NumPy or CuPy leaves).
        state: the ES state (`ESState`) that goes with `params`.

    Returns:
        An unsigned 32-bit integer.
    """
    crc = zlib.crc32(str(int(state.generation)).encode())
    for path, leaf in _state_arrays(params, state):
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


def _require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "eggroll_np.distributed needs Ray: pip install 'eggroll_np[ray]'"
        ) from exc
    return ray


def _engine() -> Any:
    # Imported lazily: the engine imports nothing from here, and actors import it on arrival.
    from . import es

    return es


def _build() -> tuple[str, bool, str]:
    """(version, C++ core loaded, package directory) of the eggroll_np this process runs."""
    from . import __version__, _ext

    return __version__, _ext.core is not None, os.path.dirname(os.path.abspath(__file__))


def _check_build(slot: int, worker: tuple[str, bool, str]) -> None:
    # Ray puts the driver's working directory first on the workers' sys.path, so a driver
    # started in a source checkout, with eggroll_np installed elsewhere, has workers that
    # import the uncompiled sources: their numbers would differ from the driver's.
    driver = _build()
    if worker[:2] != driver[:2]:

        def describe(b: tuple[str, bool, str]) -> str:
            return f"{b[0]} from {b[2]} ({'with' if b[1] else 'WITHOUT'} its C++ core)"

        raise RuntimeError(
            f"worker {slot} runs eggroll_np {describe(worker)}, the driver {describe(driver)}. "
            "Ray puts the driver's working directory first on the workers' sys.path: start the "
            "driver outside the source tree, or install it with `pip install -e .`"
        )


def _copy_if_numpy(x: Any) -> Any:
    return x.copy() if isinstance(x, np.ndarray) else x


def _portable(state: Any) -> Any:
    """The state without its transient noise cache (which may hold a whole epoch's factors)."""
    return dataclasses.replace(state, cache=type(state.cache)())


class _Replica:
    """A Ray actor's body: one replica of (params, state) and the fitness function."""

    def __init__(self, fitness: Callable[..., Any], factory: bool, batched: bool, threads: int):
        if threads > 0:
            # Ray sets OMP_NUM_THREADS for BLAS; the C++ core has its own thread count.
            from . import _ext

            if _ext.core is not None:
                _ext.core.set_num_threads(threads)
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
        opt_state = {k: _copy_if_numpy(v) for k, v in state.opt_state.items()}
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
            values = to_numpy(self._fitness(self._pop.slice(start, stop)))
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            if values.shape != (stop - start,):
                raise ValueError(
                    f"batched fitness returned {values.size} values for a slice of "
                    f"{stop - start} members"
                )
        else:
            es = _engine()
            values = np.array(
                [
                    es._member_fitness(self._fitness(self._pop.member(i)), i)
                    for i in range(start, stop)
                ],
                dtype=np.float64,
            )
        return start, stop, values

    def tell(self, generation: int, fitness: np.ndarray) -> tuple[int, int]:
        """Apply the gathered (N,) fitness; returns (new generation, checksum)."""
        self._check_generation(generation)
        self._params, self._state = _engine().tell(self._params, fitness, self._state)
        self._pop = None
        return int(self._state.generation), checksum(self._params, self._state)


def _worker_class() -> type:
    """The Ray actor class: a shell that Ray ships by value, around a `_Replica`.

    Ray puts the driver's working directory first on a worker's sys.path, so in a source
    checkout a worker would import the uncompiled sources rather than the installed package the
    driver uses. This shell, pickled by value (it is defined in a function), imports nothing from
    eggroll_np until its __init__ has loaded the driver's copy (when that path exists on the
    worker's machine); the fitness arrives as a nested reference for the same reason.
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
            from eggroll_np.distributed import _Replica

            self._replica = _Replica(ray.get(fitness_refs[0]), *args)

        def load(self, snapshot: Any) -> Any:
            return self._replica.load(snapshot)

        def evaluate(self, generation: int, start: int, stop: int) -> Any:
            return self._replica.evaluate(generation, start, stop)

        def tell(self, generation: int, fitness: Any) -> Any:
            return self._replica.tell(generation, fitness)

    return Worker


class RayEvaluator:
    """Runs ES generations with the population spread over Ray actors.

    Every actor holds a replica of (params, state); per generation only member ranges, fitness
    scalars and checksums travel. The driver keeps its own replica too (it applies the same
    `tell`), which is what restarts and resyncs broadcast.

    Example:
        >>> state = egg.init(params, population=64, seed=0)
        >>> with RayEvaluator(params, state, fitness_fn, workers=2) as ev:
        ...     params, state = ev.run(100)

    Args:
        params: parameter tree (NumPy leaves; CuPy leaves work when every actor has a GPU).
        state: ES state from `egg.init(params, ...)`.
        fitness: a picklable callable: member tree -> float, or with `batched=True`
            Population slice -> (stop - start,) array. With `factory=True`, a picklable
            zero-argument callable that each actor calls once to build that function (for
            environments or datasets that should be created on the worker, not shipped).
        workers: number of actors K.
        batched: evaluate each slice with one call on `pop.slice(start, stop)` instead of one
            call per `pop.member(i)`.
        factory: see `fitness`.
        address: address of an existing Ray cluster ("auto", "ray://host:10001", ...); None
            starts a local Ray (without dashboard) unless one is already initialised.
        cpus_per_worker: CPUs Ray reserves for each actor; also the actor's C++ thread count.
        on_mismatch: "raise" (default) raises `ReplicaMismatchError` after a checksum
            mismatch (call `resync()` to recover and continue); "resync" repairs the replica
            from the driver at once and counts it in the generation's report.
        max_failures: actor deaths tolerated within one generation before giving up.
        start_timeout: seconds to wait for a new actor to start and load its replica (on a
            cluster that lost a node, a replacement may find no free resources).

    Raises:
        ImportError: Ray is not installed.
        TypeError, ValueError: invalid arguments (nothing is started then).
    """

    def __init__(
        self,
        params: Any,
        state: Any,
        fitness: Callable[..., Any],
        *,
        workers: int = 2,
        batched: bool = False,
        factory: bool = False,
        address: str | None = None,
        cpus_per_worker: int = 1,
        on_mismatch: str = "raise",
        max_failures: int = 8,
        start_timeout: float = 300.0,
    ) -> None:
        es = _engine()  # the engine's validators: same messages as egg.init
        workers = es._int("workers", workers, 1)
        cpus_per_worker = es._int("cpus_per_worker", cpus_per_worker, 1)
        max_failures = es._int("max_failures", max_failures, 1)
        if not callable(fitness):
            raise TypeError(f"fitness must be callable, got {type(fitness).__name__}")
        start_timeout = es._float("start_timeout", start_timeout, 0.0, True)
        if on_mismatch not in ("raise", "resync"):
            raise ValueError(f"on_mismatch must be 'raise' or 'resync', got {on_mismatch!r}")
        es.check_state(params, state)
        ray = _require_ray()
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            if address is None:
                ray.init(
                    num_cpus=max(os.cpu_count() or 1, workers * cpus_per_worker),
                    include_dashboard=False,
                    log_to_driver=False,
                )
            else:
                ray.init(address=address, log_to_driver=False)
            self._owns_ray = True
        self._params, self._state = params, state
        self._checksum = checksum(params, state)
        self._batched = es._bool("batched", batched)
        self._on_mismatch = on_mismatch
        self._max_failures = max_failures
        self._start_timeout = start_timeout
        self._multiple = 2 if state.config.antithetic else 1
        self._remote = ray.remote(num_cpus=cpus_per_worker, max_restarts=0)(_worker_class())
        self._fitness_ref = ray.put(fitness)
        factory = es._bool("factory", factory)
        package_dir = os.path.dirname(os.path.abspath(__file__))
        self._actor_args = (
            package_dir,
            [self._fitness_ref],
            factory,
            self._batched,
            cpus_per_worker,
        )
        # Ray ships callables with cloudpickle (closures and lambdas included).
        self.setup_bytes = len(ray.cloudpickle.dumps(fitness, protocol=5))
        self.reports: list[GenerationReport] = []
        self._snapshot: tuple[int, Any] | None = None
        self._diverged = False
        self._pending_broadcast = 0
        self._fitness_nbytes: int | None = None
        self._actors: list[Any] = [None] * workers
        self._loads: dict[int, Any] = {}
        try:
            for slot in range(workers):
                self._start_actor(slot)
            self.setup_bytes += self._pending_broadcast
            self._pending_broadcast = 0
            self._confirm_loads()
        except BaseException:
            self.shutdown()
            raise

    # -- driver replica -------------------------------------------------------------------
    @property
    def params(self) -> Any:
        """The driver's replica of the parameters (identical to every worker's)."""
        return self._params

    @property
    def state(self) -> Any:
        """The driver's replica of the ES state."""
        return self._state

    @property
    def actors(self) -> list[Any]:
        """The current actor handles, one per worker slot (replaced ones included)."""
        return list(self._actors)

    # -- actors ---------------------------------------------------------------------------
    def _snapshot_ref(self) -> Any:
        gen = int(self._state.generation)
        if self._snapshot is None or self._snapshot[0] != gen:
            snap = (self._params, _portable(self._state))
            ref = self._ray.put(snap)
            self._snapshot = (gen, ref)
            self._snapshot_bytes = _stored_nbytes(self._ray, ref, snap)
        return self._snapshot[1]

    def _broadcast(self, slot: int) -> None:
        """Send the driver's (params, state) to the actor in `slot` (a queued `load`)."""
        ref = self._snapshot_ref()
        self._loads[slot] = self._actors[slot].load.remote(ref)
        self._pending_broadcast += self._snapshot_bytes

    def _start_actor(self, slot: int) -> None:
        old = self._actors[slot]
        if old is not None:
            self._ray.kill(old, no_restart=True)
        self._actors[slot] = self._remote.remote(*self._actor_args)
        self._broadcast(slot)

    def _confirm_loads(self) -> None:
        """Wait for queued loads, replacing actors that die first (up to `max_failures`)."""
        ray = self._ray
        failures = 0
        while self._loads:
            slot, ref = self._loads.popitem()
            try:
                gen, crc, build = ray.get(ref, timeout=self._start_timeout)
            except ray.exceptions.GetTimeoutError:
                raise RuntimeError(
                    f"worker {slot} did not start and load the params within "
                    f"{self._start_timeout} s (no free resources on the cluster?)"
                ) from None
            except ray.exceptions.RayActorError as exc:
                failures += 1
                if failures > self._max_failures:
                    # E.g. a fitness factory that raises: every new actor dies in __init__.
                    raise RuntimeError(
                        f"could not start a worker ({failures} tries); last error: {exc}"
                    ) from exc
                self._start_actor(slot)
                continue
            _check_build(slot, build)
            if (gen, crc) != (int(self._state.generation), self._checksum):
                raise ReplicaMismatchError(
                    f"worker {slot} loaded generation {gen} with checksum {crc:#010x}; the driver "
                    f"has generation {self._state.generation}, checksum {self._checksum:#010x}"
                )

    def resync(self) -> None:
        """Overwrite every worker's replica with the driver's (params, state)."""
        for slot in range(len(self._actors)):
            self._broadcast(slot)
        self._confirm_loads()
        self._pending_broadcast = 0
        self._diverged = False

    def shutdown(self) -> None:
        """Stop the actors, and Ray itself when this evaluator started it."""
        for actor in self._actors:
            if actor is not None:
                self._ray.kill(actor, no_restart=True)
        self._actors = [None] * len(self._actors)
        self._snapshot = None
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False

    def __enter__(self) -> RayEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- one generation -------------------------------------------------------------------
    def _gather_fitness(self, gen: int, tally: dict[str, int]) -> np.ndarray:
        """Evaluate every member of generation `gen` across the actors: float64 (N,)."""
        ray = self._ray
        n = int(self._state.config.population)
        fitness = np.empty(n, dtype=np.float64)
        pending: dict[Any, tuple[Any, int, int, int]] = {}

        def submit(slot: int, start: int, stop: int) -> None:
            actor = self._actors[slot]
            pending[actor.evaluate.remote(gen, start, stop)] = (actor, slot, start, stop)
            tally["bytes_sent"] += payload_nbytes((gen, start, stop))

        for slot, (start, stop) in enumerate(split_members(n, len(self._actors), self._multiple)):
            submit(slot, start, stop)
        failures = 0
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            actor, slot, start, stop = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError:
                failures += 1
                if failures > self._max_failures:
                    raise RuntimeError(
                        f"{failures} worker failures in generation {gen}; giving up"
                    ) from None
                if self._actors[slot] is actor:  # not replaced yet by an earlier failure
                    self._start_actor(slot)  # the replacement gets the pre-tell snapshot
                    tally["restarts"] += 1
                tally["reassigned"] += stop - start
                # Lost members go to the other actors (their `ask` for this generation is
                # already done), or to the replacement when there is no other actor.
                targets = [s for s in range(len(self._actors)) if s != slot] or [slot]
                parts = split_members(stop - start, len(targets), self._multiple)
                for target, (a, b) in zip(targets, parts, strict=False):  # parts may be fewer
                    submit(target, start + a, start + b)
                continue
            tally["bytes_received"] += payload_nbytes(result)
            fitness[start:stop] = result[2]
        return fitness

    def _tell_everywhere(self, gen: int, fitness: np.ndarray, tally: dict[str, int]) -> None:
        """Apply `tell` on every actor and on the driver; compare the checksums."""
        ray = self._ray
        self._confirm_loads()  # replacements started during the gather must be at `gen` first
        fit_ref = ray.put(fitness)
        if self._fitness_nbytes is None:  # (N,) float64 every generation: look it up once
            self._fitness_nbytes = _stored_nbytes(ray, fit_ref, fitness)
        tally["bytes_sent"] += self._fitness_nbytes
        tells = {}
        for slot, actor in enumerate(self._actors):
            tells[actor.tell.remote(gen, fit_ref)] = slot
            tally["bytes_sent"] += payload_nbytes(gen) + _ref_nbytes(fit_ref)
        try:  # runs while the actors do the same work
            params, state = _engine().tell(self._params, fitness, self._state)
        except BaseException:
            # `tell` is pure, so replicas that failed the same way are unchanged; one that
            # succeeded where the driver failed gets the driver's replica back.
            ok = [s for r, s in tells.items() if _succeeded(ray, r)]
            for slot in ok:
                self._broadcast(slot)
            self._confirm_loads()
            raise
        self._params, self._state = params, state
        self._checksum = checksum(params, state)
        self._snapshot = None
        expected = (int(state.generation), self._checksum)
        mismatched = []
        for ref, slot in tells.items():
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError:
                self._start_actor(slot)  # restarted with the post-tell snapshot
                tally["restarts"] += 1
                continue
            except Exception:  # noqa: BLE001 - the driver's tell succeeded, this one did not
                result = None
            else:
                tally["bytes_received"] += payload_nbytes(result)
            if result != expected:
                mismatched.append((slot, result))
        if mismatched and self._on_mismatch == "resync":
            for slot, _ in mismatched:
                self._broadcast(slot)
                tally["resyncs"] += 1
        self._confirm_loads()
        if mismatched and self._on_mismatch == "raise":
            self._diverged = True
            detail = ", ".join(
                f"worker {slot}: {'error' if r is None else f'{r[1]:#010x}'}"
                for slot, r in mismatched
            )
            raise ReplicaMismatchError(
                f"after generation {gen} the driver's checksum is {self._checksum:#010x} but "
                f"{detail}; call resync() to copy the driver's params and state to the workers"
            )

    def step(self) -> tuple[Any, Any]:
        """Run one generation across the workers.

        Returns:
            (params, state) after `tell`, the driver's replica (bit-identical to the workers').

        Raises:
            ReplicaMismatchError: a worker's checksum differs (with on_mismatch="raise"); the
                driver has advanced, call `resync()` before the next step.
            RuntimeError: more than `max_failures` actor deaths in this generation.
            Exception: whatever the fitness function or `tell` raised (params and state of the
                driver are then unchanged).
        """
        if self._actors[0] is None:
            raise RuntimeError("this RayEvaluator was shut down")
        if self._diverged:
            raise ReplicaMismatchError(
                "the workers' replicas differ from the driver's; call resync() before step()"
            )
        start_time = time.perf_counter()
        gen = int(self._state.generation)
        tally = dict(bytes_sent=0, bytes_received=0, reassigned=0, restarts=0, resyncs=0)
        self._pending_broadcast = 0
        fitness = self._gather_fitness(gen, tally)
        self._tell_everywhere(gen, fitness, tally)
        self.reports.append(
            GenerationReport(
                generation=gen,
                seconds=time.perf_counter() - start_time,
                broadcast_bytes=self._pending_broadcast,
                **tally,
            )
        )
        self._pending_broadcast = 0
        return self._params, self._state

    def run(self, generations: int) -> tuple[Any, Any]:
        """Run `generations` generations; returns the final (params, state)."""
        for _ in range(_engine()._int("generations", generations, 0)):
            self.step()
        return self._params, self._state


def _succeeded(ray: Any, ref: Any) -> bool:
    try:
        ray.get(ref)
    except Exception:  # noqa: BLE001 - any failure means "this replica did not advance"
        return False
    return True
