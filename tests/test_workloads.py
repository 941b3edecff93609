"""Workloads, each in a tiny configuration: learning happens, forwards agree, resume is exact."""

from __future__ import annotations

import dataclasses
import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import optim
from eggroll_np.models import mlp
from eggroll_np.training import train
from eggroll_np.training.workloads import NAMES, cartpole, common, get, matching, mnist

pytest.importorskip("sklearn")


def _steps(task, config, generations):
    keys = ("population", "sigma", "lr", "rank", "seed", "optimizer", "shaping")
    state = egg.init(task.params, **{k: config[k] for k in keys})
    params = task.params
    for _ in range(generations):
        params, state = egg.step(params, task.fitness, state, batched=task.batched)
    return params, state


def _config(name, **kw):
    return train.resolve_config(get(name), kw)


def test_registry_names_and_unknown():
    assert [get(n).name for n in NAMES] == list(NAMES)
    with pytest.raises(ValueError, match="unknown workload 'nope'"):
        get("nope")


def test_population_forward_matches_each_member():
    params = mlp.init((5, 7, 3), np.random.default_rng(0))
    state = egg.init(params, population=6, sigma=0.1, seed=3)
    pop = egg.ask(params, state)
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    got = mlp.population_forward(pop, x, "gelu")
    assert got.shape == (6, 4, 3)
    for i in range(pop.size):
        want = mlp.forward(pop.member(i), x, "gelu")
        np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-5)


def test_generation_rng_is_a_function_of_seed_and_generation():
    a = common.generation_rng(1, 5).random(3)
    np.testing.assert_array_equal(a, common.generation_rng(1, 5).random(3))
    assert not np.array_equal(a, common.generation_rng(1, 6).random(3))
    assert not np.array_equal(a, common.generation_rng(2, 5).random(3))


@pytest.mark.parametrize(
    ("fitness", "generations", "floor"), [("xent", 40, 0.5), ("accuracy", 60, 0.25)]
)
def test_digits_learns_well_above_chance(fitness, generations, floor):
    # Chance is 0.1; the non-differentiable accuracy fitness learns more slowly.
    config = _config(
        "digits", population=64, hidden=(16,), batch=128, fitness=fitness, baseline=False, lr=0.03
    )
    task = get("digits").make(config)
    before = task.evaluate(task.params)["test_accuracy"]
    params, _ = _steps(task, config, generations)
    after = task.evaluate(params)["test_accuracy"]
    assert after > floor > before
    assert task.baseline is None


def test_digits_baseline_is_mlpclassifier():
    config = _config("digits", hidden=(8,))
    result = get("digits").make(config).baseline()
    assert 0.8 < result["baseline_test_accuracy"] <= 1.0


def test_cartpole_numpy_dynamics_match_gymnasium():
    gym = pytest.importorskip("gymnasium")
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=7)
    sim = cartpole.CartPoleBatch(np.asarray(obs, np.float64)[None])
    rng = np.random.default_rng(0)
    for _ in range(60):
        action = int(rng.integers(2))
        obs, _, terminated, _, _ = env.step(action)
        done = sim.step(np.array([action]))
        np.testing.assert_allclose(sim.state[0], obs, rtol=1e-5, atol=1e-6)
        assert bool(done[0]) == terminated
        if terminated:
            break
    env.close()


def test_cartpole_learns_well_above_random_policy():
    pytest.importorskip("gymnasium")
    config = _config("cartpole", population=32, episodes=2, eval_episodes=5)
    task = get("cartpole").make(config)
    random_return = task.baseline()["random_policy_return"]
    params, state = _steps(task, config, 20)
    result = task.evaluate(params)  # on gymnasium's env, seeds never used in training
    assert random_return < 30
    assert result["eval_return"] > 100
    assert state.info["fitness_max"] > 100


def test_matching_parameter_error_falls():
    config = _config("matching", population=32, inputs=4, outputs=3, batch=64, lr=0.03)
    task = get("matching").make(config)
    start = task.evaluate(task.params)["parameter_error"]
    params, _ = _steps(task, config, 150)
    end = task.evaluate(params)
    assert end["parameter_error"] < 0.3 * start
    assert matching.parameter_error(params, params) == 0.0


def test_hyperparams_improves_cv_accuracy():
    config = _config("hyperparams", population=4, samples=300)
    task = get("hyperparams").make(config)
    assert task.batched is False
    start = task.evaluate(task.params)["cv_accuracy"]
    params, _ = _steps(task, config, 4)
    assert task.evaluate(params)["cv_accuracy"] > start + 0.1


# MNIST loader: tiny synthetic files written here, in both formats.


def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    return head + arr.tobytes()


def _synthetic_mnist(n: int, seed: int):
    # Two classes told apart by which half of the image is bright: learnable in a few steps.
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.uint8)
    x = rng.integers(0, 60, (n, 6, 6)).astype(np.uint8)
    x[y == 0, :3] += 150
    x[y == 1, 3:] += 150
    return x, y


def _write_idx_dir(directory, gz: bool):
    x_tr, y_tr = _synthetic_mnist(120, 0)
    x_te, y_te = _synthetic_mnist(40, 1)
    files = {
        "train-images-idx3-ubyte": x_tr,
        "train-labels-idx1-ubyte": y_tr,
        "t10k-images-idx3-ubyte": x_te,
        "t10k-labels-idx1-ubyte": y_te,
    }
    for name, arr in files.items():
        if gz:
            with gzip.open(directory / (name + ".gz"), "wb") as fh:
                fh.write(_idx_bytes(arr))
        else:
            (directory / name).write_bytes(_idx_bytes(arr))
    return x_tr, y_tr, x_te, y_te


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx(tmp_path, gz):
    x_tr, y_tr, x_te, y_te = _write_idx_dir(tmp_path, gz)
    got = mnist.load(tmp_path)
    assert got[0].shape == (120, 36)
    assert got[0].dtype == np.float32
    np.testing.assert_allclose(got[0], x_tr.reshape(120, 36) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(got[1], y_tr)
    np.testing.assert_array_equal(got[3], y_te)
    name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    np.testing.assert_array_equal(mnist.read_idx(tmp_path / name), x_te)


def test_mnist_reads_npz(tmp_path):
    x_tr, y_tr = _synthetic_mnist(50, 0)
    x_te, y_te = _synthetic_mnist(20, 1)
    np.savez(tmp_path / "mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    for where in (tmp_path, tmp_path / "mnist.npz"):
        got = mnist.load(where)
        np.testing.assert_array_equal(got[1], y_tr)
        assert got[2].shape == (20, 36)


def test_mnist_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="--data is required.*nothing is downloaded"):
        mnist.load(None)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        mnist.load(tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        mnist.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(np.zeros((3, 2), np.uint8))[:-1])
    with pytest.raises(ValueError, match="header says shape"):
        mnist.read_idx(short)
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="lacks arrays"):
        mnist.load(tmp_path / "partial.npz")


def test_mnist_learns_on_synthetic_files(tmp_path):
    _write_idx_dir(tmp_path, gz=True)
    config = _config("mnist", data=str(tmp_path), population=32, hidden=(8,), batch=64, lr=0.03)
    task = get("mnist").make(config)
    params, _ = _steps(task, config, 20)
    assert task.evaluate(params)["test_accuracy"] > 0.9


# Resume: through train.run, the loop every workload shares.


def _leaves(path):
    params, state = egg.load(path)
    return [np.asarray(leaf) for leaf in _flatten(params)], state


def _flatten(tree):
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in _flatten(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [x for v in tree for x in _flatten(v)]
    return [tree]


def _assert_same_run(a, b):
    la, sa = _leaves(a / train.CHECKPOINT)
    lb, sb = _leaves(b / train.CHECKPOINT)
    assert sa.generation == sb.generation
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x, y)
    assert sa.opt_state.count == sb.opt_state.count
    for x, y in zip(*map(optim.state_arrays, (sa.opt_state, sb.opt_state)), strict=True):
        np.testing.assert_array_equal(x, y)
    ra, rb = train.read_metrics(str(a / train.METRICS)), train.read_metrics(str(b / train.METRICS))
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in ra]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rb]


def test_resume_gives_the_uninterrupted_run(tmp_path):
    kw = {"population": 16, "inputs": 4, "outputs": 3, "batch": 32}
    full, part = tmp_path / "full", tmp_path / "part"
    train.run("matching", out=str(full), generations=8, **kw)
    train.run("matching", out=str(part), generations=3, checkpoint_every=2, **kw)
    summary = train.run(
        "matching", out=str(part), resume=str(part / train.CHECKPOINT), generations=8
    )
    assert summary["generations"] == 8
    _assert_same_run(full, part)
    assert (part / train.PLOT).stat().st_size > 0


def test_keyboard_interrupt_saves_a_checkpoint_to_resume_from(tmp_path, monkeypatch):
    kw = {"population": 16, "inputs": 4, "outputs": 3, "batch": 32}
    full, part = tmp_path / "full", tmp_path / "part"
    train.run("matching", out=str(full), generations=7, **kw)

    w = matching.WORKLOAD

    def interrupting_make(config):
        task = w.make(config)

        def fitness(pop):
            if pop.generation == 4:
                raise KeyboardInterrupt
            return task.fitness(pop)

        return dataclasses.replace(task, fitness=fitness)

    monkeypatch.setattr(matching, "WORKLOAD", dataclasses.replace(w, make=interrupting_make))
    with pytest.raises(KeyboardInterrupt):
        train.run("matching", out=str(part), generations=7, checkpoint_every=100, **kw)
    assert egg.load(part / train.CHECKPOINT)[1].generation == 4
    monkeypatch.setattr(matching, "WORKLOAD", w)
    train.run("matching", out=str(part), resume=str(part / train.CHECKPOINT))
    _assert_same_run(full, part)


def test_resume_rejects_changed_settings(tmp_path):
    kw = {"population": 16, "inputs": 4, "outputs": 3, "batch": 32}
    train.run("matching", out=str(tmp_path), generations=2, **kw)
    ckpt = str(tmp_path / train.CHECKPOINT)
    with pytest.raises(ValueError, match=r"--population 32 \(the run has 16\)"):
        train.run("matching", out=str(tmp_path), resume=ckpt, population=32)
    with pytest.raises(ValueError, match="is a 'matching' run, not 'digits'"):
        train.run("digits", out=str(tmp_path), resume=ckpt)
    with pytest.raises(TypeError, match="no option"):
        train.run("matching", out=str(tmp_path), hidden=(3,))


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    dtype=st.sampled_from([">u1", ">i1", ">i2", ">i4", ">f4", ">f8"]),
    gz=st.booleans(),
    data=st.data(),
)
def test_read_idx_round_trips_every_idx_type(tmp_path_factory, shape, dtype, gz, data):
    codes = {">u1": 0x08, ">i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}
    n = int(np.prod(shape))
    values = data.draw(st.lists(st.integers(-100, 100), min_size=n, max_size=n))
    arr = np.asarray(values).astype(dtype).reshape(shape)
    raw = bytes([0, 0, codes[dtype], len(shape)]) + np.asarray(shape, ">u4").tobytes()
    raw += arr.tobytes()
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    got = mnist.read_idx(path)
    assert got.shape == tuple(shape)
    np.testing.assert_array_equal(got, arr)
