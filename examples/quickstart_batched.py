"""Quickstart: the same model in batched mode, every member evaluated at once through Population."""

import numpy as np

import eggroll_np as egg

rng = np.random.default_rng(0)
X = rng.standard_normal((256, 8)).astype(np.float32)
y = np.sin(X @ rng.standard_normal(8)).astype(np.float32)
params = {"W": rng.normal(0, 0.3, (8, 16)).astype(np.float32), "V": np.zeros((16, 1), np.float32)}


def pop_fitness(pop):  # all members at once -> (N,)
    h = np.tanh(pop.matmul(X, "W"))  # (N, 256, 16): X @ W once, plus low-rank terms
    out = pop.matmul(h, "V")[..., 0]  # per-member inputs (N, 256, 16)
    return -np.mean((out - y) ** 2, axis=1)


state = egg.init(params, population=256, sigma=0.05, lr=0.03, seed=0)
for _ in range(200):
    params, state = egg.step(params, pop_fitness, state, batched=True)
print(f"batched: loss {-pop_fitness(egg.ask(params, state)).mean():.4f}, info {state.info}")
