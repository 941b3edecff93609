"""The MLP every tool and workload uses: parameters, plain forward, and every member's at once.

Params are ``{"layers": [{"W": (m, n), "b": (n,)}, ...]}`` float32; the activation runs between
layers only (the last layer gives logits). `forward` is plain inference (NumPy or CuPy);
`population_forward` runs all N perturbed members through `Population.linear`, one fused pass a
layer (bias and activation included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import evaluate
from ..epilogue import activation_code, apply_activation
from ..population import Population

__all__ = ["init", "forward", "population_forward", "members_per_chunk"]


def init(sizes: Sequence[int], rng: np.random.Generator, gain: float = 1.0) -> dict[str, Any]:
    """MLP params {"layers": [{"W": (m, n), "b": (n,)}, ...]} float32, scaled-normal W, zero b.

    Args:
        sizes: (inputs, hidden..., outputs).
        rng: NumPy Generator (float64 normals, rounded to float32).
        gain: W ~ N(0, gain^2 / m): LeCun scaling times gain (sqrt(2) is He's for ReLU).
    """
    layers = []
    for m, n in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.standard_normal((m, n)) * (gain / np.sqrt(m))
        layers.append({"W": w.astype(np.float32), "b": np.zeros(n, np.float32)})
    return {"layers": layers}


def forward(params: Mapping[str, Any], x: Any, activation: str) -> Any:
    """Plain MLP on rows x (B, m) -> (B, n_out) logits (NumPy or CuPy, x's namespace).

    Each layer is one GEMM, then the bias and the activation in place (no other temporaries:
    this is the pure inference the benchmarks compare the population forward with).
    """
    code = activation_code(activation)
    h = x
    layers = params["layers"]
    for j, layer in enumerate(layers):
        h = h @ layer["W"]
        h += layer["b"]
        if j < len(layers) - 1:
            apply_activation(h, code)
    return h


def population_forward(pop: Population, x: Any, activation: str) -> Any:
    """Every member's MLP at once: x (B, m) shared or (N, B, m) per member -> (N, B, n_out).

    Each layer is one `pop.linear`: the base GEMM (once for a shared x), then one fused pass
    adding each member's low-rank term, its bias and the activation.
    """
    activation_code(activation)  # a bad name fails before any noise is made
    n_layers = sum(1 for p in pop.paths if p.startswith("layers/") and p.endswith("/W"))
    h = x
    for j in range(n_layers):
        act = activation if j < n_layers - 1 else None
        h = pop.linear(h, f"layers/{j}/W", f"layers/{j}/b", activation=act)
    return h


def members_per_chunk(rows: int, width: int, itemsize: int = 4) -> int:
    """Members per `Population.chunks` chunk for a forward over a shared batch of `rows` rows
    whose widest layer has `width` outputs: chunk * rows * width * itemsize ~ CHUNK_BYTES of
    `eggroll_np.evaluate` (measured on the 2-core Intel machines; step's chunk="auto" sizes its
    chunks from the last-level cache instead, `evaluate.chunk_budget`)."""
    return evaluate.members_per_chunk(rows * width * itemsize, evaluate.CHUNK_BYTES)
