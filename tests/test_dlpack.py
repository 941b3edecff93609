"""Arrays from any framework: DLPack exporters are adopted without a copy wherever arrays go in."""

from __future__ import annotations

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import backend


class Exporter:
    """A minimal non-NumPy DLPack producer: exports a NumPy array's memory, reports `device`."""

    def __init__(self, a: np.ndarray, device: tuple[int, int] = (1, 0), refuse: bool = False):
        self._a = a
        self._device = device
        self._refuse = refuse

    def __dlpack__(self, **kwargs):
        if self._refuse:
            raise BufferError("this exporter refuses to share its memory")
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "W": rng.standard_normal((6, 4)).astype(np.float32),
        "b": np.zeros(4, np.float32),
        "V": rng.standard_normal((4, 2)).astype(np.float32),
    }


def _exported(tree):
    return {k: Exporter(v) for k, v in tree.items()}


X = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)


def _pop_fitness(pop):
    h = np.tanh(pop.matmul(X, "W") + pop.perturbed("b")[:, None, :])
    return -np.mean(pop.matmul(h, "V") ** 2, axis=(1, 2))


def test_as_array_shares_the_exporters_memory():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # strided: shared as it is
    out = backend.as_array(Exporter(a), "x")
    assert type(out) is np.ndarray
    assert np.shares_memory(out, a)
    np.testing.assert_array_equal(out, a)
    assert out.dtype == a.dtype
    assert out.strides == a.strides


def test_as_array_leaves_native_arrays_and_plain_values_alone():
    a = np.ones(3, np.float32)
    assert backend.as_array(a, "x") is a
    lst = [1.0, 2.0]
    assert backend.as_array(lst, "x") is lst


@pytest.mark.skipif(backend.cupy is not None, reason="CuPy is installed: CUDA exports are adopted")
def test_cuda_exporter_without_cupy_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"x \(.*Exporter\) is in CUDA device memory.*CuPy"):
        backend.as_array(Exporter(np.ones(3, np.float32), device=(2, 0)), "x")


@pytest.mark.parametrize(
    ("device", "where"), [((10, 0), "ROCm"), ((99, 0), "DLPack device type 99")]
)
def test_other_devices_are_refused_by_name(device, where):
    with pytest.raises(TypeError, match=f"leaf 'W'.*lives on {where}"):
        backend.as_array(Exporter(np.ones(3, np.float32), device=device), "params leaf 'W'")


def test_a_refused_export_names_the_argument_and_the_reason():
    with pytest.raises(TypeError, match=r"fitness .*could not be shared.*refuses"):
        backend.as_array(Exporter(np.ones(3), refuse=True), "fitness")


def test_to_numpy_takes_exporters():
    a = np.arange(4.0)
    assert np.shares_memory(backend.to_numpy(Exporter(a)), a)


def test_exported_params_train_exactly_like_numpy_params():
    p_np, p_ex = _params(), _exported(_params())
    s_np = egg.init(p_np, population=8, sigma=0.1, lr=0.05, seed=3)
    s_ex = egg.init(p_ex, population=8, sigma=0.1, lr=0.05, seed=3)
    for _ in range(3):
        p_np, s_np = egg.step(p_np, _pop_fitness, s_np, batched=True)
        p_ex, s_ex = egg.step(p_ex, _pop_fitness, s_ex, batched=True)
        assert all(type(v) is np.ndarray for v in p_ex.values())  # results are NumPy arrays
    for k in p_np:
        np.testing.assert_array_equal(p_ex[k], p_np[k])


def test_blackbox_members_and_fitness_from_exporters():
    params = _exported(_params())
    state = egg.init(params, population=4, sigma=0.1, lr=0.05, seed=0)

    def fitness(p):  # returns a 0-d DLPack exporter, as a framework's scalar tensor would
        assert all(type(v) is np.ndarray for v in p.values())
        return Exporter(np.asarray(-np.sum(p["W"] ** 2)))

    new, state = egg.step(params, fitness, state)
    assert state.generation == 1
    assert type(new["W"]) is np.ndarray


def test_ask_tell_with_exported_fitness_and_inputs():
    params = _params()
    state = egg.init(params, population=8, sigma=0.1, lr=0.05, seed=1)
    pop = egg.ask(params, state)
    np.testing.assert_array_equal(pop.matmul(Exporter(X), "W"), pop.matmul(X, "W"))
    f = _pop_fitness(pop)
    p1, s1 = egg.tell(params, Exporter(f), state)
    p2, s2 = egg.tell(params, f, state)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    assert s1.info == s2.info


def test_the_exporters_memory_is_never_written():
    w = _params()["W"]
    before = w.copy()
    params = {"W": Exporter(w)}
    state = egg.init(params, population=4, sigma=0.1, lr=0.1, seed=0)
    egg.step(
        params, lambda pop: -np.mean(pop.matmul(X, "W") ** 2, axis=(1, 2)), state, batched=True
    )
    np.testing.assert_array_equal(w, before)


@pytest.mark.skipif(backend.cupy is not None, reason="CuPy is installed: CUDA exports are adopted")
def test_a_cuda_leaf_without_cupy_names_the_leaf():
    params = {"W": Exporter(np.ones((2, 2), np.float32), device=(2, 0))}
    with pytest.raises(TypeError, match=r"params leaf 'W'.*CUDA.*CuPy"):
        egg.init(params, population=4)


def test_a_refused_input_names_x():
    params = _params()
    pop = egg.ask(params, egg.init(params, population=4, seed=0))
    with pytest.raises(TypeError, match=r"^x .*could not be shared"):
        pop.matmul(Exporter(X, refuse=True), "W")


# PyTorch, where it is installed: the same paths with real tensors.


def test_torch_tensors_are_adopted_without_a_copy():
    torch = pytest.importorskip("torch")
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    params = {"W": t}
    state = egg.init(params, population=4, sigma=0.1, lr=0.1, seed=0)
    pop = egg.ask(params, state)
    np.testing.assert_array_equal(pop.member(0)["W"].shape, (3, 4))
    leaf = backend.as_array(t, "x")
    assert np.shares_memory(leaf, t.numpy())
    x = torch.ones(2, 3)
    out = pop.matmul(x, "W")
    assert type(out) is np.ndarray
    assert out.shape == (4, 2, 4)
    new, _ = egg.tell(params, torch.linspace(0, 1, 4), state)
    assert type(new["W"]) is np.ndarray
    np.testing.assert_array_equal(t.numpy(), np.arange(12, dtype=np.float32).reshape(3, 4))


def test_torch_tensor_requiring_grad_names_the_leaf():
    torch = pytest.importorskip("torch")
    params = {"layer": {"weight": torch.ones(2, 2, requires_grad=True)}}
    with pytest.raises(TypeError, match=r"params leaf 'layer/weight'.*detach"):
        egg.init(params, population=4)


def _example(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"{path} not present (tests copied without the examples)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the __main__ block (the long run) does not execute
    return module


@pytest.mark.parametrize(
    ("name", "batched", "population"),
    [("torch_module_blackbox", False, 64), ("torch_module_batched", True, 128)],
)
def test_torch_examples_train_the_module(name, batched, population):
    pytest.importorskip("torch")
    if batched and not hasattr(egg.Population, "linear"):
        pytest.skip("this build has no population layers (Population.linear)")
    ex = _example(name)
    fitness = ex.pop_fitness if batched else ex.fitness
    params = ex.params
    before = ex.mse(params)
    state = egg.init(params, population=population, sigma=0.05, lr=0.03, seed=0)
    for _ in range(60):
        params, state = egg.step(params, fitness, state, batched=batched)
    assert ex.mse(params) < 0.85 * before


def test_population_layers_take_exported_inputs_and_ids():
    if not hasattr(egg.Population, "linear"):
        pytest.skip("this build has no population layers (Population.linear/embed)")
    rng = np.random.default_rng(2)
    params = {
        "E": rng.standard_normal((10, 6)).astype(np.float32),
        "W": rng.standard_normal((6, 3)).astype(np.float32),
        "b": np.zeros(3, np.float32),
    }
    pop = egg.ask(params, egg.init(params, population=4, seed=0))
    ids = np.array([[1, 2, 9]], dtype=np.int64)
    np.testing.assert_array_equal(pop.embed(Exporter(ids), "E"), pop.embed(ids, "E"))
    out = pop.linear(Exporter(X), "W", "b", activation="relu")
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, pop.linear(X, "W", "b", activation="relu"))
    if backend.cupy is None:
        with pytest.raises(TypeError, match=r"^ids .*CUDA"):
            pop.embed(Exporter(ids, device=(2, 0)), "E")
