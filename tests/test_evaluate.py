"""step(..., batched=True, chunk=): the population in member chunks, values in member order."""

from __future__ import annotations

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import evaluate

N = 16


def _params(width: int = 8) -> dict:
    rng = np.random.default_rng(3)
    return {
        "W": rng.standard_normal((6, width)).astype(np.float32),
        "b": np.zeros(width, np.float32),
    }


def _state(params: dict, population: int = N) -> egg.ESState:
    return egg.init(params, population=population, sigma=0.1, lr=0.05, seed=5)


def _recording(fitness):
    """fitness, and the member ranges it was called on, as [(first member key, size), ...]."""
    seen = []

    def run(pop):
        seen.append(pop.size)
        return fitness(pop)

    return run, seen


def _per_member(pop):
    # Each member's value depends on that member only (its own noise keys and signs).
    return pop.member_keys.astype(np.float64) * pop.signs + 0.01 * pop.perturbed("b").sum(axis=1)


def _layer_fitness(x):
    def fit(pop):
        h = pop.linear(x, "W", "b", activation="relu")
        return -(h * h).mean(axis=(1, 2), dtype=np.float64)

    return fit


def _same_tree(a: dict, b: dict) -> None:
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("size", [1, 3, 5, 15, 16, 40])
def test_int_chunks_give_the_whole_populations_values(size):
    params = _params()
    whole, seen_whole = _recording(_per_member)
    want, _ = egg.step(params, whole, _state(params), batched=True, chunk=None)
    fit, seen = _recording(_per_member)
    got, state = egg.step(params, fit, _state(params), batched=True, chunk=size)
    assert seen_whole == [N]
    full, rest = divmod(N, size)
    assert seen == ([size] * full + ([rest] if rest else []) if size < N else [N])
    _same_tree(got, want)
    assert state.info["fitness_max"] == float(np.max(_per_member(egg.ask(params, _state(params)))))


@pytest.fixture
def budget_8mib(monkeypatch):
    monkeypatch.setattr(evaluate, "chunk_budget", lambda: 8 << 20)


@pytest.mark.usefixtures("budget_8mib")
def test_auto_chunks_from_the_previous_generations_activations():
    # 512 rows x 64 outputs x 4 bytes = 128 KiB a member: 64 members fill the 8 MiB budget.
    params = _params(width=64)
    x = np.random.default_rng(1).standard_normal((512, 6)).astype(np.float32)
    fit, seen = _recording(_layer_fitness(x))
    p1, s1 = egg.step(params, fit, _state(params, 256), batched=True)
    assert seen == [256]  # nothing measured yet: whole
    assert s1.info[evaluate.INFO_KEY] == 512 * 64 * 4
    p2, s2 = egg.step(p1, fit, s1, batched=True)
    assert seen == [256, 64, 64, 64, 64]
    assert s2.info[evaluate.INFO_KEY] == 512 * 64 * 4  # the slices' outputs count too
    want, _ = egg.step(p1, _layer_fitness(x), s1, batched=True, chunk=64)
    _same_tree(p2, want)  # "auto" is chunk=64 here
    whole, _ = egg.step(p1, _layer_fitness(x), s1, batched=True, chunk=None)
    for k in p2:  # BLAS may block a chunk's GEMM differently: the last bits only
        np.testing.assert_allclose(p2[k], whole[k], rtol=1e-6, atol=1e-7)


@pytest.mark.usefixtures("budget_8mib")
def test_auto_chunks_the_same_after_a_checkpoint(tmp_path):
    params = _params(width=64)
    x = np.random.default_rng(1).standard_normal((512, 6)).astype(np.float32)
    p1, s1 = egg.step(params, _layer_fitness(x), _state(params, 256), batched=True)
    egg.save(tmp_path / "run.npz", p1, s1)
    q1, t1 = egg.load(tmp_path / "run.npz")
    fit, seen = _recording(_layer_fitness(x))
    got, _ = egg.step(q1, fit, t1, batched=True)
    want, _ = egg.step(p1, _layer_fitness(x), s1, batched=True)
    assert seen == [64] * 4
    _same_tree(got, want)


def test_auto_runs_small_or_layerless_forwards_whole():
    params = _params()
    x = np.ones((2, 6), np.float32)
    for fitness in (_layer_fitness(x), _per_member):
        fit, seen = _recording(fitness)
        p, s = egg.step(params, fit, _state(params), batched=True)
        egg.step(p, fit, s, batched=True)
        assert seen == [N, N]


@pytest.mark.parametrize("chunk", [5, 3])
def test_chunks_read_their_rows_of_per_member_inputs(chunk):
    # x holds one input per member of the whole population; each chunk's layer takes its rows.
    params = _params(width=8)
    x = np.random.default_rng(2).standard_normal((N, 2, 6)).astype(np.float32)
    fit, seen = _recording(_layer_fitness(x))
    got, _ = egg.step(params, fit, _state(params), batched=True, chunk=chunk)
    assert len(seen) > 1
    want, _ = egg.step(params, _layer_fitness(x), _state(params), batched=True, chunk=None)
    for k in got:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7)


def test_slice_of_a_slice_reads_whole_population_rows():
    params = _params(width=8)
    pop = egg.ask(params, _state(params))
    x = np.random.default_rng(2).standard_normal((N, 2, 6)).astype(np.float32)
    whole = pop.linear(x, "W", "b")
    sub = pop.slice(4, 12).slice(2, 5)  # members 6, 7, 8
    np.testing.assert_allclose(sub.linear(x, "W", "b"), whole[6:9], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sub.linear(x[6:9], "W", "b"), whole[6:9], rtol=1e-6, atol=1e-7)


def test_layer_bytes_per_member_is_shared_with_slices():
    params = _params(width=8)
    pop = egg.ask(params, _state(params))
    assert pop.layer_bytes_per_member == 0
    sub = pop.slice(0, 4)
    sub.linear(np.ones((3, 6), np.float32), "W", "b")
    assert pop.layer_bytes_per_member == sub.layer_bytes_per_member == 3 * 8 * 4


@pytest.mark.parametrize(
    ("chunk", "error"),
    [(0, ValueError), (-2, ValueError), ("big", ValueError), (True, TypeError), (1.5, TypeError)],
)
def test_bad_chunk_is_refused_before_anything_runs(chunk, error):
    params = _params()
    before = {k: v.copy() for k, v in params.items()}
    state = _state(params)
    fit, seen = _recording(_per_member)
    with pytest.raises(error, match="chunk"):
        egg.step(params, fit, state, batched=True, chunk=chunk)
    assert seen == []
    _same_tree(params, before)
    assert state.generation == 0


def test_a_chunk_with_the_wrong_number_of_values_names_its_members():
    params = _params()

    def whole_population_only(pop):
        return np.zeros(N)  # ignores pop.size

    with pytest.raises(ValueError, match=r"members \[0, 4\).*chunk=None"):
        egg.step(params, whole_population_only, _state(params), batched=True, chunk=4)


def test_masked_values_in_a_chunk_are_refused_naming_the_member():
    params = _params()

    def masked(pop):
        f = np.ma.masked_array(np.zeros(pop.size), mask=np.zeros(pop.size, bool))
        if pop.size == 4 and pop.member_keys[0] == 4:  # members 8..11
            f[1] = np.ma.masked
        return f

    with pytest.raises(ValueError, match="member 9 masked"):
        egg.step(params, masked, _state(params), batched=True, chunk=4)


def _fake_caches(root, entries):
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")


@pytest.mark.parametrize(
    ("entries", "want"),
    [
        ([(1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"),
          (3, "Unified", "32768K")], 32 << 20),  # fmt: skip
        ([(1, "Data", "48K"), (2, "Unified", "2048K"), (3, "Unified", "64M")], 64 << 20),
        # a socket-wide mesh cache (a Xeon VM's 480 MiB L3): the measured 8 MiB instead
        ([(1, "Data", "48K"), (2, "Unified", "2048K"), (3, "Unified", "491520K")],
         evaluate.CHUNK_BYTES),  # fmt: skip
        ([(2, "Unified", "2048K"), (3, "Unified", "65537K")], evaluate.CHUNK_BYTES),
        ([(1, "Data", "32K"), (2, "Unified", "4096K")], evaluate.CHUNK_BYTES),  # never below
        ([(1, "Data", "32K"), (3, "Unified", "lots")], evaluate.CHUNK_BYTES),  # unreadable
        (None, evaluate.CHUNK_BYTES),  # no sysfs
    ],
)
def test_chunk_budget_is_the_last_level_cache(tmp_path, monkeypatch, entries, want):
    if entries is not None:
        _fake_caches(tmp_path, entries)
    monkeypatch.setattr(evaluate, "_CACHES", str(tmp_path if entries else tmp_path / "none"))
    evaluate.chunk_budget.cache_clear()
    try:
        assert evaluate.chunk_budget() == want
    finally:
        evaluate.chunk_budget.cache_clear()
