"""Quickstart: train a tiny regression model with eggroll_np.step in black-box mode."""

import numpy as np

import eggroll_np as egg

rng = np.random.default_rng(0)
X = rng.standard_normal((256, 8)).astype(np.float32)
y = np.sin(X @ rng.standard_normal(8)).astype(np.float32)  # a regression target
params = {"W": rng.normal(0, 0.3, (8, 16)).astype(np.float32), "v": np.zeros(16, np.float32)}


def fitness(p):  # one member -> float
    return -np.mean((np.tanh(X @ p["W"]) @ p["v"] - y) ** 2)


state = egg.init(params, population=64, sigma=0.05, lr=0.03, seed=0)
for _ in range(200):
    params, state = egg.step(params, fitness, state)
print(f"black-box: loss {-fitness(params):.4f} (start {np.mean(y**2):.4f})")
