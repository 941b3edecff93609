"""Pinned results: final params of fixed runs and a 0.1.0 checkpoint, recorded before refactors.

The digests were written by eggroll_np 0.1.0 (main at 98874f3); any change to them means a
result is no longer bit-identical for the same seeds, which the noise contract forbids.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _ext

# The digests come from the C++ core's kernels (noise, fused low-rank correction, fused Adam);
# the pure-NumPy fallback rounds differently (within the contract's tolerance, not bit for bit).
pytestmark = pytest.mark.skipif(
    _ext.core is None, reason=f"digests recorded with the C++ core, not built: {_ext.core_error}"
)
DATA = Path(__file__).parent / "data"
X = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)


def _params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "W1": rng.standard_normal((6, 5)).astype(np.float32),
        "b1": rng.standard_normal(5).astype(np.float32),
        "W2": rng.standard_normal((5, 3)).astype(np.float64),
        "s": np.full((), rng.standard_normal(), np.float32),
    }


def _batched(pop: egg.Population) -> np.ndarray:
    h = np.tanh(pop.matmul(X, "W1") + pop.perturbed("b1")[:, None, :])
    o = pop.matmul(h, "W2")
    return -((o - 0.5) ** 2).mean(axis=(1, 2)) + pop.perturbed("s")


def _blackbox(p: dict[str, np.ndarray]) -> float:
    h = np.tanh(X @ p["W1"] + p["b1"])
    return float(-((h @ p["W2"] - 0.5) ** 2).mean() + p["s"])


def _digest(tree: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(tree):
        h.update(k.encode())
        h.update(np.ascontiguousarray(tree[k]).tobytes())
    return h.hexdigest()


PINNED = [
    ("batched", {}, "774dd0db3df232f4ab7d90653994c3b81a2e3d35459d7d81cf4379a5aa6d78c2"),
    ("blackbox", {}, "774dd0db3df232f4ab7d90653994c3b81a2e3d35459d7d81cf4379a5aa6d78c2"),
    (
        "batched",
        {"noise_reuse": 2},
        "af2a623bbfae23f45717f1909582a5f6a0317ca20735e0dfba5d91a51116d53f",
    ),
    (
        "blackbox",
        {"noise": "full", "optimizer": "momentum", "weight_decay": 0.1},
        "9e2d8bda4e1e1f0df53b07fa53dbfed855738160f4df7f35a414cddac994c77c",
    ),
]


@pytest.mark.parametrize(("mode", "extra", "expected"), PINNED)
def test_three_generations_give_the_pinned_params(mode: str, extra: dict, expected: str) -> None:
    kw = {"optimizer": "adam", **extra}
    p = _params()
    state = egg.init(p, population=8, sigma=0.1, lr=0.05, shaping="centered_rank", seed=3, **kw)
    for _ in range(3):
        fn = _batched if mode == "batched" else _blackbox
        p, state = egg.step(p, fn, state, batched=mode == "batched")
    assert _digest(p) == expected


def test_a_0_1_0_checkpoint_loads_and_resumes_bit_identically() -> None:
    # Written by 0.1.0 after 2 generations of the black-box run with adam(b1=0.8).
    p, state = egg.load(DATA / "checkpoint_0.1.0.npz")
    assert state.generation == 2
    assert state.config.optimizer == "adam"
    assert (state.config.population, state.config.seed) == (8, 3)
    assert state.config.hyperparams == egg.optim.Adam(b1=0.8)
    p, state = egg.step(p, _blackbox, state)
    assert _digest(p) == "0aabc98445966604304d83e3e3b5dc0352340002e5b0da400e6cf928cb7598c7"
