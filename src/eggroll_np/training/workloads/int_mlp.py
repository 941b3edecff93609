"""`train digits --int8`: an MLP with int8 weights and activations, trained by the integer rule.

The model is docs/integer.md's: inputs are pixels (0..16) times 7 as int8, every layer is
`pop.linear` on int8 leaves (relu between layers), the logits are int8 standing for q / 16, and
the fitness is the mean log-softmax of logits / 16 at the labels (the fitness is the user's own
array code; only the forward and the update are integer). The float run's test accuracy is
trained beside it (same seed, the float recipe) when the baseline is on.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ... import _checks
from ...intlayers import dense
from ...models.mlp import members_per_chunk
from ...population import Population
from .classification import accuracy_task
from .common import Task, generation_rng, log_softmax

__all__ = [
    "INT8_DEFAULTS",
    "INT8_RECIPE",
    "add_int8_arguments",
    "quantize_pixels",
    "init_int_mlp",
    "int_mlp_forward",
    "int_mlp_population_forward",
    "make_int_classifier_task",
    "int_es_options",
    "float_run",
]

#: The option keys that the --int8 variants add to a workload's defaults (None means the
#: recipe decides).
INT8_DEFAULTS = {
    "recipe": None,
    "int8": False,
    "int_sigma_shift": None,
    "int_update_fraction": None,
}

#: The digits --int8 recipe, DESIGN.md's calibration (a plain int64 version reached 0.94 test
#: accuracy in 300 generations): hidden 32, 128 pairs, 256-image batches, k = 2, alpha = 0.3
#: decaying linearly to 0.
INT8_RECIPE = {
    "int8": True,
    "population": 256,
    "generations": 300,
    "batch": 256,
    "hidden": (32,),
    "rank": 1,
    "lr_schedule": "linear",  # scales alpha: linear decay to 0 over the run
    "lr_final": 0.0,
    "int_sigma_shift": 2,
    "int_update_fraction": 0.3,
}

_PIXEL_SCALE = 7  # pixels 0..16 -> 0..112: inputs up to 7.0 in the int8 fixed point (q / 16)


def add_int8_arguments(p: argparse.ArgumentParser, recipe: Mapping[str, Any]) -> None:
    """--int8 (the recipe "int8") and the integer rule's two settings."""
    p.add_argument(
        "--int8",
        dest="recipe",
        action="store_const",
        const="int8",
        help="int8 weights and activations, trained by the integer update (docs/integer.md); "
        "its own defaults: " + ", ".join(f"{k} {v}" for k, v in recipe.items() if k != "int8"),
    )
    p.add_argument(
        "--int-sigma-shift",
        type=int,
        help="with --int8: sigma = 2^-k of the int8 leaves (0..15, default "
        f"{recipe['int_sigma_shift']})",
    )
    p.add_argument(
        "--int-update-fraction",
        type=float,
        help="with --int8: alpha, the fraction of entries that a pure-noise update moves "
        f"(0 < alpha < 1, default {recipe['int_update_fraction']}; the lr schedule scales it)",
    )


def int_es_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """`eggroll_np.init`'s integer settings of a resolved --int8 config."""
    return {
        "int_sigma_shift": _checks.integer("--int-sigma-shift", config["int_sigma_shift"], 0, 16),
        "int_update_fraction": _checks.real(
            "--int-update-fraction", config["int_update_fraction"], 0.0, True, 1.0
        ),
    }


def quantize_pixels(x: np.ndarray) -> np.ndarray:
    """Features scaled to [0, 1] (pixels / 16) as int8 pixels * 7 (0..112)."""
    return np.clip(np.rint(np.asarray(x) * 16 * _PIXEL_SCALE), 0, 127).astype(np.int8)


def init_int_mlp(sizes: tuple[int, ...], rng: np.random.Generator) -> dict[str, Any]:
    """{"layers": [{"W": int8 (m, n), "b": int8 (n,)}, ...]}: W ~ N(0, 16^2) (1.0 in q / 16)
    rounded and clipped to [-127, 127], b zero."""
    layers = []
    for m, n in zip(sizes[:-1], sizes[1:], strict=True):
        w = np.clip(np.rint(rng.standard_normal((m, n)) * 16), -127, 127).astype(np.int8)
        layers.append({"W": w, "b": np.zeros(n, np.int8)})
    return {"layers": layers}


def int_mlp_forward(params: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """Plain integer MLP on int8 rows (B, m) -> int8 logits (B, classes); relu between layers."""
    layers = params["layers"]
    h = x
    for j, layer in enumerate(layers):
        h = dense(h, layer["W"], layer["b"], "relu" if j < len(layers) - 1 else None)
    return h


def int_mlp_population_forward(pop: Population, x: np.ndarray) -> np.ndarray:
    """Every member's integer MLP: x int8 (B, m) shared -> int8 logits (N, B, classes)."""
    n_layers = sum(1 for p in pop.paths if p.endswith("/W"))
    h = x
    for j in range(n_layers):
        act = "relu" if j < n_layers - 1 else None
        h = pop.linear(h, f"layers/{j}/W", f"layers/{j}/b", activation=act)
    return h


def make_int_classifier_task(
    config: Mapping[str, Any],
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    float_figure: Callable[..., Any] | None = None,
) -> Task:
    """The --int8 Task of an MLP classifier (features in [0, 1]).

    Args:
        config: hidden, batch, seed, int_sigma_shift, int_update_fraction.
        data: (x_train, y_train, x_test, y_test) float features in [0, 1], integer labels.
        float_figure: optional () -> {name: value}: the float run (and any other baseline)
            reported beside the result.
    """
    seed = int(config["seed"])
    x_train, y_train, x_test, y_test = data
    q_train = quantize_pixels(x_train)
    classes = int(max(y_train.max(), y_test.max())) + 1
    sizes = (x_train.shape[1], *tuple(config["hidden"]), classes)
    batch = min(_checks.integer("--batch", config["batch"], 1), len(x_train))
    params = init_int_mlp(sizes, np.random.default_rng([seed, 1]))
    chunk = members_per_chunk(batch, max(sizes[1:]), itemsize=8)

    def fitness(pop: Population) -> np.ndarray:
        rows = generation_rng(seed, pop.generation).choice(len(x_train), batch, replace=False)
        x, y = q_train[rows], y_train[rows]
        f = np.empty(pop.size)
        for members, sub in pop.chunks(chunk):
            logits = int_mlp_population_forward(sub, x).astype(np.float32) / 16
            logp = log_softmax(logits)
            f[members] = np.take_along_axis(logp, y[None, :, None], axis=2)[..., 0].mean(1)
        return f

    def predict(p: Any, x: np.ndarray) -> np.ndarray:
        return int_mlp_forward(p, quantize_pixels(x))

    return accuracy_task(
        params,
        fitness,
        predict,
        (x_train, y_train, x_test, y_test),
        float_figure,
        es_options=int_es_options(config),
    )


def float_run(name: str, seed: int, metric: str, **changes: Any) -> dict[str, float]:
    """Train workload `name`'s float version (its defaults, this seed, `changes` on top) in
    this process and return {"float_<metric>": value}: the figure an --int8 run reports
    beside its own."""
    from ... import es
    from ..train import es_options, resolve_config
    from . import get

    w = get(name)
    overrides = {"seed": seed, **changes}
    config = resolve_config(w, overrides)
    task = w.make(config)
    params = task.params
    state = es.init(params, **es_options(config), **task.es_options)
    for _ in range(int(config["generations"])):
        params, state = es.step(params, task.fitness, state, batched=task.batched)
    return {f"float_{metric}": task.evaluate(params)[metric]}
