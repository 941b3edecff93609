"""The model of torch_module_blackbox.py in batched mode: its forward written with pop.linear.

`pop.linear(x, w, b, activation, transpose=True)` computes act(x @ W_i.T + b_i) for every member
at once, in PyTorch's (out_features, in_features) weight layout, without forming any member's
weight matrix: the shared batch is multiplied by W once and each member adds its low-rank term.
The tensors (weights and the input batch) go in through DLPack, without a copy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import eggroll_np as egg

torch.manual_seed(0)
torch.set_num_threads(1)  # many tiny forwards: threads would only contend with each other
X = torch.randn(512, 8)
y = torch.sin(X @ torch.randn(8, 1))

model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
params = {name: t.detach() for name, t in model.state_dict().items()}
Y = y.numpy()  # (512, 1), compared with NumPy outputs


def pop_fitness(pop: egg.Population) -> np.ndarray:
    """(N,) negative MSE of every member: nn.Linear -> Tanh -> nn.Linear, all members at once."""
    h = pop.linear(X, "0.weight", "0.bias", activation="tanh", transpose=True)  # (N, 512, 32)
    out = pop.linear(h, "2.weight", "2.bias", transpose=True)  # (N, 512, 1)
    return -np.mean((out - Y) ** 2, axis=(1, 2))


def mse(tree: dict) -> float:
    with torch.no_grad():
        weights = {k: torch.as_tensor(np.asarray(v)) for k, v in tree.items()}
        return float(torch.mean((torch.func.functional_call(model, weights, (X,)) - y) ** 2))


if __name__ == "__main__":
    state = egg.init(params, population=256, sigma=0.05, lr=0.03, seed=0)
    print(f"generation   0: mse {mse(params):.4f}")
    for gen in range(1, 301):
        params, state = egg.step(params, pop_fitness, state, batched=True)
        if gen % 50 == 0:
            print(f"generation {gen:3d}: mse {mse(params):.4f}")
    model.load_state_dict({name: torch.from_numpy(a) for name, a in params.items()})
    with torch.no_grad():
        print(f"trained module: mse {float(torch.mean((model(X) - y) ** 2)):.4f}")
