"""`cartpole`: CartPole-v1 balanced by an MLP policy; every member runs its own episodes at once."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...models import mlp
from ...population import Population
from .common import Task, Workload, add_mlp_arguments, check_options, generation_rng

__all__ = ["WORKLOAD", "DEFAULTS", "CartPoleBatch", "make", "evaluate_gymnasium"]

DEFAULTS: dict[str, Any] = {
    "population": 64,
    "sigma": 0.1,
    "lr": 0.05,
    "rank": 1,
    "generations": 60,
    "optimizer": "adam",
    "shaping": "centered_rank",
    "hidden": (16,),
    "activation": "tanh",
    "episodes": 4,
    "eval_episodes": 20,
    "max_steps": 500,
}

# Seeds of the final evaluation episodes start here; training draws its episode starts from
# NumPy generators of (seed, generation) and never seeds gymnasium, so these are unseen.
EVAL_SEED_BASE = 1_000_000


class CartPoleBatch:
    """CartPole-v1's documented dynamics (Barto et al. 1983, as in Gymnasium) for many episodes.

    Explicit Euler integration (Gymnasium's default), tau 0.02 s, force +-10 N, pole half-length
    0.5 m; an episode ends when |x| > 2.4, |theta| > 12 degrees or after `max_steps` steps;
    reward 1 per step including the last. States are (..., 4): x, x_dot, theta, theta_dot,
    float64.
    """

    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    length = 0.5
    force_mag = 10.0
    tau = 0.02
    x_threshold = 2.4
    theta_threshold = 12 * 2 * np.pi / 360

    def __init__(self, starts: np.ndarray) -> None:
        self.state = np.array(starts, dtype=np.float64)

    def step(self, action: np.ndarray) -> np.ndarray:
        """Apply actions (..., ) in {0, 1}; returns `terminated` (...,) bool after the step."""
        x, x_dot, theta, theta_dot = np.moveaxis(self.state, -1, 0)
        total_mass = self.masscart + self.masspole
        pml = self.masspole * self.length
        force = np.where(action == 1, self.force_mag, -self.force_mag)
        cos, sin = np.cos(theta), np.sin(theta)
        temp = (force + pml * theta_dot**2 * sin) / total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * cos**2 / total_mass)
        )
        x_acc = temp - pml * theta_acc * cos / total_mass
        self.state = np.stack(
            [
                x + self.tau * x_dot,
                x_dot + self.tau * x_acc,
                theta + self.tau * theta_dot,
                theta_dot + self.tau * theta_acc,
            ],
            axis=-1,
        )
        x, theta = self.state[..., 0], self.state[..., 2]
        return (np.abs(x) > self.x_threshold) | (np.abs(theta) > self.theta_threshold)


def population_returns(
    pop: Population, starts: np.ndarray, activation: str, max_steps: int
) -> np.ndarray:
    """(N,) mean return of every member over the episodes starting from `starts` (E, 4).

    Every member plays the same E starts (common random numbers); the policy's forward is one
    per-member `pop.matmul` per layer on the (N, E, 4) observations.
    """
    n, e = pop.size, len(starts)
    env = CartPoleBatch(np.broadcast_to(starts, (n, e, 4)))
    alive = np.ones((n, e), dtype=bool)
    returns = np.zeros((n, e))
    for _ in range(max_steps):
        obs = env.state.astype(np.float32)
        logits = mlp.population_forward(pop, obs, activation)  # (N, E, 2)
        done = env.step(logits.argmax(axis=-1))
        returns += alive
        alive &= ~done
        if not alive.any():
            break
    return returns.mean(axis=1)


def evaluate_gymnasium(
    params: Any, activation: str, episodes: int, seed_base: int = EVAL_SEED_BASE
) -> np.ndarray:
    """Returns of the greedy policy on gymnasium's real CartPole-v1, one episode per seed."""
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    out = []
    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=seed_base + k)
            total, done = 0.0, False
            while not done:
                logits = mlp.forward(params, np.asarray(obs, np.float32)[None], activation)
                obs, reward, terminated, truncated, _ = env.step(int(logits[0].argmax()))
                total += float(reward)
                done = terminated or truncated
            out.append(total)
    finally:
        env.close()
    return np.asarray(out)


def _random_policy_return(episodes: int) -> float:
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    total = 0.0
    try:
        for k in range(episodes):
            env.reset(seed=EVAL_SEED_BASE + k)
            done = False
            while not done:
                _, reward, terminated, truncated, _ = env.step(int(rng.integers(2)))
                total += float(reward)
                done = terminated or truncated
    finally:
        env.close()
    return total / episodes


def make(config: Mapping[str, Any]) -> Task:
    """The CartPole Task: batched fitness = mean return over `episodes` simulated episodes."""
    check_options(config, positive=("episodes", "eval_episodes", "max_steps"))
    seed, activation = int(config["seed"]), config["activation"]
    episodes, max_steps = int(config["episodes"]), int(config["max_steps"])
    params = mlp.init((4, *tuple(config["hidden"]), 2), np.random.default_rng([seed, 1]))

    def fitness(pop: Population) -> np.ndarray:
        starts = generation_rng(seed, pop.generation).uniform(-0.05, 0.05, (episodes, 4))
        return population_returns(pop, starts, activation, max_steps)

    def evaluate(p: Any) -> dict[str, float]:
        returns = evaluate_gymnasium(p, activation, int(config["eval_episodes"]))
        return {"eval_return": float(returns.mean()), "eval_return_min": float(returns.min())}

    def baseline() -> dict[str, float]:
        return {"random_policy_return": _random_policy_return(int(config["eval_episodes"]))}

    return Task(params=params, fitness=fitness, batched=True, evaluate=evaluate, baseline=baseline)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    add_mlp_arguments(p, d)
    p.add_argument(
        "--episodes",
        type=int,
        help=f"training episodes per member per generation (default {d['episodes']})",
    )
    p.add_argument(
        "--eval-episodes",
        type=int,
        help=f"final evaluation episodes on gymnasium's CartPole-v1, seeds never used in training "
        f"(default {d['eval_episodes']})",
    )
    p.add_argument(
        "--max-steps", type=int, help=f"training episode length cap (default {d['max_steps']})"
    )


WORKLOAD = Workload(
    name="cartpole",
    help="CartPole-v1 (gymnasium) with an MLP policy, every member's episodes simulated at once",
    metric="eval_return",
    defaults=DEFAULTS,
    add_arguments=_add_arguments,
    make=make,
    evaluation_options=("eval_episodes",),
)
