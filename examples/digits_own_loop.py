"""Example: the digits workload's model in your own ask/tell loop (no `train` machinery).

Shows the batched population forward (`eggroll_np.models.mlp`): the shared minibatch's x @ W is
computed once per layer and each member adds only its low-rank term, its bias and the activation
in one pass (`pop.linear`).
"""

import numpy as np

import eggroll_np as egg
from eggroll_np.models import mlp
from eggroll_np.training.workloads.common import generation_rng, log_softmax
from eggroll_np.training.workloads.digits import load

x_train, y_train, x_test, y_test = load(seed=0, test_fraction=0.2)
params = mlp.init((64, 64, 10), np.random.default_rng(0))
state = egg.init(params, population=512, sigma=0.05, lr=0.01, seed=0)

for gen in range(300):
    pop = egg.ask(params, state)
    rows = generation_rng(0, pop.generation).choice(len(x_train), 256, replace=False)
    logits = mlp.population_forward(pop, x_train[rows], "gelu")  # (N, 256, 10)
    logp = np.take_along_axis(log_softmax(logits), y_train[rows][None, :, None], axis=2)
    fitness = logp[..., 0].mean(axis=1)  # (N,)
    params, state = egg.tell(params, fitness, state, population=pop)  # reuses pop's noise
    if gen % 50 == 0:
        acc = (mlp.forward(params, x_test, "gelu").argmax(axis=1) == y_test).mean()
        print(
            f"generation {gen}: fitness {state.info['fitness_mean']:.3f}, test accuracy {acc:.3f}"
        )
acc = (mlp.forward(params, x_test, "gelu").argmax(axis=1) == y_test).mean()
print(f"final test accuracy {acc:.3f}")
