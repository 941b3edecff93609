"""Per-call cost of the population methods does not grow with the number of leaves."""

from __future__ import annotations

import numpy as np

import eggroll_np as egg
from eggroll_np import tree

LEAVES = 5000


class _CountingDict(dict):
    """The noise's store of arrays, counting lookups: a scan of every leaf per call shows."""

    def __init__(self, items, counts):
        super().__init__(items)
        self._counts = counts

    def __contains__(self, key):
        self._counts["noise_lookups"] += 1
        return super().__contains__(key)

    def get(self, key, default=None):
        self._counts["noise_lookups"] += 1
        return super().get(key, default)

    def __getitem__(self, key):
        self._counts["noise_lookups"] += 1
        return super().__getitem__(key)


def _params():
    rng = np.random.default_rng(0)
    return {
        "W": rng.standard_normal((4, 3)).astype(np.float32),
        "b": [np.full(2, j, np.float32) for j in range(LEAVES)],
    }


def test_one_perturbed_call_per_leaf_costs_o1_each(monkeypatch):
    params = _params()
    state = egg.init(params, population=4, optimizer="sgd")
    counts = {"path_str": 0, "noise_lookups": 0}
    real_path_str = tree.path_str

    def counting_path_str(path):
        counts["path_str"] += 1
        return real_path_str(path)

    monkeypatch.setattr(tree, "path_str", counting_path_str)

    def fitness(pop):
        pop.noise._items = _CountingDict(pop.noise._items, counts)
        x = np.ones((1, 4), np.float32)
        total = pop.matmul(x, "W")[:, 0, :].sum(axis=1)
        for j in range(LEAVES):
            total = total + pop.perturbed(("b", j)).sum(axis=1)
            total = total + pop.perturbed(f"b/{j}")[:, 0]
        return total

    new_params, new_state = egg.step(params, fitness, state, batched=True)
    assert new_state.generation == 1
    # O(leaves) in all: one pass to name the leaves, a handful of lookups per call. Scanning
    # every leaf on every call (the quadratic cost) would be ~2 * LEAVES**2 = 5e7 of each.
    assert counts["path_str"] <= 6 * LEAVES
    assert counts["noise_lookups"] <= 10 * LEAVES
    # and the result is right: every bias moved by its own noise
    assert not np.array_equal(new_params["b"][17], params["b"][17])


def test_black_box_members_of_many_leaves():
    params = _params()
    state = egg.init(params, population=2, optimizer="sgd")
    pop = egg.ask(params, state)
    counts = {"noise_lookups": 0}
    pop.noise._items = _CountingDict(pop.noise._items, counts)
    for i in range(pop.size):
        member = pop.member(i)
        assert len(member["b"]) == LEAVES
    assert counts["noise_lookups"] <= 4 * LEAVES * pop.size
