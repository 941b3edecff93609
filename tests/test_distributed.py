"""Tests for eggroll_np.distributed: Ray replicas agree bit for bit and exchange only scalars."""

from __future__ import annotations

import os
import pathlib
import signal
import sys
import threading
import time
from functools import partial

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np.distributed import (
    ReplicaMismatchError,
    checksum,
    payload_nbytes,
    split_members,
)

POP = 16
X = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)


def make_params(width: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "W": (0.3 * rng.standard_normal((6, width))).astype(np.float32),
        "b": np.zeros(width, dtype=np.float32),
    }


def member_fitness(p: dict[str, np.ndarray]) -> float:
    """Black-box fitness: minus the squared error of a linear map towards 1."""
    return -float(np.mean((X @ p["W"] + p["b"] - 1.0) ** 2))


def batched_fitness(pop: egg.Population) -> np.ndarray:
    """The same fitness as `member_fitness`, for a whole Population (slice) at once."""
    out = pop.matmul(X, "W") + pop.perturbed("b")[:, None, :]
    return -np.mean((out - 1.0) ** 2, axis=(1, 2))


def gated_fitness(gate: str, p: dict[str, np.ndarray]) -> float:
    """`member_fitness`; while gate/armed exists, each evaluation first writes
    gate/inflight-<pid> and waits for gate/release (the test kills one process meanwhile)."""
    if os.path.exists(os.path.join(gate, "armed")):
        open(os.path.join(gate, f"inflight-{os.getpid()}"), "w").close()
        wait_for_file(pathlib.Path(gate), "release")
    return member_fitness(p)


def wait_for_file(folder: pathlib.Path, pattern: str) -> int:
    """Block until a file matching `pattern` exists in folder (a stuck test fails after 120 s);
    the number after its last "-" (a pid), or 0."""
    for _ in range(12000):
        found = sorted(folder.glob(pattern))
        if found:
            tail = found[0].name.rsplit("-", 1)[-1]
            return int(tail) if tail.isdigit() else 0
        time.sleep(0.01)
    raise AssertionError(f"nothing matched {folder / pattern} within 120 s")


def crashing_fitness(trigger: str, p: dict[str, np.ndarray]) -> float:
    """Kills its own process once, when the test has created the trigger file."""
    try:
        os.remove(trigger)  # atomic: exactly one evaluation anywhere sees the file
    except FileNotFoundError:
        return member_fitness(p)
    os._exit(1)


def make_blas_sized_params() -> dict[str, np.ndarray]:
    """Leaves large enough that OpenBLAS's update GEMV changed its bits with its thread count."""
    rng = np.random.default_rng(0)
    return {
        "W": (0.1 * rng.standard_normal((300, 200))).astype(np.float32),
        "b": np.zeros(5000, dtype=np.float32),
    }


def quadratic_fitness(p: dict[str, np.ndarray]) -> float:
    """Elementwise float64 arithmetic only: the same value under any BLAS thread count."""
    return -float(sum(np.sum(np.square(v.astype(np.float64) - 0.1)) for v in p.values()))


def simd_level_in_worker(site_packages: str) -> str:
    """The C++ core's SIMD level in a Ray worker process (importing the installed package)."""
    sys.path.insert(0, site_packages)
    from eggroll_np import _ext

    return _ext.core.simd_level()


def make_member_fitness():
    """A fitness factory: each actor calls it once (for environments built on the worker)."""
    return member_fitness


def broken_factory():
    raise OSError("no simulator on this worker")


def workload_fitness(name: str, config: dict) -> object:
    """A factory that rebuilds a workload's fitness on the worker (as `train --workers` would)."""
    from eggroll_np.training.workloads import get

    return get(name).make(config).fitness


def single_process(params, state, fitness, generations: int, batched: bool = False):
    for _ in range(generations):
        params, state = egg.step(params, fitness, state, batched=batched)
    return params, state


def kill_and_wait(ray, actor) -> None:
    """ray.kill returns before the actor is gone: poll until calls fail with RayActorError."""
    ray.kill(actor)
    for _ in range(1000):
        try:
            ray.get(actor.evaluate.remote(-1, 0, 0))  # rejected (wrong generation) while alive
        except ray.exceptions.RayActorError:
            return
        except Exception:  # noqa: BLE001 - alive and rejecting the call
            time.sleep(0.01)
    raise AssertionError("the killed actor is still alive after 10 s")


def assert_same_params(a, b) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], strict=True)


# ---- helpers (no Ray needed) ---------------------------------------------------------------


@given(
    population=st.integers(0, 200),
    parts=st.integers(1, 9),
    multiple=st.sampled_from([1, 2]),
)
def test_split_members_covers_in_order_and_balanced(population, parts, multiple):
    ranges = split_members(population, parts, multiple)
    assert len(ranges) <= parts
    assert [a for a, _ in ranges[1:]] == [b for _, b in ranges[:-1]]
    assert (ranges[0][0], ranges[-1][1]) == (0, population) if ranges else population == 0
    assert all(b > a for a, b in ranges)
    assert all(a % multiple == 0 for a, _ in ranges)
    sizes = [-(-(b - a) // multiple) for a, b in ranges]
    assert not sizes or max(sizes) - min(sizes) <= 1


def test_split_members_rejects_bad_arguments():
    with pytest.raises(ValueError, match="parts"):
        split_members(10, 0)
    with pytest.raises(ValueError, match="population"):
        split_members(-1, 2)


def _counted(calls, name, real, *args, **kwargs):
    calls.append(name)
    return real(*args, **kwargs)


@pytest.mark.parametrize("batched", [True, False])
def test_a_replica_makes_each_generations_noise_once(monkeypatch, batched):
    # In process, no Ray: the body of a worker evaluates two slices, then applies the update.
    from eggroll_np import noise
    from eggroll_np.distributed.replica import _Replica

    params = make_params()
    state = egg.init(params, population=8, seed=5)
    want, want_state = single_process(
        params, state, batched_fitness if batched else member_fitness, 2, batched
    )
    calls = []
    for name in ("normals_many", "normals_batch"):
        real = getattr(noise, name)
        monkeypatch.setattr(noise, name, partial(_counted, calls, name, real))
    replica = _Replica(batched_fitness if batched else member_fitness, False, batched, 0)
    replica.load((params, state))
    for generation in range(2):
        f = np.concatenate(
            [replica.evaluate(generation, a, b)[2] for a, b in ((0, 3), (3, 8))]
        )
        calls.clear()
        replica.tell(generation, f)
        # The update reads the noise the slices were evaluated with. Black-box members are built
        # one at a time, so a full-rank leaf's noise is never held for every key and the update
        # makes it again chunk by chunk (`GenerationNoise.full_chunks`); the factors are reused.
        assert calls == ([] if batched else ["normals_batch"])
    assert_same_params(replica._params, want)
    assert replica._state.generation == want_state.generation


def test_checksum_sees_every_bit_of_params_and_optimizer_state():
    params = make_params()
    state = egg.init(params, population=POP, seed=0)
    base = checksum(params, state)
    assert checksum({k: v.copy() for k, v in params.items()}, state) == base
    flipped = {k: v.copy() for k, v in params.items()}
    flipped["W"].view(np.uint32)[2, 1] ^= 1  # one ulp
    assert checksum(flipped, state) != base
    _, told = egg.tell(params, np.arange(POP, dtype=np.float64), state)
    assert checksum(params, told) != base  # generation and Adam moments differ


def test_a_worker_running_another_build_is_named_with_the_fix():
    from eggroll_np.distributed.replica import _build, _check_build

    version, core, path = _build()
    _check_build(0, (version, core, "/elsewhere/eggroll_np"))  # another path, same build: fine
    with pytest.raises(RuntimeError, match="pip install -e"):
        _check_build(1, (version, not core, "/src/eggroll_np"))


def test_payload_nbytes_grows_with_array_size():
    grown = payload_nbytes(np.zeros(1000)) - payload_nbytes(np.zeros(10))
    assert 990 * 8 <= grown <= 990 * 8 + 16  # the data plus a wider length prefix


def test_without_ray_the_error_says_how_to_install(monkeypatch):
    from eggroll_np.distributed import RayEvaluator

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    params = make_params()
    with pytest.raises(ImportError, match=r"eggroll_np\[ray\]"):
        RayEvaluator(params, egg.init(params, population=POP), member_fitness)


# ---- on a local Ray ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip(
        "ray",
        reason="Ray is not installed (pip install 'eggroll_np[ray]'); distributed tests skipped",
    )
    from ray import cloudpickle

    # The fitness functions live in this test module, which the workers cannot import.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def evaluator_factory(ray_local):
    from eggroll_np.distributed import RayEvaluator

    made = []

    def make(params, state, fitness, **kwargs):
        ev = RayEvaluator(params, state, fitness, **kwargs)
        made.append(ev)
        return ev

    yield make
    for ev in made:
        ev.shutdown()


@pytest.mark.parametrize(
    ("fitness", "batched", "config"),
    [
        (member_fitness, False, {}),
        (batched_fitness, True, {}),
        (member_fitness, False, {"antithetic": False, "optimizer": "sgd", "shaping": "none"}),
        (batched_fitness, True, {"rank": 2, "noise_reuse": 2, "optimizer": "momentum"}),
    ],
)
def test_distributed_run_is_bit_identical_to_single_process(
    evaluator_factory, fitness, batched, config
):
    params = make_params()
    state = egg.init(params, population=POP, seed=7, **config)
    expected, expected_state = single_process(params, state, fitness, 4, batched)
    ev = evaluator_factory(params, state, fitness, workers=2, batched=batched)
    got, got_state = ev.run(4)
    assert got_state.generation == 4
    assert_same_params(got, expected)
    assert checksum(got, got_state) == checksum(expected, expected_state)
    assert [r.restarts + r.reassigned for r in ev.reports] == [0] * 4


def test_default_thread_settings_match_one_process(evaluator_factory):
    # Ray runs each 1-CPU actor with one BLAS thread while the driver and a single process keep
    # their default; the update's contraction must not care (issue 14: ReplicaMismatchError).
    params = make_blas_sized_params()
    state = egg.init(params, population=256, seed=1)
    expected, expected_state = single_process(params, state, quadratic_fitness, 3)
    ev = evaluator_factory(params, state, quadratic_fitness, workers=2)
    got, got_state = ev.run(3)
    assert_same_params(got, expected)
    assert checksum(got, got_state) == checksum(expected, expected_state)


def test_a_worker_with_another_simd_level_and_thread_counts_agrees(evaluator_factory, ray_local):
    # A stand-in for a cluster of different CPUs: worker 1 runs the baseline kernels with two
    # BLAS threads, worker 0 and the driver the best level with their defaults. The update is a
    # fixed sequence of float32 operations, so every replica keeps the same bits.
    env = {"EGGROLL_SIMD": "baseline", "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    site_packages = os.path.dirname(os.path.dirname(os.path.abspath(egg.__file__)))
    probe = ray_local.remote(simd_level_in_worker).options(runtime_env={"env_vars": env})
    assert ray_local.get(probe.remote(site_packages)) == "baseline"
    params = make_blas_sized_params()
    state = egg.init(params, population=256, seed=2, optimizer="adam")
    expected, _ = single_process(params, state, quadratic_fitness, 2)
    ev = evaluator_factory(params, state, quadratic_fitness, workers=2)
    ev._remote = ev._remote.options(runtime_env={"env_vars": env})
    ev._start_actor(1)  # replaced by an actor in that environment, loaded from the driver
    ev._confirm_loads()
    got, _ = ev.run(2)
    assert_same_params(got, expected)
    assert [r.restarts for r in ev.reports] == [0, 0]


def test_fitness_factory_runs_on_each_worker(evaluator_factory):
    params = make_params()
    state = egg.init(params, population=POP, seed=11)
    expected, _ = single_process(params, state, member_fitness, 2)
    ev = evaluator_factory(params, state, make_member_fitness, workers=2, factory=True)
    assert_same_params(ev.run(2)[0], expected)


def test_cartpole_workload_on_two_workers_matches_one_process(evaluator_factory):
    from eggroll_np.training.options import ES_KEYS, resolve_config
    from eggroll_np.training.workloads import get

    workload = get("cartpole")
    config = resolve_config(workload, {"population": 16, "episodes": 2, "max_steps": 60})
    task = workload.make(config)
    state = egg.init(task.params, **{k: config[k] for k in ES_KEYS})
    expected, _ = single_process(task.params, state, task.fitness, 3, batched=True)
    factory = partial(workload_fitness, "cartpole", config)
    ev = evaluator_factory(task.params, state, factory, workers=2, batched=True, factory=True)
    got, _ = ev.run(3)
    for a, b in zip(egg.tree.flatten(got)[0], egg.tree.flatten(expected)[0], strict=True):
        np.testing.assert_array_equal(a, b, strict=True)


def test_failing_factory_gives_up_with_its_error(evaluator_factory):
    params = make_params()
    state = egg.init(params, population=POP)
    with pytest.raises(RuntimeError, match="no simulator"):
        evaluator_factory(params, state, broken_factory, factory=True, max_failures=1)


def test_worker_that_cannot_be_placed_times_out(evaluator_factory):
    params = make_params()
    state = egg.init(params, population=POP)
    with pytest.raises(RuntimeError, match="did not start"):  # the local Ray has 2 CPUs
        evaluator_factory(params, state, member_fitness, cpus_per_worker=3, start_timeout=1.0)


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_actor_between_generations_is_replaced(evaluator_factory, ray_local, workers):
    params = make_params()
    state = egg.init(params, population=POP, seed=3)
    expected, _ = single_process(params, state, member_fitness, 4)
    ev = evaluator_factory(params, state, member_fitness, workers=workers)
    ev.run(2)
    kill_and_wait(ray_local, ev.actors[0])
    got, _ = ev.run(2)
    assert_same_params(got, expected)
    assert sum(r.restarts for r in ev.reports) == 1
    assert sum(r.reassigned for r in ev.reports) == POP // workers
    assert sum(r.broadcast_bytes for r in ev.reports) > 0  # the replacement got a snapshot


def test_actor_killed_mid_generation_still_completes(evaluator_factory, tmp_path):
    # No timer: once armed, the fitness holds each evaluation at a gate and says which process
    # it runs in; the test kills that process while its evaluation is provably in flight, then
    # opens the gate for the others.
    gate = tmp_path / "gate"
    gate.mkdir()
    params = make_params()
    state = egg.init(params, population=POP, seed=5)
    expected, _ = single_process(params, state, member_fitness, 3)
    ev = evaluator_factory(params, state, partial(gated_fitness, str(gate)), workers=2)
    ev.step()
    killed: list[int] = []

    def kill_the_first_in_flight() -> None:
        pid = wait_for_file(gate, "inflight-*")
        (gate / "armed").unlink()  # the replacement and the reassigned members pass straight on
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        (gate / "release").touch()

    (gate / "armed").touch()
    killer = threading.Thread(target=kill_the_first_in_flight)
    killer.start()
    got, _ = ev.run(2)
    killer.join()
    assert killed, "no evaluation reached the gate"
    assert_same_params(got, expected)
    assert ev.reports[1].restarts == 1
    assert ev.reports[1].reassigned >= 1


def test_actor_crashing_inside_fitness_is_replaced(evaluator_factory, tmp_path):
    trigger = tmp_path / "crash-once"
    params = make_params()
    state = egg.init(params, population=POP, seed=9)
    expected, _ = single_process(params, state, member_fitness, 3)
    ev = evaluator_factory(params, state, partial(crashing_fitness, str(trigger)), workers=2)
    ev.step()
    trigger.touch()  # the next member evaluated anywhere kills its actor's process
    got, _ = ev.run(2)
    assert not trigger.exists()
    assert_same_params(got, expected)
    assert ev.reports[1].restarts == 1
    assert ev.reports[1].reassigned >= 1


def test_bytes_per_generation_do_not_grow_with_parameter_count(evaluator_factory):
    sizes = {}
    for width in (4, 512):
        params = make_params(width)
        state = egg.init(params, population=POP, seed=0)
        ev = evaluator_factory(params, state, member_fitness, workers=2)
        ev.run(2)
        sizes[width] = ev.setup_bytes, [(r.bytes_sent, r.bytes_received) for r in ev.reports]
        ev.shutdown()
    (setup_small, per_gen_small), (setup_big, per_gen_big) = sizes[4], sizes[512]
    assert setup_big - setup_small > 2 * 6 * 508 * 4  # params (and Adam state) are sent once
    for (sent_s, recv_s), (sent_b, recv_b) in zip(per_gen_small, per_gen_big, strict=True):
        # Identical but for the checksums' pickled widths (a few bytes).
        assert abs(sent_b - sent_s) <= 16
        assert abs(recv_b - recv_s) <= 16
    # O(population): the (N,) float64 fitness out and back, plus small per-task overhead.
    for sent, received in per_gen_big:
        assert sent < 8 * POP + 400
        assert received < 8 * POP + 400


def test_mismatch_raises_and_resync_recovers(evaluator_factory, ray_local):
    params = make_params()
    state = egg.init(params, population=POP, seed=2)
    ev = evaluator_factory(params, state, member_fitness, workers=2)
    wrong = {k: v + np.float32(0.5) for k, v in params.items()}
    ray_local.get(ev.actors[1].load.remote((wrong, state)))  # a replica drifts
    with pytest.raises(ReplicaMismatchError, match="resync"):
        ev.step()
    with pytest.raises(ReplicaMismatchError, match="resync"):
        ev.step()  # refuses to go on with diverged replicas
    ev.resync()
    assert ev.step()[1].generation == 2
    # From the driver's generation-1 state, one more generation agrees with a single process.
    expected, _ = egg.step(ev.params, member_fitness, ev.state)
    assert_same_params(ev.step()[0], expected)


def test_fitness_error_propagates_and_leaves_driver_unchanged(evaluator_factory):
    params = make_params()
    state = egg.init(params, population=POP, seed=4)

    ev = evaluator_factory(params, state, batched_fitness, workers=2, batched=False)
    with pytest.raises(AttributeError):  # a params dict has no .matmul
        ev.step()
    assert ev.params is params
    assert ev.state is state


def test_nan_fitness_is_rejected_like_tell_and_leaves_state(evaluator_factory):
    params = make_params()
    state = egg.init(params, population=POP, seed=4)
    ev = evaluator_factory(params, state, lambda p: float("nan"), workers=2)
    with pytest.raises(ValueError, match="finite"):
        ev.step()
    assert ev.params is params
    assert ev.state is state
    assert not ev.reports


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"workers": 0}, ValueError, "workers"),
        ({"workers": 1.5}, TypeError, "workers"),
        ({"cpus_per_worker": 0}, ValueError, "cpus_per_worker"),
        ({"start_timeout": 0}, ValueError, "start_timeout"),
        ({"batched": "yes"}, TypeError, "batched"),
    ],
)
def test_bad_arguments_raise_before_starting_anything(ray_local, kwargs, error, match):
    from eggroll_np.distributed import RayEvaluator

    params = make_params()
    state = egg.init(params, population=POP)
    with pytest.raises(error, match=match):
        RayEvaluator(params, state, member_fitness, **kwargs)
    with pytest.raises(TypeError, match="fitness"):
        RayEvaluator(params, state, "not callable")
    with pytest.raises(TypeError, match="state"):
        RayEvaluator(params, {"generation": 0}, member_fitness)


def string_fitness(pop: egg.Population) -> np.ndarray:
    return np.array(["0.5"] * pop.size)


def test_batched_string_fitness_is_refused_like_one_process(evaluator_factory):
    params = make_params()
    state = egg.init(params, population=POP, seed=4)
    ev = evaluator_factory(params, state, string_fitness, workers=2, batched=True)
    with pytest.raises(TypeError, match="fitness must be real numbers"):
        ev.step()
    assert ev.params is params
    assert ev.state is state
