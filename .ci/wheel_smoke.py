"""CI smoke test of an installed wheel: `python wheel_smoke.py VENV` from outside the source tree.

Checks that eggroll_np is imported from VENV (not from a checkout), that the wheel's C++ core
loaded, and that a few generations in both modes fit a small linear model, through a checkpoint.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import eggroll_np as egg
from eggroll_np import _ext

venv = Path(sys.argv[1]).resolve()
here = Path(egg.__file__).resolve()
if not here.is_relative_to(venv):
    sys.exit(f"eggroll_np was imported from {here}, not from the wheel installed in {venv}")
if _ext.core is None:
    sys.exit(f"the wheel's C++ core did not load: {_ext.core_error}")

rng = np.random.default_rng(0)
X = rng.standard_normal((64, 8)).astype(np.float32)
y = (X @ rng.standard_normal(8)).astype(np.float32)


def loss(w: np.ndarray) -> float:
    return float(np.mean((X @ w[:, 0] - y) ** 2))


def batched(pop: egg.Population) -> np.ndarray:
    return -np.mean((pop.matmul(X, "W")[..., 0] - y) ** 2, axis=1)


params = {"W": np.zeros((8, 1), np.float32)}
start = loss(params["W"])
state = egg.init(params, population=32, sigma=0.05, lr=0.05, seed=0)
for _ in range(20):
    params, state = egg.step(params, batched, state, batched=True)
with tempfile.TemporaryDirectory() as tmp:
    egg.save(Path(tmp) / "ckpt.npz", params, state)
    params, state = egg.load(Path(tmp) / "ckpt.npz")
for _ in range(20):
    params, state = egg.step(params, lambda p: -loss(p["W"]), state)
end = loss(params["W"])
if not end < 0.5 * start:
    sys.exit(f"40 generations did not halve the loss: {start:.4f} -> {end:.4f}")
print(f"wheel smoke test OK ({here.parent}): loss {start:.3f} -> {end:.3f} in 40 generations")
