"""Distributed populations on Ray: replicas of params/state on every worker, only fitness travels.

Noise is a pure function of (seed, leaf, member, epoch), so a worker holding (params, state)
regenerates any member's perturbation. Each generation, every actor evaluates a slice of members,
the driver gathers the (N,) fitness and sends it to all, and every replica (the driver's too)
applies the same `tell` and compares checksums: O(N) scalars per generation, whatever the
parameter count. A dead actor is replaced by broadcast and its members re-evaluated elsewhere.
Needs the `ray` extra: ``pip install 'eggroll_np[ray]'``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _checks, es, tree
from .replica import _build, _check_build, _worker_class, checksum, split_members
from .traffic import GenerationReport, payload_nbytes, stored_nbytes

__all__ = ["RayEvaluator", "ReplicaMismatchError"]


class ReplicaMismatchError(RuntimeError):
    """A worker's params/state checksum differs from the driver's after `tell`."""


def _require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "eggroll_np.distributed needs Ray: pip install 'eggroll_np[ray]'"
        ) from exc
    return ray


class RayEvaluator:
    """Runs ES generations with the population spread over Ray actors.

    The driver keeps its own replica (it applies the same `tell`): restarts and `resync()`
    broadcast it. A checksum mismatch raises `ReplicaMismatchError`; `resync()` recovers.

    Example:
        >>> state = egg.init(params, population=64, seed=0)
        >>> with RayEvaluator(params, state, fitness_fn, workers=2) as ev:
        ...     params, state = ev.run(100)

    Args:
        params: parameter tree (NumPy leaves; CuPy leaves work when every actor has a GPU).
        state: ES state from `egg.init(params, ...)`.
        fitness: picklable: member tree -> float, or (`batched=True`) Population slice ->
            (stop - start,) array; with `factory=True`, a picklable zero-argument callable that
            each actor calls once to build it (for data or environments made on the worker).
        workers: number of actors K.
        batched, factory: see `fitness`.
        address: an existing Ray cluster ("auto", "HOST:6379", ...); None starts a local Ray
            (no dashboard) unless Ray is already initialised.
        cpus_per_worker: CPUs Ray reserves for each actor; also the actor's C++ thread count.
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
        max_failures: int = 8,
        start_timeout: float = 300.0,
    ) -> None:
        workers = _checks.integer("workers", workers, 1)
        cpus_per_worker = _checks.integer("cpus_per_worker", cpus_per_worker, 1)
        max_failures = _checks.integer("max_failures", max_failures, 1)
        _checks.callable_("fitness", fitness)
        start_timeout = _checks.real("start_timeout", start_timeout, 0.0, True)
        batched = _checks.boolean("batched", batched)
        factory = _checks.boolean("factory", factory)
        leaves = es.check_state(params, state)
        if any(a is not b for a, b in zip(leaves, tree.flatten(params)[0], strict=True)):
            params = state.spec.unflatten(leaves)  # DLPack leaves (torch, ...) adopted, as in tell
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
        self._batched = batched
        self._max_failures = max_failures
        self._start_timeout = start_timeout
        self._multiple = 2 if state.config.antithetic else 1
        self.reports: list[GenerationReport] = []
        self._snapshot: tuple[int, Any] | None = None
        self._diverged = False
        self._pending_broadcast = 0
        self._fitness_nbytes: int | None = None
        self._actors: list[Any] = [None] * workers
        self._loads: dict[int, Any] = {}
        try:  # from here on a failure (an unpicklable fitness too) shuts down what was started
            self._remote = ray.remote(num_cpus=cpus_per_worker, max_restarts=0)(_worker_class())
            self._fitness_ref = ray.put(fitness)
            package_dir = _build()[2]  # the eggroll_np the workers must import too
            self._actor_args = (
                package_dir,
                [self._fitness_ref],
                factory,
                self._batched,
                cpus_per_worker,
            )
            self.setup_bytes = len(ray.cloudpickle.dumps(fitness, protocol=5))
            for slot in range(workers):
                self._start_actor(slot)
            self.setup_bytes += self._pending_broadcast
            self._pending_broadcast = 0
            self._confirm_loads()
        except BaseException:
            self.shutdown()
            raise

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

    def _snapshot_ref(self) -> Any:
        gen = int(self._state.generation)
        if self._snapshot is None or self._snapshot[0] != gen:
            snap = (self._params, self._state)
            ref = self._ray.put(snap)
            self._snapshot = (gen, ref)
            self._snapshot_bytes = stored_nbytes(self._ray, ref, snap)
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
            self._fitness_nbytes = stored_nbytes(ray, fit_ref, fitness)
        tally["bytes_sent"] += self._fitness_nbytes
        tells = {}
        for slot, actor in enumerate(self._actors):
            tells[actor.tell.remote(gen, fit_ref)] = slot
            tally["bytes_sent"] += payload_nbytes(gen) + len(fit_ref.binary())  # ref: its id
        try:  # runs while the actors do the same work
            params, state = es.tell(self._params, fitness, self._state)
        except BaseException:
            # `tell` is pure: replicas that failed the same way are unchanged; one that
            # succeeded where the driver failed gets the driver's replica back.
            for ref, slot in tells.items():
                with contextlib.suppress(Exception):
                    ray.get(ref)
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
        self._confirm_loads()
        if mismatched:
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
        """One generation across the workers: the driver's (params, state) after `tell`.

        Raises:
            ReplicaMismatchError: a worker's checksum differs; the driver has advanced, call
                `resync()` before the next step.
            RuntimeError: more than `max_failures` actor deaths in this generation.
            Exception: what the fitness or `tell` raised (the driver's replica is unchanged).
        """
        if self._actors[0] is None:
            raise RuntimeError("this RayEvaluator was shut down")
        if self._diverged:
            raise ReplicaMismatchError(
                "the workers' replicas differ from the driver's; call resync() before step()"
            )
        start_time = time.perf_counter()
        gen = int(self._state.generation)
        tally = dict(bytes_sent=0, bytes_received=0, reassigned=0, restarts=0)
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
        for _ in range(_checks.integer("generations", generations, 0)):
            self.step()
        return self._params, self._state
