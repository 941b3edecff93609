"""Train a PyTorch nn.Module with EGGROLL in black-box mode: its tensors are the parameter tree.

The module's `state_dict()` goes in as it is (each tensor is adopted through DLPack, no copy);
the fitness function runs the module's own forward on a member's parameters. Needs PyTorch
(`pip install torch`); nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import eggroll_np as egg

torch.manual_seed(0)
torch.set_num_threads(1)  # many tiny forwards: threads would only contend with each other
X = torch.randn(512, 8)
y = torch.sin(X @ torch.randn(8, 1))  # a smooth regression target, (512, 1)

model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
# ES needs no autograd: detached tensors share the module's memory and export through DLPack.
params = {name: t.detach() for name, t in model.state_dict().items()}


@torch.no_grad()
def fitness(member: dict[str, np.ndarray]) -> torch.Tensor:
    """Negative MSE of the module with one member's parameters (NumPy arrays, shared by torch)."""
    weights = {name: torch.from_numpy(a) for name, a in member.items()}
    out = torch.func.functional_call(model, weights, (X,))
    return -torch.mean((out - y) ** 2)  # a 0-d tensor is a valid fitness


def mse(tree: dict) -> float:
    return -float(fitness({k: np.asarray(v) for k, v in tree.items()}))


if __name__ == "__main__":
    state = egg.init(params, population=64, sigma=0.05, lr=0.03, seed=0)
    print(f"generation   0: mse {mse(params):.4f}")
    for gen in range(1, 301):
        params, state = egg.step(params, fitness, state)  # params come back as NumPy arrays
        if gen % 50 == 0:
            print(f"generation {gen:3d}: mse {mse(params):.4f}")
    # Back into the module: torch.from_numpy shares the arrays' memory.
    model.load_state_dict({name: torch.from_numpy(a) for name, a in params.items()})
    with torch.no_grad():
        print(f"trained module: mse {float(torch.mean((model(X) - y) ** 2)):.4f}")
